"""Is the real-scan gap the semantic head's or the features'? Probes on the frozen network.

``python -m benchmarks probe --data DIR [--weights PATH]`` runs the semantic network on every
real labelled scan under DIR (whole scans, not tiled) and keeps, per voxel, the input of its final
1x1 layer (paper Fig. 2: the per-voxel features the class scores are read from) and the class of
most of its labelled points. New heads are then fitted on these frozen features, by the recipe
of ``ssen_ros.head_refit`` (cross-entropy weighted by class frequency^-alpha, full-batch Adam; at
most ``--per-class`` voxels of a class per scan, features standardised):

- on the scans of the other spaces (a ScanNet space is a room, scanned one or more times), scored
  on the held-out space, one space after the other: what a head learnt from real rooms carries
  to an unseen room;
- on all the scans and scored on the same scans: how far a head can separate the classes in
  these features at all (in-sample, so an upper bound).

Both as a linear layer (the shipped head's form) and with one hidden layer. Scores are point mIoU
(``ssen_ros.scoring``), with colour and without. The fitted heads are thrown away: this measures
the shipped features and ships nothing, and the scans are never written anywhere (ScanNet's
terms allow no redistribution).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks import weights_line, write_results
from ssen_ros.classes import CLASS_NAMES, NUM_CLASSES
from ssen_ros.config import HeadRefitConfig, SegmenterConfig
from ssen_ros.data.dataset import find_scenes, load_scene
from ssen_ros.features import colors_to_features, with_coordinates
from ssen_ros.head_refit import class_weights
from ssen_ros.scoring import class_iou, semantic_miou
from ssen_ros.segmenter import Segmenter
from ssen_ros.sparse import SparseTensor
from ssen_ros.voxel import voxelize


@dataclass
class ScanFeatures:
    """One scan seen by the frozen network: per voxel its ``features`` and majority ``label``
    (-1: no labelled point), the shipped head's ``predicted`` class; per point its voxel and label."""

    space: str
    features: torch.Tensor
    label: np.ndarray
    predicted: np.ndarray
    point_voxel: np.ndarray
    point_label: np.ndarray


def scan_features(segmenter: Segmenter, scene, colour: bool) -> ScanFeatures:
    net = segmenter.semantic_net
    captured: list[torch.Tensor] = []
    hook = net.final.register_forward_pre_hook(lambda module, args: captured.append(args[0].features))
    colors = scene.colors if colour else None
    feats = with_coordinates(colors_to_features(colors, len(scene.points)), scene.points, segmenter.spec.in_channels)
    vox = voxelize(scene.points, feats, segmenter.voxel_size)
    coords = torch.from_numpy(vox.coords)
    batch = torch.zeros(len(coords), 1, dtype=torch.int32)
    try:
        with torch.inference_mode():
            logits = net(SparseTensor(torch.from_numpy(np.ascontiguousarray(vox.features, np.float32)),
                                      torch.cat([batch, coords], 1))).features
    finally:
        hook.remove()
    labelled = scene.semantic >= 0
    votes = np.bincount(vox.inverse[labelled] * NUM_CLASSES + scene.semantic[labelled],
                        minlength=len(vox) * NUM_CLASSES).reshape(len(vox), NUM_CLASSES)
    label = np.where(votes.sum(1) > 0, votes.argmax(1), -1)
    return ScanFeatures(scene.name.rsplit("_", 1)[0], captured[0].float().clone(), label,
                        logits.argmax(1).numpy(), vox.inverse, scene.semantic.astype(np.int64))


def fit_head(scans: list[ScanFeatures], hidden: int, per_class: int, steps: int, seed: int = 0):
    """A head fitted on ``scans``; returns voxel features -> class."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    xs, ys = [], []
    for s in scans:
        for c in np.unique(s.label[s.label >= 0]):
            rows = np.flatnonzero(s.label == c)
            rows = rng.choice(rows, min(per_class, len(rows)), replace=False)
            xs.append(s.features[torch.from_numpy(rows)])
            ys.append(np.full(len(rows), c))
    x, y = torch.cat(xs), torch.from_numpy(np.concatenate(ys))
    weight = torch.tensor(class_weights(np.bincount(y.numpy(), minlength=NUM_CLASSES),
                                        HeadRefitConfig().alpha), dtype=torch.float32)
    mean, std = x.mean(0), x.std(0) + 1e-6
    channels = x.shape[1]
    head = (torch.nn.Linear(channels, NUM_CLASSES) if not hidden else
            torch.nn.Sequential(torch.nn.Linear(channels, hidden), torch.nn.ReLU(),
                                torch.nn.Linear(hidden, NUM_CLASSES)))
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    x = (x - mean) / std
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(head(x), y, weight=weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def predict(features: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return head((features - mean) / std).argmax(1).numpy()
    return predict


def point_confusion(scans: list[ScanFeatures], voxel_class: "list[np.ndarray]") -> np.ndarray:
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for s, predicted in zip(scans, voxel_class):
        ok = s.point_label >= 0
        confusion += np.bincount(s.point_label[ok] * NUM_CLASSES + predicted[s.point_voxel[ok]],
                                 minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)
    return confusion


def iou_line(confusion: np.ndarray) -> str:
    return ", ".join(f"{CLASS_NAMES[c]} {v:.2f}" for c, v in enumerate(class_iou(confusion)) if not np.isnan(v))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks probe")
    parser.add_argument("--data", required=True, help="folder of real labelled scenes")
    parser.add_argument("--weights", default="default")
    parser.add_argument("--per-class", type=int, default=1500, help="voxels of a class per scan to fit on")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps per fit")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units of the non-linear head")
    args = parser.parse_args(argv)
    segmenter = Segmenter(SegmenterConfig(weights=args.weights))
    scenes = [load_scene(p) for p in find_scenes(args.data)]
    torch.set_num_threads(os.cpu_count() or 1)  # the fits are dense; the segmenter set one thread
    rows, lines = [], []
    for name, colour in (("with colour", True), ("without colour", False)):
        scans = [scan_features(segmenter, scene, colour) for scene in scenes]
        spaces = sorted({s.space for s in scans})
        shipped = point_confusion(scans, [s.predicted for s in scans])
        cells, held_out = [], {}
        for hidden in (0, args.hidden):
            heads = {space: fit_head([s for s in scans if s.space != space], hidden, args.per_class, args.steps)
                     for space in spaces}
            held_out[hidden] = point_confusion(scans, [heads[s.space](s.features) for s in scans])
            everywhere = fit_head(scans, hidden, args.per_class, args.steps)
            same = point_confusion(scans, [everywhere(s.features) for s in scans])
            cells += [f"{semantic_miou(held_out[hidden]):.3f}", f"{semantic_miou(same):.3f}"]
            print(name, "hidden", hidden, cells[-2:], flush=True)
        rows.append(f"| {name} | {semantic_miou(shipped):.3f} | " + " | ".join(cells) + " |")
        lines.append(f"Semantic IoU per class, {name}: shipped head: {iou_line(shipped)}.\n\n"
                     f"Linear head fitted on the other spaces: {iou_line(held_out[0])}.")
    body = (weights_line(args.weights, segmenter) + "\n\n"
            f"Scans: {len(scenes)} under `{args.data}`, {len(spaces)} spaces ({', '.join(spaces)}); whole scans, "
            f"not tiled, point mIoU of the semantic labels alone (no instance stage). Heads: alpha "
            f"{HeadRefitConfig().alpha}, at most {args.per_class} voxels of a class per scan, {args.steps} Adam steps; "
            f"non-linear: one hidden layer of {args.hidden} units.\n\n"
            "| input | shipped head | linear head, other spaces | linear head, same scans (in-sample) | "
            "non-linear head, other spaces | non-linear head, same scans (in-sample) |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n" + "\n\n".join(lines))
    print(body)
    write_results("probe", "Heads fitted on the frozen semantic features of real scans", body)
    return 0
