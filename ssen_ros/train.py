"""Training of both SSEN networks (paper §III-IV), on one CPU or many GPUs via torchrun + DDP.

Per step, on a batch of scenes:
- the semantic network trains with cross-entropy (ignore label -1);
- the embedding network trains with the SSEN loss (eqs. 1-4, ``ssen_ros.loss``) on the voxels
  of a foreground mask picked at random, as the authors' code does (96lives/ssen at ec4006e): predicted ∪
  ground-truth foreground, ground-truth foreground only, or predicted foreground only;
- Adam (lr 1e-4), lr x0.8 every 10k steps, gradient norm clipped at 0.5 (the paper's recipe,
  ``config/train_paper.yaml``).
After the last step, ``head_refit`` optionally fits the semantic network's final layer again
with rare classes weighted up (``ssen_ros.head_refit``).
A NaN loss stops training with an error; the last good checkpoint stays on disk.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ssen_ros import checkpoint
from ssen_ros.classes import BACKGROUND_CLASSES, IGNORE_LABEL, class_ids
from ssen_ros.config import TrainConfig, to_dict
from ssen_ros.data.dataset import collate, find_scenes, load_scene, make_sample
from ssen_ros.head_refit import refit_semantic_head
from ssen_ros.loss import ssen_loss
from ssen_ros.sparse import SparseTensor, use_cpu_threads

log = logging.getLogger("ssen_ros")


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and where the last good checkpoint is."""


def _rank_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def init_distributed() -> None:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, nccl on GPU)."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def foreground_mask(semantic_gt: torch.Tensor, predicted: torch.Tensor, choice: int) -> torch.Tensor:
    """The authors' three masks: 0 predicted ∪ GT foreground, 1 GT only, 2 predicted only."""
    background = torch.tensor(class_ids(BACKGROUND_CLASSES), device=predicted.device)
    gt = (semantic_gt != IGNORE_LABEL) & ~torch.isin(semantic_gt, background)
    pred = ~torch.isin(predicted, background)
    return (gt | pred, gt, pred)[choice]


def lr_factor(config: TrainConfig, step: int) -> float:
    """The lr multiplier at ``step``: ``lr_decay`` per milestone passed (or per ``lr_decay_every``)."""
    if config.lr_milestones:
        passed = sum(step >= m for m in config.lr_milestones)
    else:
        passed = step // config.lr_decay_every
    return config.lr_decay ** passed


class Trainer:
    """Holds the networks, optimisers and data of one training run."""

    def __init__(self, config: TrainConfig, device: Optional[torch.device] = None):
        self.config = config
        self.rank, self.world = _rank_world()
        self.device = device or torch.device(
            f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":  # as the Segmenter, so validating changes nothing
            use_cpu_threads(0, "torch")
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng([config.seed, self.rank])
        self.scenes = [load_scene(p) for p in find_scenes(Path(config.data) / "train")[: config.scenes or None]]
        self.spec = checkpoint.ModelSpec(arch=config.arch, in_channels=config.in_channels,
                                         conv1_kernel=config.conv1_kernel, voxel_size=config.voxel_size,
                                         embedding_dim=config.embedding_dim)
        semantic, embedding = checkpoint.build_pair(self.spec, backend="torch")
        if config.init:
            checkpoint.load_init(config.init, self.spec, semantic, embedding)
        self.semantic, self.embedding = semantic.to(self.device), embedding.to(self.device)
        if self.world > 1:
            self.semantic = DistributedDataParallel(self.semantic)
            self.embedding = DistributedDataParallel(self.embedding)
        params = list(self.semantic.parameters()) + list(self.embedding.parameters())
        self.optimizer = torch.optim.Adam(params, lr=config.lr)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: lr_factor(config, step))
        self.step = 0
        self.out = Path(config.out)

    # -- checkpoints -------------------------------------------------------------------
    def save(self, path: Path) -> None:
        if self.rank != 0:
            return
        checkpoint.save(path, self.spec, self.semantic, self.embedding,
                        meta={"step": self.step, "train_config": to_dict(self.config),
                              "optimizer": self.optimizer.state_dict(),
                              "numpy_rng": self.rng.bit_generator.state,
                              "torch_rng": torch.get_rng_state()})

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint of this run's networks (``last.pt``, ``final.pt`` or an export);
        any other file raises ``WeightsError`` in one line."""
        try:
            blob = torch.load(path, map_location="cpu", weights_only=False)
            held = checkpoint.ModelSpec(**blob["model"])
        except Exception as exc:  # torch and pickle raise many types for a file that is not ours
            raise checkpoint.WeightsError(f"cannot resume from {path}: not a checkpoint that `ssen train` "
                                          f"wrote ({checkpoint.load_failure(exc)})") from None
        if held != self.spec:
            raise checkpoint.WeightsError(f"cannot resume from {path}: it holds {held}, this run trains {self.spec}")
        for net, key in ((self.semantic, "semantic"), (self.embedding, "embedding")):
            getattr(net, "module", net).load_state_dict({k: v.float() if v.is_floating_point() else v
                                                         for k, v in blob[key].items()})
        meta = blob["meta"]
        if "optimizer" in meta:
            self.optimizer.load_state_dict(meta["optimizer"])
        else:  # exported weights (ssen train --export) keep no optimizer state
            log.warning("%s holds no optimizer state: Adam starts afresh", path)
        self.step = int(meta["step"])
        # The lr follows this run's config at the resumed step (so a schedule may be extended).
        self.schedule.last_epoch = self.step
        for group, base in zip(self.optimizer.param_groups, self.schedule.base_lrs):
            group["lr"] = base * lr_factor(self.config, self.step)
        if "numpy_rng" in meta:  # checkpoints from before RNG state was saved resume with fresh draws
            self.rng.bit_generator.state = meta["numpy_rng"]
            torch.set_rng_state(meta["torch_rng"])
        else:
            log.warning("%s holds no RNG state: the resumed run draws different batches", path)
        log.info("resumed from %s at step %d (lr %.3g)", path, self.step, self.optimizer.param_groups[0]["lr"])

    # -- one step ----------------------------------------------------------------------
    def batch(self) -> dict[str, torch.Tensor]:
        cfg = self.config
        picks = self.rng.integers(0, len(self.scenes), cfg.batch_size)
        return collate([make_sample(self.scenes[i], cfg.voxel_size, self.rng, cfg.crop_size, cfg.augment,
                                    cfg.in_channels) for i in picks])

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        self.semantic.train()
        self.embedding.train()
        coords = batch["coords"].to(self.device)
        features = batch["features"].to(self.device)
        semantic_gt = batch["semantic"].to(self.device)
        instance = batch["instance"].to(self.device)
        logits = self.semantic(SparseTensor(features, coords)).features
        ce = torch.nn.functional.cross_entropy(logits, semantic_gt, ignore_index=IGNORE_LABEL)
        mask = foreground_mask(semantic_gt, logits.detach().argmax(1), int(self.rng.integers(3)))
        if int(mask.sum()) > 1:
            emb = self.embedding(SparseTensor(features[mask], coords[mask])).features
            terms = ssen_loss(emb, instance[mask], batch["batch"].to(self.device)[mask], self.config.loss)
        else:  # nothing to embed: keep DDP's collective calls matched with a zero loss
            emb = self.embedding(SparseTensor(features[:2], coords[:2])).features
            zero = emb.sum() * 0.0
            terms = (zero, zero, zero)
        loss = ce + terms[0]
        if not torch.isfinite(loss):
            last = self.out / "last.pt"
            raise TrainingError(f"loss is {loss.item()} at step {self.step} (cross-entropy {ce.item()}, "
                                f"SSEN {terms[0].item()}); " + (f"the last good checkpoint is {last}"
                                                                if last.is_file() else "no checkpoint was saved yet"))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.semantic.parameters(), self.config.grad_clip)
        torch.nn.utils.clip_grad_norm_(self.embedding.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        self.step += 1
        return {"loss": loss.item(), "ce": ce.item(), "ssen": terms[0].item(), "pull": terms[1].item(),
                "push": terms[2].item(), "lr": self.schedule.get_last_lr()[0]}


def validate(weights: Path, data: Path, limit: int = 10) -> dict[str, float]:
    """Run the whole pipeline on up to ``limit`` validation scenes and score it."""
    from ssen_ros.config import SegmenterConfig
    from ssen_ros.scoring import score_scenes
    from ssen_ros.segmenter import Segmenter

    segmenter = Segmenter(SegmenterConfig(weights=str(weights), backend="torch", device="cpu"))
    return score_scenes(segmenter, find_scenes(data)[:limit]).summary()


def plot_history(history: list[dict], path: Path) -> None:
    """Validation mIoU, AP, AP50 and AP25 against training steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [h["step"] for h in history]
    for key in ("mIoU", "AP", "AP50", "AP25"):
        ax.plot(steps, [h[key] for h in history], marker="o", label=key)
    ax.set_xlabel("training step")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("validation (whole pipeline, ScanNet rules)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(config: TrainConfig, resume: Optional[Path] = None) -> Path:
    """Train to ``config.steps``; returns the final weights path (``out/final.pt``)."""
    init_distributed()
    trainer = Trainer(config)
    out = trainer.out
    if resume is not None:
        trainer.resume(resume)
    writer = None
    if trainer.rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(config), indent=2))
        writer = SummaryWriter(str(out / "tensorboard"))
    history = _earlier_history(out / "history.json", trainer.step) if resume is not None else []
    started = time.time() - 60 * (history[-1]["minutes"] if history else 0.0)
    bar = tqdm(total=config.steps, initial=trainer.step, disable=trainer.rank != 0, desc="train")
    while trainer.step < config.steps:
        stats = trainer.train_step(trainer.batch())
        bar.update(1)
        bar.set_postfix(loss=f"{stats['loss']:.3f}", ce=f"{stats['ce']:.3f}", ssen=f"{stats['ssen']:.3f}")
        if writer is not None:
            for k, v in stats.items():
                writer.add_scalar(f"train/{k}", v, trainer.step)
        validating = bool(config.val_every) and trainer.step % config.val_every == 0
        if trainer.step % config.checkpoint_every == 0 or trainer.step == config.steps or validating:
            trainer.save(out / "last.pt")  # validation reads the weights from it
        if validating and trainer.rank == 0:
            scores = validate(out / "last.pt", Path(config.data) / "val")
            history.append({"step": trainer.step, "minutes": (time.time() - started) / 60, **scores})
            (out / "history.json").write_text(json.dumps(history, indent=2))
            plot_history(history, out / "learning_curve.png")
            for k, v in scores.items():
                writer.add_scalar(f"val/{k}", v, trainer.step)
            log.info("step %d: %s", trainer.step, scores)
    bar.close()
    if dist.is_initialized():
        check_in_sync(trainer)
    if config.head_refit.steps and trainer.rank == 0:
        refit_semantic_head(getattr(trainer.semantic, "module", trainer.semantic), trainer.scenes, config,
                            trainer.rng, trainer.device)
    trainer.save(out / "final.pt")
    if dist.is_initialized():
        dist.barrier()
    return out / "final.pt"


def _earlier_history(path: Path, step: int) -> list[dict]:
    """The validation history of a resumed run up to its checkpoint, so the curve stays whole."""
    if not path.is_file():
        return []
    return [h for h in json.loads(path.read_text()) if h["step"] <= step]


def check_in_sync(trainer: Trainer) -> None:
    """DDP keeps every process's weights identical; compare a checksum across processes."""
    params = list(trainer.semantic.parameters()) + list(trainer.embedding.parameters())
    local = torch.stack([torch.cat([p.detach().double().flatten() for p in params]).sum()])
    gathered = [torch.zeros_like(local) for _ in range(trainer.world)]
    dist.all_gather(gathered, local.to(trainer.device))
    sums = [float(g) for g in gathered]
    if max(sums) != min(sums):
        raise TrainingError(f"weights differ across processes: checksums {sums}")
    log.info("weights identical on all %d processes (checksum %.6f)", trainer.world, sums[0])
