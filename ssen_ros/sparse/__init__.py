"""Sparse convolution for the SSEN networks (paper §III-A): tensors, kernel maps, three backends.

- ``torch``: :mod:`ssen_ros.sparse.torch_backend`, plain PyTorch, runs wherever torch does.
- ``minkowski``: :mod:`ssen_ros.sparse.minkowski_backend`, thin wrappers around
  MinkowskiEngine 0.5.4 (build it with ``scripts/build_minkowski.sh``).
- ``spconv``: :mod:`ssen_ros.sparse.spconv_backend`, spconv 2.3's kernel maps and convolution
  (``pip install .[spconv]``), a peer for the benchmarks.

All expose the same layer factories (``conv``, ``conv_tr``, ``batch_norm``, ``relu``, ``cat``,
``add_``, ``to_native``, ``from_native``) with the same parameter names, shapes and kernel-offset
order, so one ``state_dict`` loads in any of them. ``backend="auto"`` picks MinkowskiEngine when it
imports, else torch, and logs the choice.
"""
from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

from ssen_ros.config import Backend, choices
from ssen_ros.sparse.kernel_map import CoordinateError, KernelMap, KernelMaps, kernel_offsets
from ssen_ros.sparse.tensor import SparseTensor, cat, to_points

__all__ = ["SparseTensor", "KernelMaps", "KernelMap", "CoordinateError", "cat", "to_points",
           "kernel_offsets", "BACKENDS", "ENGINES", "BackendError", "backend_available", "resolve_backend",
           "get_backend", "use_cpu_threads"]

BACKENDS = choices(Backend)
ENGINES = tuple(b for b in BACKENDS if b != "auto")
"""The concrete backends, each a module ``ssen_ros.sparse.NAME_backend``."""

log = logging.getLogger(__name__)


class BackendError(ValueError):
    """A backend that cannot run here; the message names it and says why."""


def backend_available(name: str) -> tuple[bool, str]:
    """Whether backend ``name``'s engine imports here, and why not when it does not."""
    try:
        get_backend(name)
    except ImportError as err:
        return False, str(err)
    return True, ""


def resolve_backend(backend: str = "auto") -> str:
    """The concrete backend name for ``backend`` (one of ``BACKENDS``), logged."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        ok, why = backend_available("minkowski")
        backend = "minkowski" if ok else "torch"
        log.info("sparse backend: %s (auto%s)", backend, "" if ok else f"; MinkowskiEngine unavailable: {why}")
    else:
        ok, why = backend_available(backend)
        if not ok:
            raise BackendError(f"backend {backend!r} cannot run here: {why}")
        log.info("sparse backend: %s", backend)
    return backend


def get_backend(name: str) -> ModuleType:
    """The backend module for a concrete name (one of ``ENGINES``)."""
    if name not in ENGINES:
        raise ValueError(f"backend must be one of {ENGINES}, got {name!r}")
    return importlib.import_module(f"ssen_ros.sparse.{name}_backend")


def use_cpu_threads(threads: int, backend: str) -> int:
    """Run ``backend``'s networks on ``threads`` CPU threads; returns the count used.

    0 means ``OMP_NUM_THREADS`` if set, else every core this process may use. The torch backend
    gets one intra-op thread and ``threads`` tile workers (``torch_backend.set_tile_workers``);
    MinkowskiEngine and spconv get ``threads`` OpenMP threads (spconv's convolutions themselves
    run on one, see ``spconv_backend``). The settings are process-wide.
    """
    import torch

    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    if threads == 0:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else len(os.sched_getaffinity(0))
    if backend == "torch":
        torch.set_num_threads(1)
        get_backend("torch").set_tile_workers(threads)
    else:
        torch.set_num_threads(threads)
    log.info("CPU threads for the networks: %d (%s)", threads,
             "tile workers, 1 intra-op thread" if backend == "torch" else "OpenMP")
    return threads
