"""The SSEN metric-learning loss, paper §III-A, eqs. 1-4.

    L      = L_pull + gamma * L_push                                            (eq. 1)
    L_push = 1/(|I|(|I|-1)) * sum_{i != j} [2*delta_push - ||mu_i - mu_j||]_+    (eq. 2)
    L_pull = sum_i w_i * l_i,   w_i = |E_i|^p / sum_j |E_j|^p                     (eq. 3)
    l_i    = 1/|E_i| * sum_{e in E_i} [||mu_i - e|| - delta_pull]_+               (eq. 4)

The paper names the pull term L_inter and the push term L_intra; we use the usual names.
Conventions (the authors' ``compute_loss`` in ``models/base.py``, 96lives/ssen at ec4006e,
differs from the printed equations by constants):
- eq. 3 is taken as the authors' code computes it: the weights w_i sum to 1 and there is no
  extra 1/|I| factor, so L_pull is a weighted mean of the l_i.
- eq. 2 is taken as printed: the mean over ordered pairs. The authors' code divides by twice
  that, so their gamma=10 equals gamma=5 here; ``LossConfig.gamma`` sets it.
- Both hinges are linear; there is no regulariser. Points with instance id < 0 (background,
  unlabelled) are excluded. A scene of several in a batch is its own set I; the batch loss
  is the mean over scenes that hold at least one instance.
Everything is vectorised: there is no Python loop over instances or scenes.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ssen_ros.config import LossConfig

_EPS = 1e-12  # keeps sqrt differentiable where two means or a point and its mean coincide


class LossTerms(NamedTuple):
    total: torch.Tensor
    pull: torch.Tensor
    push: torch.Tensor


def _norm(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((x * x).sum(-1).clamp_min(_EPS))


def ssen_loss(embeddings: torch.Tensor, instance: torch.Tensor, batch: Optional[torch.Tensor] = None,
              config: LossConfig = LossConfig()) -> LossTerms:
    """Eqs. 1-4 for ``embeddings`` (N, d) with per-point ``instance`` ids (N,), -1 = excluded.

    ``batch`` (N,) gives each point's scene index; instance ids are local to a scene.
    Returns the total and both terms, each averaged over the scenes that hold instances.
    """
    if batch is None:
        batch = torch.zeros_like(instance)
    keep = instance >= 0
    zero = embeddings.sum() * 0.0  # keeps the graph (and the device) when nothing is labelled
    if not bool(keep.any()):
        return LossTerms(zero, zero, zero)
    emb, inst, scene = embeddings[keep], instance[keep].long(), batch[keep].long()

    # One group per (scene, instance): its index g, scene of g, size n_g and mean mu_g.
    key = scene * (int(inst.max()) + 1) + inst
    group_key, group = torch.unique(key, return_inverse=True)
    num_groups = group_key.numel()
    group_scene = group_key // (int(inst.max()) + 1)
    scene_ids, group_scene = torch.unique(group_scene, return_inverse=True)
    num_scenes = scene_ids.numel()
    count = torch.zeros(num_groups, dtype=emb.dtype, device=emb.device).index_add_(
        0, group, torch.ones_like(group, dtype=emb.dtype))
    mean = torch.zeros(num_groups, emb.shape[1], dtype=emb.dtype, device=emb.device).index_add_(
        0, group, emb) / count[:, None]

    # eq. 4: l_i, then eq. 3: size-weighted within each scene.
    hinge = torch.relu(_norm(emb - mean[group]) - config.delta_pull)
    l_i = torch.zeros_like(count).index_add_(0, group, hinge) / count
    size_w = count ** config.p
    scene_total = torch.zeros(num_scenes, dtype=emb.dtype, device=emb.device).index_add_(
        0, group_scene, size_w)
    pull = torch.zeros(num_scenes, dtype=emb.dtype, device=emb.device).index_add_(
        0, group_scene, size_w / scene_total[group_scene] * l_i)

    # eq. 2: mean hinge over ordered pairs of distinct instances of the same scene.
    same_scene = group_scene[:, None] == group_scene[None, :]
    pair = same_scene & ~torch.eye(num_groups, dtype=torch.bool, device=emb.device)
    pair_hinge = torch.relu(2 * config.delta_push - _norm(mean[:, None, :] - mean[None, :, :]))
    per_scene = torch.zeros(num_scenes, dtype=emb.dtype, device=emb.device).index_add_(
        0, group_scene, (pair_hinge * pair).sum(1))
    n = torch.zeros(num_scenes, dtype=emb.dtype, device=emb.device).index_add_(
        0, group_scene, torch.ones_like(count))
    push = torch.where(n > 1, per_scene / (n * (n - 1)).clamp_min(1), torch.zeros_like(n))

    pull, push = pull.mean(), push.mean()
    return LossTerms(pull + config.gamma * push, pull, push)
