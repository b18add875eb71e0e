"""Training data: scene loading and batching (``dataset.py``), the training augmentations of
paper §IV (``augment.py``) and the perturbations of the robustness benchmark (``perturb.py``)."""
