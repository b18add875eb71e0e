"""The ScanNet 3D instance segmentation benchmark, with the official rules.

Follows ScanNet's ``BenchmarkScripts/3d_evaluation/evaluate_semantic_instance.py`` rule for rule:

* the 18 instance classes (``classes.INSTANCE_NYU40_IDS``); ground truth per point is
  ``nyu40 * 1000 + instance`` and 0 for points in no instance;
* ground-truth instances and predictions under 100 points are dropped (a dropped ground-truth
  instance still exists for the "ignore" rule below);
* IoU thresholds 0.50, 0.55, ..., 0.90 and 0.25; a match needs IoU *strictly greater*;
* greedy matching per ground-truth instance, predictions in submission order, sharing one
  "already used" flag per prediction across classes: the first unused prediction over the
  threshold is the match; every further one over the threshold is a false positive whose
  score is the lower of the two, the match keeping the higher score;
* a prediction that overlaps no same-class ground truth above the threshold is a false
  positive only if the share of its points on void ground truth (label not among the 18
  classes: wall, floor, unlabelled) or on same-class instances under 100 points is at most
  the threshold; otherwise it is ignored. (The void mask is ``label not in the 18`` as in
  the current upstream script; an older revision compared the whole ``label*1000+inst`` id
  with the class list and so counted almost nothing as void.)
* precision/recall at every unique score plus the point (recall 0, precision 1), no
  envelope; AP = sum_i p_i * (r_{i-1} - r_{i+1}) / 2 (the script's convolution with
  [-0.5, 0, 0.5], r_{-1} = r_0 and r_{n+1} = 0), which is what upstream computes;
* a class with ground truth but no prediction scores 0, one with no ground truth NaN; AP is
  the nanmean over classes x the 9 thresholds 0.5..0.9, AP50 and AP25 separately.

One case upstream does not handle: a class with ground truth and predictions of which none
was matched nor counted (all ignored) crashes the script (empty cumsum); here it scores 0.

Intersections are counted for all (prediction, ground-truth instance) pairs of a scene at
once with ``np.bincount`` over the points of the prediction masks, so 100 scenes evaluate in
seconds. Submission folders (``scene.txt`` + ``pred_mask/*.txt``) are read and written.
Implements no paper equation; it is the yardstick of the paper's Table I/II.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ssen_ros.classes import CLASS_NAMES, INSTANCE_NYU40_IDS, NYU40_IDS, train_to_nyu40

OVERLAPS = np.append(np.arange(0.5, 0.95, 0.05), 0.25)
"""IoU thresholds, in upstream's order: 0.50..0.90 (9 values), then 0.25."""
MIN_REGION_SIZE = 100
INSTANCE_CLASS_NAMES = tuple(CLASS_NAMES[NYU40_IDS.index(i)] for i in INSTANCE_NYU40_IDS)
_NYU_TO_CLASS = {nyu: k for k, nyu in enumerate(INSTANCE_NYU40_IDS)}


class EvaluationError(ValueError):
    """Bad evaluation input; the message names the scene/file at fault."""


@dataclass
class Prediction:
    """One predicted instance: a boolean mask over the scene's points, a class, a score."""

    mask: np.ndarray
    label: int
    """Train id 0..19 (``classes.CLASS_NAMES``); wall/floor/other ids are skipped, as upstream
    skips labels outside the 18 classes."""
    score: float


@dataclass
class Result:
    """Benchmark numbers. ``ap`` has shape (18 classes, 10 thresholds = ``OVERLAPS``)."""

    ap: np.ndarray
    class_names: tuple[str, ...] = INSTANCE_CLASS_NAMES

    @property
    def mean_ap(self) -> float:
        return _nanmean(self.ap[:, :9])

    @property
    def ap50(self) -> float:
        return _nanmean(self.ap[:, 0])

    @property
    def ap25(self) -> float:
        return _nanmean(self.ap[:, 9])

    def per_class(self) -> dict[str, tuple[float, float, float]]:
        """name -> (AP, AP50, AP25); NaN for classes without ground truth."""
        with np.errstate(invalid="ignore"):
            return {n: (float(np.mean(self.ap[i, :9])), float(self.ap[i, 0]), float(self.ap[i, 9]))
                    for i, n in enumerate(self.class_names)}

    def table(self) -> str:
        """The per-class and average table, as upstream prints it."""
        lines = [f"{'class':<15}{'AP':>9}{'AP50':>9}{'AP25':>9}"]
        for name, (a, a50, a25) in self.per_class().items():
            lines.append(f"{name:<15}{a:>9.3f}{a50:>9.3f}{a25:>9.3f}")
        lines.append(f"{'average':<15}{self.mean_ap:>9.3f}{self.ap50:>9.3f}{self.ap25:>9.3f}")
        return "\n".join(lines)

    def csv(self) -> str:
        """Upstream's result file: ``class,class id,ap,ap50,ap25`` per class."""
        rows = ["class,class id,ap,ap50,ap25"]
        for (name, (a, a50, a25)), nyu in zip(self.per_class().items(), INSTANCE_NYU40_IDS):
            rows.append(f"{name},{nyu},{a},{a50},{a25}")
        return "\n".join(rows) + "\n"


def _nyu40(label: int) -> int:
    """nyu40 id of a train id; 0 (skipped by the benchmark) for anything outside 0..19."""
    return NYU40_IDS[label] if 0 <= label < len(NYU40_IDS) else 0


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.nanmean(a)) if np.isfinite(a).any() else math.nan


# ---------------------------------------------------------------------------------------------
# Per-scene matching data


@dataclass
class _Scene:
    """What the AP loop needs from one scene, all in plain arrays."""

    gt_class: np.ndarray       # (G,) class index 0..17 of each ground-truth instance
    gt_count: np.ndarray       # (G,) points per ground-truth instance
    pred_class: np.ndarray     # (P,) class index 0..17 of each kept prediction
    pred_count: np.ndarray     # (P,)
    pred_score: np.ndarray     # (P,)
    pred_void: np.ndarray      # (P,) points of the prediction on void ground truth
    inter: np.ndarray          # (P, G) intersections, 0 for pairs of different classes


def gt_ids(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """Upstream ground-truth ids ``nyu40 * 1000 + instance + 1`` from train-id semantics and
    instance ids (-1 = none); points without an instance get 0 (unannotated)."""
    semantic = np.asarray(semantic, dtype=np.int64)
    instance = np.asarray(instance, dtype=np.int64)
    if semantic.shape != instance.shape or semantic.ndim != 1:
        raise EvaluationError(f"semantic {semantic.shape} and instance {instance.shape} must be "
                              "equal-length 1-D arrays")
    if instance.max(initial=-1) >= 999:
        raise EvaluationError(f"instance id {instance.max()} does not fit label*1000+instance")
    return np.where(instance >= 0, train_to_nyu40(semantic) * 1000 + instance + 1, 0)


def _scene(gt: np.ndarray, preds: Sequence[tuple[np.ndarray, int, float]], where: str) -> _Scene:
    """Match data of one scene from upstream-style GT ids and (mask, nyu40 id, score) triples."""
    gt = np.asarray(gt, dtype=np.int64)
    n = len(gt)
    ids, inverse, counts = np.unique(gt, return_inverse=True, return_counts=True)
    labels = ids // 1000
    is_inst = (ids != 0) & np.isin(labels, INSTANCE_NYU40_IDS)
    gt_index = np.full(len(ids), -1, np.int64)
    gt_index[is_inst] = np.arange(is_inst.sum())
    point_gt = gt_index[inverse]                    # per point: GT instance index or -1
    gt_class = np.array([_NYU_TO_CLASS[int(l)] for l in labels[is_inst]], np.int64)
    gt_count = counts[is_inst]
    void = ~np.isin(gt // 1000, INSTANCE_NYU40_IDS)

    keep_cls, keep_cnt, keep_score, keep_void, chunks, owners = [], [], [], [], [], []
    for i, (mask, nyu, score) in enumerate(preds):
        if int(nyu) not in _NYU_TO_CLASS:
            continue
        mask = np.asarray(mask)
        if mask.shape != (n,):
            raise EvaluationError(f"{where}: prediction {i} has {mask.shape[0] if mask.ndim else 0} "
                                  f"mask entries for {n} points")
        idx = np.flatnonzero(mask)
        if len(idx) < MIN_REGION_SIZE:
            continue
        p = len(keep_cls)
        keep_cls.append(_NYU_TO_CLASS[int(nyu)])
        keep_cnt.append(len(idx))
        keep_score.append(float(score))
        keep_void.append(int(void[idx].sum()))
        g = point_gt[idx]
        g = g[g >= 0]
        chunks.append(g)
        owners.append(np.full(len(g), p, np.int64))
    P, G = len(keep_cls), len(gt_class)
    inter = np.zeros((P, G), np.int64)
    if P and G:
        flat = np.concatenate(owners) * G + np.concatenate(chunks)
        inter = np.bincount(flat, minlength=P * G).reshape(P, G)
        pred_class = np.asarray(keep_cls)
        inter[pred_class[:, None] != gt_class[None, :]] = 0
    return _Scene(gt_class, gt_count, np.asarray(keep_cls, np.int64), np.asarray(keep_cnt, np.int64),
                  np.asarray(keep_score, np.float64), np.asarray(keep_void, np.int64), inter)


# ---------------------------------------------------------------------------------------------
# The AP loop (upstream's evaluate_matches)


def _evaluate(scenes: Sequence[_Scene]) -> np.ndarray:
    num_classes = len(INSTANCE_NYU40_IDS)
    ap = np.zeros((num_classes, len(OVERLAPS)))
    # IoU of every (prediction, GT) pair, computed once per scene.
    ious = []
    for s in scenes:
        union = s.pred_count[:, None] + s.gt_count[None, :] - s.inter
        ious.append(np.where(s.inter > 0, s.inter / np.maximum(union, 1), 0.0))
    for oi, th in enumerate(OVERLAPS):
        visited = [np.zeros(len(s.pred_class), bool) for s in scenes]  # shared across classes
        for c in range(num_classes):
            y_true: list[float] = []
            y_score: list[float] = []
            hard_fn = 0
            has_gt = has_pred = False
            for s, iou, used in zip(scenes, ious, visited):
                gts = np.flatnonzero((s.gt_class == c) & (s.gt_count >= MIN_REGION_SIZE))
                preds = np.flatnonzero(s.pred_class == c)
                has_gt |= len(gts) > 0
                has_pred |= len(preds) > 0
                cur_true: list[float] = []
                cur_score: list[float] = []
                for g in gts:
                    matched = False
                    score = -math.inf
                    for p in preds[s.inter[preds, g] > 0]:   # submission order
                        if used[p] or not iou[p, g] > th:
                            continue
                        if matched:   # a second match: the lower score is a false positive
                            cur_true.append(0.0)
                            cur_score.append(min(score, s.pred_score[p]))
                            score = max(score, s.pred_score[p])
                        else:
                            matched = True
                            score = s.pred_score[p]
                            used[p] = True
                    if matched:
                        cur_true.append(1.0)
                        cur_score.append(score)
                    else:
                        hard_fn += 1
                # Unmatched predictions: false positive unless mostly void / tiny GT.
                small = s.gt_count < MIN_REGION_SIZE
                for p in preds:
                    if (iou[p] > th).any():
                        continue
                    ignore = s.pred_void[p] + s.inter[p, small].sum()
                    if ignore / s.pred_count[p] <= th:
                        cur_true.append(0.0)
                        cur_score.append(s.pred_score[p])
                y_true += cur_true
                y_score += cur_score
            if has_gt and has_pred:
                ap[c, oi] = _average_precision(np.asarray(y_true), np.asarray(y_score), hard_fn)
            elif has_gt:
                ap[c, oi] = 0.0
            else:
                ap[c, oi] = math.nan
    return ap


def _average_precision(y_true: np.ndarray, y_score: np.ndarray, hard_fn: int) -> float:
    """Upstream's PR sampling at unique scores plus (0, 1), integrated without envelope."""
    if len(y_score) == 0:
        return 0.0
    order = np.argsort(y_score, kind="stable")
    scores, true = y_score[order], y_true[order]
    cum = np.cumsum(true)
    _, first = np.unique(scores, return_index=True)
    total_true = cum[-1]
    before = np.where(first > 0, cum[first - 1], 0.0)   # true examples scored below threshold
    tp = total_true - before
    fp = len(scores) - first - tp
    fn = before + hard_fn
    precision = np.append(tp / (tp + fp), 1.0)
    recall = np.append(tp / (tp + fn), 0.0)   # tp + fn = all GT of the class: never 0 here
    padded = np.concatenate([[recall[0]], recall, [0.0]])
    steps = 0.5 * (padded[:-2] - padded[2:])
    return float(np.dot(precision, steps))


# ---------------------------------------------------------------------------------------------
# Public entry points


def evaluate_scenes(scenes: Iterable[tuple[np.ndarray, np.ndarray, Sequence[Prediction]]]) -> Result:
    """Benchmark in-memory scenes: (gt semantic train ids, gt instance ids, predictions).

    Ground-truth instance ids are per object, -1 for points in no instance (wall, floor,
    unlabelled); their class is the semantic label of their points.
    """
    data = []
    for k, (semantic, instance, preds) in enumerate(scenes):
        gt = gt_ids(semantic, instance)
        triples = [(p.mask, _nyu40(p.label), p.score) for p in preds]
        data.append(_scene(gt, triples, f"scene {k}"))
    return Result(_evaluate(data))


def evaluate_gt_ids(scenes: Iterable[tuple[np.ndarray, Sequence[tuple[np.ndarray, int, float]]]]) -> Result:
    """Benchmark scenes given as upstream GT ids and (mask, nyu40 id, score) triples."""
    return Result(_evaluate([_scene(gt, preds, f"scene {k}") for k, (gt, preds) in enumerate(scenes)]))


# ---------------------------------------------------------------------------------------------
# Files: upstream GT id files and the submission format


def _read_ints(path: Path) -> np.ndarray:
    """One integer per line, fast for the usual single-digit mask files."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EvaluationError(f"cannot read {path}: {e}") from e
    raw = np.frombuffer(data, np.uint8)
    if len(raw) % 2 == 0 and len(raw) and (raw[1::2] == 10).all() and \
            ((raw[0::2] >= 48) & (raw[0::2] <= 57)).all():
        return (raw[0::2] - 48).astype(np.int64)
    try:
        return np.array(data.split(), dtype=np.int64)
    except (ValueError, OverflowError) as e:
        raise EvaluationError(f"{path}: expected one integer per line ({e})") from e


def _write_ints(path: Path, values: np.ndarray) -> None:
    values = np.asarray(values, dtype=np.int64)
    if len(values) and values.min() >= 0 and values.max() <= 9:
        out = np.empty(2 * len(values), np.uint8)
        out[0::2] = values + 48
        out[1::2] = 10
        path.write_bytes(out.tobytes())
    else:
        path.write_text("".join(f"{v}\n" for v in values))


def write_gt_file(path: "Path | str", semantic: np.ndarray, instance: np.ndarray) -> Path:
    """Write an upstream ground-truth file (one ``nyu40*1000+instance`` per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = gt_ids(semantic, instance)
    path.write_text("".join(f"{v}\n" for v in ids))
    return path


def read_gt_file(path: "Path | str") -> np.ndarray:
    """Upstream ground-truth ids of one scene (``nyu40_id * 1000 + instance``, so none below 0)."""
    ids = _read_ints(Path(path))
    if len(ids) == 0:
        raise EvaluationError(f"{path}: no points (an empty ground-truth file)")
    if ids.min() < 0:
        raise EvaluationError(f"{path}:{int(np.argmin(ids)) + 1}: negative id {int(ids.min())}; "
                              "ground-truth ids are nyu40_id * 1000 + instance")
    return ids


def write_submission(folder: "Path | str", scene: str, predictions: Sequence[Prediction]) -> Path:
    """Write ``folder/{scene}.txt`` and ``folder/pred_mask/{scene}_{i}.txt`` in the official
    format (nyu40 label ids, one 0/1 per point). Predictions with a label outside the 18
    classes are left out, since the benchmark would ignore them. Returns the scene file."""
    folder = Path(folder)
    (folder / "pred_mask").mkdir(parents=True, exist_ok=True)
    if not scene or any(c.isspace() for c in scene) or "/" in scene:
        raise EvaluationError(f"scene name {scene!r} must be non-empty, without spaces or '/'")
    lines = []
    for i, p in enumerate(predictions):
        nyu = _nyu40(p.label)
        if nyu not in _NYU_TO_CLASS:
            continue
        rel = f"pred_mask/{scene}_{i:03d}.txt"
        _write_ints(folder / rel, np.asarray(p.mask, bool).astype(np.int64))
        lines.append(f"{rel} {nyu} {float(p.score)!r}\n")  # repr: exact round trip
    path = folder / f"{scene}.txt"
    path.write_text("".join(lines))
    return path


def read_submission(path: "Path | str", num_points: int | None = None) -> list[tuple[np.ndarray, int, float]]:
    """(mask, nyu40 id, score) per line of a submission ``{scene}.txt``, in file order.

    Like upstream: a mask path must name a file inside the submission folder (no ``..`` out of
    it), though symlinks in the folder may lead anywhere, as the official script follows them; a
    mask file named twice counts once (its last line wins, at its first position).
    """
    path = Path(path)
    root = os.path.normpath(path.parent.absolute())
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise EvaluationError(f"cannot read {path} as text: {e}") from e
    entries: dict[Path, tuple[int, float]] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 3:
            raise EvaluationError(f"{path}:{n}: expected 'relative/mask.txt label_id confidence', "
                                  f"got {line!r}")
        if os.path.isabs(parts[0]):
            raise EvaluationError(f"{path}:{n}: mask path {parts[0]!r} must be relative")
        named = os.path.normpath(os.path.join(root, parts[0]))  # '..' taken by name, links kept
        if os.path.commonpath([named, root]) != root:
            raise EvaluationError(f"{path}:{n}: mask {parts[0]!r} points outside {root}")
        mask_file = Path(named).resolve()
        try:
            entries[mask_file] = (int(float(parts[1])), float(parts[2]))
        except (ValueError, OverflowError) as e:
            raise EvaluationError(f"{path}:{n}: bad label id or confidence ({e})") from e
        if not math.isfinite(entries[mask_file][1]):
            raise EvaluationError(f"{path}:{n}: confidence {parts[2]!r} is not a finite number")
    out = []
    for mask_file, (nyu, score) in entries.items():
        if nyu not in _NYU_TO_CLASS:
            out.append((np.zeros(0, bool), nyu, score))  # skipped by the evaluator
            continue
        mask = _read_ints(mask_file) != 0
        if num_points is not None and len(mask) != num_points:
            raise EvaluationError(f"{mask_file}: {len(mask)} lines, but the ground truth of scene "
                                  f"{path.stem} has {num_points} points")
        out.append((mask, nyu, score))
    return out


def submission_to_predictions(entries: Sequence[tuple[np.ndarray, int, float]]) -> list[Prediction]:
    """Submission triples (nyu40 ids) to in-memory ``Prediction``s (train ids)."""
    lookup = {nyu: t for t, nyu in enumerate(NYU40_IDS)}
    return [Prediction(mask, lookup.get(nyu, -1), score) for mask, nyu, score in entries]


def evaluate_folders(pred_dir: "Path | str", gt: "dict[str, np.ndarray]") -> Result:
    """Benchmark a submission folder against GT ids per scene name (upstream GT ids).

    Like upstream, every ``*.txt`` in ``pred_dir`` (except a previous result file) is a scene
    and must have ground truth; ground-truth scenes without a prediction file are not scored.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        why = "is not a folder" if pred_dir.exists() else "does not exist"
        raise EvaluationError(f"prediction folder {pred_dir} {why}")
    files = sorted(p for p in pred_dir.glob("*.txt") if p.name != "semantic_instance_evaluation.txt")
    if not files:
        raise EvaluationError(f"no prediction files (*.txt) in {pred_dir}")
    scenes = []
    for f in files:
        if f.stem not in gt:
            raise EvaluationError(f"prediction file {f} matches no ground-truth scene")
        ids = gt[f.stem]
        scenes.append(_scene(ids, read_submission(f, len(ids)), str(f)))
    return Result(_evaluate(scenes))
