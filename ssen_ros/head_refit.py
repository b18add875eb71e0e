"""Classifier re-training of the semantic network for rare classes (runs after training).

Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition" (ICLR 2020):
a network trained on long-tailed data learns good features, but its last layer favours the
frequent classes. Re-fitting only that layer on the frozen network's features, with the classes
re-weighted, recovers the rare ones. In our synthetic rooms a refrigerator is rare and resembles
a cabinet at 5 cm, and the weights before the re-fit called most refrigerator points cabinet.

Here the semantic network's final 1x1 layer (paper Fig. 2, the per-voxel class scores) is fitted
again by full-batch Adam on eval-mode features of one augmented pass over the training scenes,
with cross-entropy weighted by (class frequency)^-alpha: alpha 0 keeps the data's balance, 1
weighs every class equally; the default was chosen by a sweep on the validation rooms
(docs/training.md).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ssen_ros.classes import NUM_CLASSES
from ssen_ros.config import TrainConfig
from ssen_ros.data.dataset import Scene, collate, make_sample
from ssen_ros.sparse import SparseTensor

log = logging.getLogger("ssen_ros")


@dataclass
class HeadInputs:
    """What the final layer sees: features (M, C), labels (M,), and per class how many training
    voxels there were (``counts``) and how many of them were kept (``kept``)."""

    features: torch.Tensor
    labels: torch.Tensor
    counts: np.ndarray
    kept: np.ndarray


def collect_head_inputs(net: torch.nn.Module, scenes: Sequence[Scene], config: TrainConfig,
                        rng: np.random.Generator, device: torch.device) -> HeadInputs:
    """Eval-mode inputs of ``net.final`` on one augmented pass over ``scenes``; per scene at most
    ``config.head_refit.voxels_per_class`` voxels of each class are kept."""
    cap = config.head_refit.voxels_per_class
    captured: list[torch.Tensor] = []
    hook = net.final.register_forward_pre_hook(lambda module, args: captured.append(args[0].features))
    features, labels = [], []
    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    kept = np.zeros(NUM_CLASSES, dtype=np.int64)
    net.eval()
    try:
        with torch.no_grad():
            for scene in scenes:
                sample = make_sample(scene, config.voxel_size, rng, config.crop_size, config.augment,
                                     config.in_channels)
                batch = collate([sample])
                net(SparseTensor(batch["features"].to(device), batch["coords"].to(device)))
                feats = captured.pop().cpu()
                for c in np.unique(sample.semantic[sample.semantic >= 0]):
                    idx = np.flatnonzero(sample.semantic == c)
                    take = rng.choice(idx, min(cap, len(idx)), replace=False)
                    features.append(feats[take])
                    labels.append(np.full(len(take), c, dtype=np.int64))
                    counts[c] += len(idx)
                    kept[c] += len(take)
    finally:
        hook.remove()
    return HeadInputs(torch.cat(features).float(), torch.from_numpy(np.concatenate(labels)), counts, kept)


def class_weights(counts: np.ndarray, alpha: float) -> np.ndarray:
    """(frequency)^-alpha per class, scaled so that the mean weight per training voxel is 1;
    0 for classes with no voxels."""
    present = counts > 0
    weights = np.zeros(len(counts))
    weights[present] = (counts[present] / counts.sum()) ** -alpha
    return weights * counts.sum() / (weights * counts).sum()


def refit_semantic_head(net: torch.nn.Module, scenes: Sequence[Scene], config: TrainConfig,
                        rng: np.random.Generator, device: torch.device) -> dict[str, float]:
    """Fit ``net.final`` (kernel [C, classes], bias [1, classes]) again, in place; returns the
    weighted cross-entropy before and after."""
    cfg = config.head_refit
    data = collect_head_inputs(net, scenes, config, rng, device)
    # kept voxels stand for all voxels of their class: weight = class weight x counts / kept
    per_voxel = class_weights(data.counts, cfg.alpha) * data.counts / np.maximum(data.kept, 1)
    sample_weight = torch.from_numpy(per_voxel[data.labels.numpy()]).float()
    kernel = net.final.kernel.detach().cpu().clone().requires_grad_(True)
    bias = net.final.bias.detach().cpu().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([kernel, bias], lr=cfg.lr)

    def loss() -> torch.Tensor:
        ce = torch.nn.functional.cross_entropy(data.features @ kernel + bias, data.labels, reduction="none")
        return (ce * sample_weight).sum() / sample_weight.sum()

    before = loss().item()
    for _ in range(cfg.steps):
        value = loss()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
    after = loss().item()
    with torch.no_grad():
        net.final.kernel.copy_(kernel)
        net.final.bias.copy_(bias)
    log.info("semantic head re-fitted on %d voxels of %d scenes (alpha %.2f): weighted CE %.4f -> %.4f",
             len(data.labels), len(scenes), cfg.alpha, before, after)
    return {"before": before, "after": after}
