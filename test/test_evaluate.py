"""ScanNet instance benchmark: hand-worked AP values, the official file format, bad input.

Notation in the derivations: y = [(is_true, score), ...] per class and threshold; the PR
curve is sampled at each unique score s (counting everything scored >= s) plus the point
(r=0, p=1); AP = sum_i p_i * (r_{i-1} - r_{i+1}) / 2 with r_{-1} = r_0, r_{n+1} = 0.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from ssen_ros.classes import CLASS_NAMES, NYU40_IDS
from ssen_ros.evaluate import (INSTANCE_CLASS_NAMES, OVERLAPS, EvaluationError, Prediction,
                               evaluate_folders, evaluate_scenes, gt_ids, read_gt_file,
                               read_submission, submission_to_predictions, write_gt_file,
                               write_submission)

WALL, CHAIR, TABLE, BED = (CLASS_NAMES.index(n) for n in ("wall", "chair", "table", "bed"))


class Scene:
    """Points laid out as consecutive blocks: wall first, then objects."""

    def __init__(self, wall: int = 1000):
        self.semantic = [np.full(wall, WALL)]
        self.instance = [np.full(wall, -1)]
        self.n = wall
        self.blocks: list[np.ndarray] = []

    def add(self, label: int, count: int) -> np.ndarray:
        idx = np.arange(self.n, self.n + count)
        self.semantic.append(np.full(count, label))
        self.instance.append(np.full(count, len(self.blocks)))
        self.blocks.append(idx)
        self.n += count
        return idx

    def mask(self, *index_arrays: np.ndarray) -> np.ndarray:
        m = np.zeros(self.n, bool)
        for idx in index_arrays:
            m[idx] = True
        return m

    def gt(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.semantic), np.concatenate(self.instance)


def ap_row(result, name: str) -> np.ndarray:
    return result.ap[INSTANCE_CLASS_NAMES.index(name)]


def test_thresholds_are_upstreams():
    np.testing.assert_allclose(OVERLAPS, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.25])


def test_perfect_predictions_score_one_and_absent_classes_nan():
    s = Scene()
    chairs = [s.add(CHAIR, 150 + 10 * i) for i in range(3)]
    table = s.add(TABLE, 400)
    preds = [Prediction(s.mask(c), CHAIR, 0.5 + 0.1 * i) for i, c in enumerate(chairs)]
    preds.append(Prediction(s.mask(table), TABLE, 0.7))
    r = evaluate_scenes([(*s.gt(), preds)])
    assert (r.mean_ap, r.ap50, r.ap25) == pytest.approx((1.0, 1.0, 1.0))
    np.testing.assert_allclose(ap_row(r, "chair"), 1.0)
    np.testing.assert_allclose(ap_row(r, "table"), 1.0)
    assert np.isnan(ap_row(r, "bed")).all()
    assert math.isnan(r.per_class()["sofa"][0])


def test_prediction_split_in_two():
    # Chair of 300 points; A covers 180 (IoU 0.6, score 0.8, listed first), B the other 120
    # (IoU 0.4, score 0.9).
    # t = 0.50, 0.55: A matches (0.6 > t); B is an unmatched false positive.
    #   y = [(1, .8), (0, .9)]; at s=.8: tp 1, fp 1 -> p .5, r 1; at s=.9: tp 0, fp 1 -> p 0, r 0;
    #   plus (r 0, p 1). r = [1, 0, 0] -> steps [.5, .5, 0]; AP = .5*.5 + 0*.5 + 1*0 = 0.25.
    # t = 0.60 ... 0.90: 0.6 is not > 0.6, nothing matches; AP = 0.
    # t = 0.25: A matches first, then B also passes: the second match is a false positive with
    #   the lower score (.8) and the match keeps the higher (.9): y = [(1, .9), (0, .8)];
    #   at s=.8: p .5, r 1; at s=.9: p 1, r 1; r = [1, 1, 0] -> steps [0, .5, .5]; AP = 1.
    # AP = (0.25 + 0.25) / 9.
    s = Scene()
    chair = s.add(CHAIR, 300)
    preds = [Prediction(s.mask(chair[:180]), CHAIR, 0.8), Prediction(s.mask(chair[180:]), CHAIR, 0.9)]
    r = evaluate_scenes([(*s.gt(), preds)])
    np.testing.assert_allclose(ap_row(r, "chair"), [.25, .25, 0, 0, 0, 0, 0, 0, 0, 1.0])
    assert r.mean_ap == pytest.approx(0.5 / 9)
    assert r.ap50 == pytest.approx(0.25) and r.ap25 == pytest.approx(1.0)


def test_two_objects_merged():
    # Two chairs of 200 points, one prediction (score .9) covering both: IoU 200/400 = 0.5 each.
    # t >= 0.5: 0.5 is not > t: both chairs missed, the prediction a false positive: AP 0.
    # t = 0.25: the first chair takes it, the second finds it used (greedy) and is missed:
    #   y = [(1, .9)], 1 hard false negative -> p 1, r .5; r = [.5, 0] -> steps [.25, .25];
    #   AP = .25 + .25 = 0.5.
    s = Scene()
    a, b = s.add(CHAIR, 200), s.add(CHAIR, 200)
    r = evaluate_scenes([(*s.gt(), [Prediction(s.mask(a, b), CHAIR, 0.9)])])
    np.testing.assert_allclose(ap_row(r, "chair"), [0] * 9 + [0.5])


def test_duplicates_with_different_confidences():
    # Tables T1, T2 (300 points). P1 = T1 (score .8), P2 = T1 (.9), P3 = T2 (.7); all exact.
    # At every threshold: T1 matches P1 first, then P2: the duplicate is a false positive with
    # the lower score .8 and T1 keeps .9. y = [(1,.9), (0,.8), (1,.7)].
    #   s=.7: tp 2, fp 1 -> p 2/3, r 1;  s=.8: tp 1, fp 1 -> p 1/2, r 1/2;
    #   s=.9: tp 1, fp 0 -> p 1, r 1/2;  then (0, 1).
    #   r = [1, .5, .5, 0] -> steps [.25, .25, .25, .25];
    #   AP = (2/3 + 1/2 + 1 + 1) / 4 = 19/24.
    s = Scene()
    t1, t2 = s.add(TABLE, 300), s.add(TABLE, 300)
    preds = [Prediction(s.mask(t1), TABLE, 0.8), Prediction(s.mask(t1), TABLE, 0.9),
             Prediction(s.mask(t2), TABLE, 0.7)]
    r = evaluate_scenes([(*s.gt(), preds)])
    np.testing.assert_allclose(ap_row(r, "table"), 19 / 24)
    assert r.mean_ap == pytest.approx(19 / 24)


def test_mostly_void_prediction():
    # Chair of 200 points, predicted exactly with score .5. A second chair prediction (score .9)
    # has 50 chair points + 250 wall points: IoU 50/450 < .25, so it never matches; its void
    # share is 250/300 = .833.
    # t <= .80 and t = .25: .833 > t -> ignored: y = [(1, .5)] -> AP 1.
    # t = .85, .90: .833 <= t -> false positive: y = [(1, .5), (0, .9)] -> AP .25 (as in the
    #   split case). AP = (7 + 2 * .25) / 9.
    s = Scene(wall=1000)
    chair = s.add(CHAIR, 200)
    wall = np.arange(250)
    preds = [Prediction(s.mask(chair), CHAIR, 0.5), Prediction(s.mask(chair[:50], wall), CHAIR, 0.9)]
    r = evaluate_scenes([(*s.gt(), preds)])
    np.testing.assert_allclose(ap_row(r, "chair"), [1] * 7 + [.25, .25] + [1])
    assert r.mean_ap == pytest.approx(7.5 / 9)
    # Alone, the void prediction is always ignored: no true and no false example. Upstream
    # crashes on this (empty cumsum); we score 0, as for a class with no prediction.
    r = evaluate_scenes([(*s.gt(), preds[1:])])
    np.testing.assert_allclose(ap_row(r, "chair")[:7], 0.0)


def test_class_without_ground_truth_is_nan_and_leaves_mean_alone():
    s = Scene()
    chair = s.add(CHAIR, 200)
    preds = [Prediction(s.mask(chair), CHAIR, 0.9), Prediction(s.mask(chair), BED, 0.8)]
    r = evaluate_scenes([(*s.gt(), preds)])
    assert np.isnan(ap_row(r, "bed")).all()
    assert r.mean_ap == 1.0
    # A class with ground truth but no prediction scores 0 and does pull the mean down.
    s.add(TABLE, 300)
    r = evaluate_scenes([(*s.gt(), [Prediction(np.append(p.mask, np.zeros(300, bool)), p.label, p.score)
                                    for p in preds])])
    np.testing.assert_allclose(ap_row(r, "table"), 0.0)
    assert r.mean_ap == pytest.approx(0.5)


def test_objects_under_100_points():
    # A chair of 80 points is no ground truth, and a prediction of 80 points is dropped:
    # the class has no ground truth -> NaN.
    s = Scene()
    small = s.add(CHAIR, 80)
    r = evaluate_scenes([(*s.gt(), [Prediction(s.mask(small), CHAIR, 0.9)])])
    assert np.isnan(ap_row(r, "chair")).all()
    # With a big chair (200, predicted exactly, score .5): a prediction of the small chair plus
    # 40 wall points (120 points, score .9) has IoU 80/120 = .667 with the small chair.
    # t < .667: it "matches" a dropped ground truth -> neither true nor false positive.
    # t >= .70: unmatched, but (40 void + 80 small-GT) / 120 = 1 > t -> ignored. AP 1 everywhere.
    big = s.add(CHAIR, 200)
    preds = [Prediction(s.mask(big), CHAIR, 0.5), Prediction(s.mask(small, np.arange(40)), CHAIR, 0.9)]
    r = evaluate_scenes([(*s.gt(), preds)])
    np.testing.assert_allclose(ap_row(r, "chair"), 1.0)


def test_scores_pool_across_scenes():
    # Scene 1: chair predicted exactly (score .6). Scene 2: chair missed, a false chair (.7)
    # on a table. y = [(1, .6), (0, .7)], 1 hard FN.
    #   s=.6: tp 1, fp 1, fn 1 -> p .5, r .5;  s=.7: tp 0, fp 1 -> p 0, r 0;  then (0, 1).
    #   r = [.5, 0, 0] -> steps [.25, .25, 0]; AP = .5 * .25 + 0 = .125.
    s1, s2 = Scene(), Scene()
    c1 = s1.add(CHAIR, 200)
    s2.add(CHAIR, 200)
    t2 = s2.add(TABLE, 200)
    r = evaluate_scenes([(*s1.gt(), [Prediction(s1.mask(c1), CHAIR, 0.6)]),
                         (*s2.gt(), [Prediction(s2.mask(t2), CHAIR, 0.7)])])
    np.testing.assert_allclose(ap_row(r, "chair"), 0.125)
    np.testing.assert_allclose(ap_row(r, "table"), 0.0)


def test_submission_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    scenes, gts = [], {}
    for k in range(3):
        s = Scene(wall=500)
        objs = [s.add(lab, int(rng.integers(90, 400))) for lab in (CHAIR, CHAIR, TABLE, BED)]
        semantic, instance = s.gt()
        preds = []
        for i, o in enumerate(objs):
            part = o[: int(len(o) * rng.uniform(0.5, 1.0))]
            preds.append(Prediction(s.mask(part, rng.choice(500, 30)), int(semantic[o[0]]),
                                    round(float(rng.random()), 6)))
        preds.append(Prediction(s.mask(objs[0]), WALL, 0.9))  # not an instance class: left out
        name = f"scene{k:04d}_00"
        write_submission(tmp_path / "pred", name, preds)
        write_gt_file(tmp_path / "gt" / f"{name}.txt", semantic, instance)
        scenes.append((semantic, instance, preds))
        gts[name] = read_gt_file(tmp_path / "gt" / f"{name}.txt")
        np.testing.assert_array_equal(gts[name], gt_ids(semantic, instance))
        back = read_submission(tmp_path / "pred" / f"{name}.txt", len(semantic))
        assert len(back) == 4
        for (mask, nyu, score), p in zip(back, preds):
            np.testing.assert_array_equal(mask, p.mask)
            assert nyu == NYU40_IDS[p.label] and score == pytest.approx(p.score)
        assert [p.label for p in submission_to_predictions(back)] == [p.label for p in preds[:4]]
    direct = evaluate_scenes(scenes)
    files = evaluate_folders(tmp_path / "pred", gts)
    np.testing.assert_array_equal(direct.ap, files.ap)
    assert "chair" in files.table() and files.csv().startswith("class,class id,ap,ap50,ap25\n")


def test_bad_input_is_named(tmp_path):
    s = Scene()
    chair = s.add(CHAIR, 200)
    with pytest.raises(EvaluationError, match="scene 0: prediction 0 has 10 mask entries"):
        evaluate_scenes([(*s.gt(), [Prediction(np.ones(10, bool), CHAIR, 1.0)])])
    (tmp_path / "a.txt").write_text("pred_mask/x.txt 5\n")
    with pytest.raises(EvaluationError, match=r"a.txt:1: expected"):
        read_submission(tmp_path / "a.txt")
    (tmp_path / "b.txt").write_text("../x.txt 5 0.5\n")
    with pytest.raises(EvaluationError, match="outside"):
        read_submission(tmp_path / "b.txt")
    write_submission(tmp_path / "p", "sc", [Prediction(s.mask(chair), CHAIR, 0.5)])
    with pytest.raises(EvaluationError, match="200 lines, but the ground truth of scene sc has 5 points"):
        read_submission(tmp_path / "p" / "sc.txt", 5)
    with pytest.raises(EvaluationError, match="matches no ground-truth scene"):
        evaluate_folders(tmp_path / "p", {})
    with pytest.raises(EvaluationError, match="prediction folder .*nope does not exist"):
        evaluate_folders(tmp_path / "nope", {})
    (tmp_path / "c.txt").write_text("pred_mask/x.txt 5 nan\n")
    with pytest.raises(EvaluationError, match=r"c.txt:1: confidence 'nan' is not a finite number"):
        read_submission(tmp_path / "c.txt")
    (tmp_path / "d.txt").write_bytes(b"\x89PNG\xff\xfe")
    with pytest.raises(EvaluationError, match=r"cannot read .*d.txt as text"):
        read_submission(tmp_path / "d.txt")
    for text, message in (("", "no points"), ("5001\n-3\n", r"gt.txt:2: negative id -3"),
                          ("99999999999999999999999\n", "expected one integer per line")):
        (tmp_path / "gt.txt").write_text(text)
        with pytest.raises(EvaluationError, match=message):
            read_gt_file(tmp_path / "gt.txt")


def test_cli_with_official_ground_truth_files(tmp_path, capsys):
    from ssen_ros.cli import main as ssen

    s = Scene()
    a, b = s.add(CHAIR, 300), s.add(TABLE, 200)
    semantic, instance = s.gt()
    write_gt_file(tmp_path / "gt" / "scene0000_00.txt", semantic, instance)
    # Split case of test_prediction_split_in_two for the chair, the table exact.
    write_submission(tmp_path / "pred", "scene0000_00", [
        Prediction(s.mask(a[:180]), CHAIR, 0.8), Prediction(s.mask(a[180:]), CHAIR, 0.9),
        Prediction(s.mask(b), TABLE, 0.5)])
    assert ssen(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"),
                 "--output", str(tmp_path / "result.csv")]) == 0
    out = capsys.readouterr().out
    assert "chair              0.056    0.250    1.000" in out
    assert "table              1.000    1.000    1.000" in out
    rows = (tmp_path / "result.csv").read_text().splitlines()
    assert rows[0] == "class,class id,ap,ap50,ap25" and rows[3].startswith("chair,5,0.0555")
    (tmp_path / "gt" / "scene0000_00.txt").write_text("0\n" * 10)
    assert ssen(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt")]) == 2
    assert "lines, but the ground truth of scene scene0000_00 has 10 points" in capsys.readouterr().err


def test_submission_may_link_its_masks_elsewhere_but_not_name_a_way_out(tmp_path):
    s = Scene()
    chair = s.add(CHAIR, 300)
    write_submission(tmp_path / "elsewhere", "sc", [Prediction(s.mask(chair), CHAIR, 0.5)])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pred_mask").symlink_to(tmp_path / "elsewhere" / "pred_mask")
    (tmp_path / "sub" / "sc.txt").write_text((tmp_path / "elsewhere" / "sc.txt").read_text())
    [(mask, nyu, score)] = read_submission(tmp_path / "sub" / "sc.txt", len(s.mask(chair)))
    assert mask.sum() == 300 and score == 0.5
    (tmp_path / "sub" / "sc.txt").write_text("pred_mask/../../elsewhere/pred_mask/sc_000.txt 5 0.5\n")
    with pytest.raises(EvaluationError, match="points outside"):
        read_submission(tmp_path / "sub" / "sc.txt")

