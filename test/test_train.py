"""Training end to end on tiny rooms: checkpoints, resume, validation, NaN stop, DDP on CPU."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ssen_ros import head_refit, train as train_module
from ssen_ros.checkpoint import WeightsError, export
from ssen_ros.config import TrainConfig, from_dict
from ssen_ros.data.dataset import CACHE_NAME, DatasetError, find_scenes
from ssen_ros.io.scannet import write_scannet_scene
from ssen_ros.segmenter import Segmenter
from ssen_ros.config import SegmenterConfig

REPO = Path(__file__).resolve().parents[1]


def tiny_room(seed):
    """A 3 m floor (class floor) with three boxes: two chairs and a table, each an instance."""
    rng = np.random.default_rng(seed)
    floor = np.c_[rng.uniform(0, 3, (1500, 2)), np.zeros(1500)]
    parts, sem, inst = [floor], [np.full(1500, 1)], [np.full(1500, -1)]
    for k, (cls, centre) in enumerate([(4, (0.7, 0.7)), (4, (2.2, 0.7)), (6, (1.5, 2.0))]):
        box = rng.uniform(-0.25, 0.25, (600, 3)) + [*centre, 0.4]
        parts.append(box)
        sem.append(np.full(600, cls))
        inst.append(np.full(600, k))
    points = np.concatenate(parts)
    colors = rng.integers(0, 255, (len(points), 3)).astype(np.uint8)
    return points, colors, np.concatenate(sem), np.concatenate(inst)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("rooms")
    for split, seeds in (("train", [0, 1]), ("val", [2])):
        for seed in seeds:
            write_scannet_scene(root / split / f"tiny{seed:04d}_00", f"tiny{seed:04d}_00", *tiny_room(seed))
    return root


def config(dataset, out, **kw):
    base = dict(data=str(dataset), out=str(out), arch="Res16UNet14S", in_channels=6, voxel_size=0.1,
                steps=3, batch_size=2, lr=1e-3, val_every=3, checkpoint_every=1)
    base.update(kw)
    return from_dict(TrainConfig, base)


def test_train_writes_weights_history_and_resumes(dataset, tmp_path):
    final = train_module.train(config(dataset, tmp_path / "run"))
    run = tmp_path / "run"
    assert final == run / "final.pt" and (run / "last.pt").is_file()
    assert (run / "learning_curve.png").is_file() and any((run / "tensorboard").iterdir())
    history = (run / "history.json").read_text()
    assert '"step": 3' in history and '"AP50"' in history
    seg = Segmenter(SegmenterConfig(weights=str(final), backend="torch"))
    assert seg.spec.in_channels == 6 and seg.voxel_size == 0.1
    from ssen_ros.checkpoint import export
    shipped = export(final, tmp_path / "ship.pt")
    assert shipped.stat().st_size < final.stat().st_size / 2  # fp16, no Adam moments
    pts, cols, _, _ = tiny_room(9)
    a = seg(pts, cols)
    b = Segmenter(SegmenterConfig(weights=str(shipped), backend="torch"))(pts, cols)
    assert (a.semantic == b.semantic).mean() > 0.99
    trainer_steps = train_module.train(config(dataset, run, steps=6), resume=run / "last.pt")
    import torch
    assert torch.load(trainer_steps, weights_only=False)["meta"]["step"] == 6
    assert [h["step"] for h in json.loads((run / "history.json").read_text())] == [3, 6]


def test_resume_continues_exactly_where_the_run_stopped(dataset, tmp_path):
    import torch
    whole = train_module.train(config(dataset, tmp_path / "whole", steps=4, val_every=0))
    train_module.train(config(dataset, tmp_path / "split", steps=2, val_every=0))
    split = train_module.train(config(dataset, tmp_path / "split", steps=4, val_every=0),
                               resume=tmp_path / "split" / "last.pt")
    a, b = (torch.load(p, weights_only=False) for p in (whole, split))
    for net in ("semantic", "embedding"):
        for name, value in a[net].items():
            assert torch.equal(value, b[net][name]), f"{net}.{name} differs after resume"
    assert a["meta"]["optimizer"]["param_groups"][0]["lr"] == b["meta"]["optimizer"]["param_groups"][0]["lr"]


def test_resume_refuses_a_file_of_other_networks_or_none_in_one_line(dataset, tmp_path):
    train_module.train(config(dataset, tmp_path / "run", steps=1, val_every=0))
    (tmp_path / "garbage.pt").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="cannot resume from .*garbage.pt: not a checkpoint that `ssen train` wrote"):
        train_module.train(config(dataset, tmp_path / "other", steps=2, val_every=0), resume=tmp_path / "garbage.pt")
    with pytest.raises(WeightsError, match=r"cannot resume from .*last.pt: it holds ModelSpec\(arch='Res16UNet14S'.*"
                                           r"this run trains ModelSpec\(arch='Res16UNet14A'"):
        train_module.train(config(dataset, tmp_path / "other", steps=2, val_every=0, arch="Res16UNet14A"),
                           resume=tmp_path / "run" / "last.pt")


def test_validation_before_the_first_checkpoint_reads_this_steps_weights(dataset, tmp_path):
    train_module.train(config(dataset, tmp_path / "run", steps=2, val_every=1, checkpoint_every=1000))
    assert [h["step"] for h in json.loads((tmp_path / "run" / "history.json").read_text())] == [1, 2]


def test_cli_checks_overrides_and_the_export_path_before_training(dataset, tmp_path, capsys):
    from ssen_ros.cli import main
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(dict(data=str(dataset), out=str(tmp_path / "run"), arch="Res16UNet14S",
                                       voxel_size=0.1, steps=1, batch_size=1, val_every=0)))
    before = cfg.read_text()
    assert main(["train", str(cfg), "--steps", "-5"]) == 2
    assert "steps must be >= 1, got -5" in capsys.readouterr().err
    assert main(["train", str(cfg), "--export", str(cfg)]) == 2
    assert f"--export {cfg}: is an input of this run" in capsys.readouterr().err
    assert cfg.read_text() == before and not (tmp_path / "run").exists()


def test_lr_follows_milestones_or_a_fixed_period():
    every = from_dict(TrainConfig, dict(lr_decay=0.5, lr_decay_every=10))
    assert [train_module.lr_factor(every, s) for s in (0, 9, 10, 25)] == [1, 1, 0.5, 0.25]
    milestones = from_dict(TrainConfig, dict(lr_decay=0.5, lr_milestones=[5, 20]))
    factors = [train_module.lr_factor(milestones, s) for s in (0, 4, 5, 19, 20, 99)]
    assert factors == [1, 1, 0.5, 0.5, 0.25, 0.25]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(dataset, tmp_path, monkeypatch):
    real = train_module.ssen_loss
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        terms = real(*args, **kwargs)
        return terms if len(calls) < 3 else terms._replace(total=terms.total * float("nan"))

    monkeypatch.setattr(train_module, "ssen_loss", poisoned)
    with pytest.raises(train_module.TrainingError, match=r"loss is nan at step 2.*last\.pt"):
        train_module.train(config(dataset, tmp_path / "run", steps=5, val_every=0))
    import torch
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["meta"]["step"] == 2


def test_empty_dataset_and_unknown_key_are_named(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match="holds no ScanNet scenes"):
        find_scenes(tmp_path / "train")
    (tmp_path / "a.ply").write_text("")
    with pytest.raises(DatasetError, match="a.ply is not a folder"):
        find_scenes(tmp_path / "a.ply")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stepz: 3\n")
    result = subprocess.run([sys.executable, "-m", "ssen_ros.cli", "train", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "unknown key(s) ['stepz']" in result.stderr
    assert "Traceback" not in result.stderr


_RANK_RECORDER = """
import sys
import torch
import ssen_ros.train as train
from ssen_ros.cli import main

batches = []
draw, check = train.Trainer.batch, train.check_in_sync

def recorded_batch(self):
    batch = draw(self)
    batches.append(float(batch["features"].double().sum()))
    return batch

def saved_then_checked(trainer):
    # Parameters only: BatchNorm's running statistics are each rank's own until DDP broadcasts
    # rank 0's at the next forward, so only rank 0's are saved.
    nets = {"semantic": trainer.semantic.module, "embedding": trainer.embedding.module}  # DDP-wrapped
    torch.save({"batches": batches, **{k: dict(n.named_parameters()) for k, n in nets.items()}},
               f"{sys.argv[1]}/rank{trainer.rank}.pt")
    check(trainer)

train.Trainer.batch, train.check_in_sync = recorded_batch, saved_then_checked
sys.exit(main(["train", sys.argv[2]]))
"""


def test_two_cpu_processes_stay_in_sync(dataset, tmp_path):
    """DDP with the gloo backend on 2 CPU processes (issue 5: in CI): each rank draws other
    batches, and after training both hold the same parameters, tensor for tensor."""
    data = tmp_path / "rooms"  # no scene caches yet: both ranks read the scenes and write them
    shutil.copytree(dataset, data, ignore=shutil.ignore_patterns(CACHE_NAME))
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump(dict(data=str(data), out=str(tmp_path / "ddp"), arch="Res16UNet14S",
                                       voxel_size=0.1, steps=3, batch_size=1, val_every=0)))
    recorder = tmp_path / "record_ranks.py"
    recorder.write_text(_RANK_RECORDER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node", "2", str(recorder), str(tmp_path), str(cfg)],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "weights identical on all 2 processes" in result.stderr
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert len(ranks[0]["batches"]) == 3 and ranks[0]["batches"] != ranks[1]["batches"]
    for net in ("semantic", "embedding"):
        a, b = ranks[0][net], ranks[1][net]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_class_weights_follow_frequency_to_the_minus_alpha():
    counts = np.array([900, 100, 0])
    assert head_refit.class_weights(counts, 0.0).tolist() == [1.0, 1.0, 0.0]
    w = head_refit.class_weights(counts, 1.0)
    assert w[0] * 900 == pytest.approx(w[1] * 100) and w[2] == 0  # each class weighs the same
    assert (w * counts).sum() == pytest.approx(counts.sum())  # mean weight per voxel is 1
    w = head_refit.class_weights(counts, 0.5)
    assert w[1] / w[0] == pytest.approx(3.0)


def test_head_refit_changes_only_the_final_layer_and_lowers_its_loss(dataset, tmp_path):
    cfg = config(dataset, tmp_path / "run", head_refit={"steps": 30, "alpha": 1.0})
    trainer = train_module.Trainer(cfg)
    trainer.train_step(trainer.batch())
    before = {k: v.clone() for k, v in trainer.semantic.state_dict().items()}
    losses = head_refit.refit_semantic_head(trainer.semantic, trainer.scenes, cfg, trainer.rng, trainer.device)
    assert losses["after"] < losses["before"]
    changed = {k for k, v in trainer.semantic.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"final.kernel", "final.bias"}


def test_exported_weights_resume_into_the_head_refit(dataset, tmp_path):
    first = train_module.train(config(dataset, tmp_path / "a", val_every=0))
    exported = export(first, tmp_path / "shipped.pt")
    cfg = config(dataset, tmp_path / "b", val_every=0, head_refit={"steps": 20})
    final = train_module.train(cfg, resume=exported)  # no optimizer state; no steps left to train
    a, b = torch.load(exported, weights_only=False), torch.load(final, weights_only=False)
    assert b["meta"]["step"] == 3
    assert not torch.equal(a["semantic"]["final.kernel"].float(), b["semantic"]["final.kernel"].float())
    assert torch.equal(a["semantic"]["conv0p1s1.kernel"].float(), b["semantic"]["conv0p1s1.kernel"].float())


def test_a_run_starts_from_other_weights_with_channels_matched_by_name(dataset, tmp_path):
    """Stage 2 of the shipped weights: 6-channel (RGB + xyz) networks start 4-channel (RGB +
    height) ones; colour rows are copied, height takes z's, and the first scenes only are used."""
    first = train_module.train(config(dataset, tmp_path / "six", steps=2, val_every=0))
    trainer = train_module.Trainer(config(dataset, tmp_path / "four", in_channels=4, init=str(first), scenes=1))
    assert [s.name for s in trainer.scenes] == ["tiny0000_00"]
    old = torch.load(first, weights_only=False)
    for key, net in (("semantic", trainer.semantic), ("embedding", trainer.embedding)):
        kernel, source = net.state_dict()["conv0p1s1.kernel"], old[key]["conv0p1s1.kernel"]
        assert kernel.shape[1] == 4
        assert torch.equal(kernel[:, :3], source[:, :3]) and torch.equal(kernel[:, 3], source[:, 5])
        deeper = next(k for k in old[key] if k.startswith("block1") and k.endswith("kernel"))
        assert torch.equal(net.state_dict()[deeper], old[key][deeper])
    assert trainer.step == 0 and not trainer.optimizer.state
    with pytest.raises(Exception, match="cannot start"):
        train_module.Trainer(config(dataset, tmp_path / "wide", arch="Res16UNet34C", in_channels=4, init=str(first)))
