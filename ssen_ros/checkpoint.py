"""SSEN weights files: both networks of the pipeline (paper §III) in one file, with what built them.

A file is a dict ``{"format": "ssen_ros/1", "model": {...}, "semantic": state_dict,
"embedding": state_dict, "meta": {...}}`` where ``model`` names the architecture, input
channels, first-conv kernel, voxel size and embedding size, so a file alone rebuilds the
networks. Weights may be stored in fp16 to keep shipped files small; they load as fp32.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ssen_ros.classes import NUM_CLASSES
from ssen_ros.features import INPUT_CHANNELS
from ssen_ros.models import build_network, load_checkpoint
from ssen_ros.sparse import BackendError

FORMAT = "ssen_ros/1"
FIRST_CONV = "conv0p1s1.kernel"
"""The first convolution's kernel, (kernel volume, input channels, output channels)."""
SAME_CHANNEL = {"height": "z"}
"""A channel that starts from another's weights when a file lacks it: the height above the floor
differs from z by a constant, which the next batch norm absorbs."""
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "ssen_demo.pt"


class WeightsError(ValueError):
    """A weights file is missing, unreadable or does not match; the message names the file."""


@dataclass
class ModelSpec:
    """What is needed to rebuild both networks."""

    arch: str
    in_channels: int = 3
    conv1_kernel: int = 3
    voxel_size: float = 0.02
    embedding_dim: int = 8
    num_classes: int = NUM_CLASSES


def resolve(path: str) -> Path:
    """'default' is the shipped demo weights; anything else is a path."""
    return DEFAULT_WEIGHTS if path == "default" else Path(path).expanduser()


def build_pair(spec: ModelSpec, backend: str = "auto") -> tuple[torch.nn.Module, torch.nn.Module]:
    """The semantic network (``num_classes`` outputs) and the embedding network (``embedding_dim``)."""
    kwargs = dict(in_channels=spec.in_channels, conv1_kernel=spec.conv1_kernel, backend=backend)
    return (build_network(spec.arch, out_channels=spec.num_classes, **kwargs),
            build_network(spec.arch, out_channels=spec.embedding_dim, **kwargs))


def save(path: "str | Path", spec: ModelSpec, semantic: torch.nn.Module, embedding: torch.nn.Module,
         meta: "dict[str, Any] | None" = None, half: bool = False) -> None:
    """Write both networks; ``half`` stores floating tensors as fp16."""
    def state(net: torch.nn.Module) -> dict:
        net = getattr(net, "module", net)  # unwrap DistributedDataParallel
        return {k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
                for k, v in net.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "model": asdict(spec), "semantic": state(semantic),
                "embedding": state(embedding), "meta": meta or {}}, path)


def load(path: "str | Path", backend: str = "auto", device: "str | torch.device" = "cpu"
         ) -> tuple[ModelSpec, torch.nn.Module, torch.nn.Module, dict]:
    """Rebuild both networks from a weights file, in eval mode on ``device``."""
    path = Path(path)
    blob = _read(path)
    try:
        spec = ModelSpec(**blob["model"])
        semantic, embedding = build_pair(spec, backend)
        for net, key in ((semantic, "semantic"), (embedding, "embedding")):
            load_checkpoint(net, {k: v.float() if v.is_floating_point() else v
                                  for k, v in blob[key].items()})
    except BackendError:  # the networks cannot be built here, whatever the file holds
        raise
    except (TypeError, KeyError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"weights file {path} does not match its networks: {exc}") from exc
    return spec, semantic.to(device).eval(), embedding.to(device).eval(), blob.get("meta", {})


def load_failure(exc: BaseException) -> str:
    """One line on why ``torch.load`` failed: the first line of the underlying error, without
    the pages of advice torch wraps it in."""
    cause = exc.__cause__ or exc.__context__ or exc
    return next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)


def _read(path: "str | Path") -> dict:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} {'is a folder' if path.is_dir() else 'does not exist'}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise WeightsError(f"weights file {path} cannot be read (not a file `ssen train` wrote, or "
                           f"damaged): {load_failure(exc)}") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise WeightsError(f"weights file {path} is not an {FORMAT} file (train one with `ssen train`)")
    return blob


def load_init(path: "str | Path", spec: ModelSpec, semantic: torch.nn.Module, embedding: torch.nn.Module) -> None:
    """Start both networks from another weights file of the same architecture, whose input
    channels may differ: the first convolution's are matched by name (``INPUT_CHANNELS``,
    ``SAME_CHANNEL``), and a channel the file has no weights for starts at zero."""
    blob = _read(path)
    old = ModelSpec(**blob["model"])
    if (old.arch, old.conv1_kernel, old.embedding_dim) != (spec.arch, spec.conv1_kernel, spec.embedding_dim):
        raise WeightsError(f"weights file {path} holds {old}, which cannot start {spec}")
    old_names, new_names = INPUT_CHANNELS[old.in_channels], INPUT_CHANNELS[spec.in_channels]
    for net, key in ((semantic, "semantic"), (embedding, "embedding")):
        state = {k: v.float() if v.is_floating_point() else v for k, v in blob[key].items()}
        kernel = state[FIRST_CONV]
        first = torch.zeros(kernel.shape[0], len(new_names), kernel.shape[2])
        for i, name in enumerate(new_names):
            source = name if name in old_names else SAME_CHANNEL.get(name)
            if source in old_names:
                first[:, i] = kernel[:, old_names.index(source)]
        state[FIRST_CONV] = first
        load_checkpoint(getattr(net, "module", net), state)


def export(source: "str | Path", target: "str | Path") -> Path:
    """A shippable copy of a training checkpoint: fp16 weights, no optimizer state."""
    blob = torch.load(source, map_location="cpu", weights_only=False)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise WeightsError(f"weights file {source} is not an {FORMAT} file")
    meta = {k: v for k, v in blob.get("meta", {}).items() if k not in ("optimizer", "schedule")}
    half = {key: {k: v.half() if v.is_floating_point() else v for k, v in blob[key].items()}
            for key in ("semantic", "embedding")}
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    torch.save({**blob, **half, "meta": meta}, target)
    return Path(target)
