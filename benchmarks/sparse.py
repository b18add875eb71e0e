"""``python -m benchmarks sparse``: the sparse backends on a ~110k-voxel room at 2 cm (issue 4 goals).

Res16UNet34C eval forward, one training step (forward + backward) and one 64->64 submanifold
3x3x3 layer, for each backend of ``ssen_ros.sparse`` that imports here: torch, MinkowskiEngine
and spconv 2.3.8 (a peer for comparison, not a dependency), all running the one network of
``ssen_ros.models``. Kernel maps are rebuilt on every forward, as in use. Each (backend, task) runs in its own subprocess with the same thread count, so
peak RSS numbers do not mix; times are medians. Ratios come from the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from typing import Callable

from benchmarks import REPO, peak_rss_mb, write_results
from ssen_ros.models import build_network
from ssen_ros.sparse import ENGINES, KernelMaps, SparseTensor, backend_available, get_backend, use_cpu_threads

TASKS = ("forward", "train", "layer")
INSTALL = {"torch": "pip install .", "minkowski": "bash scripts/build_minkowski.sh",
           "spconv": "pip install .[spconv]"}


def synthetic_room(seed: int = 0, voxel: float = 0.02) -> np.ndarray:
    """(N, 3) int32 unique voxels of a scanned room: floor, two walls, six boxes, a sphere.

    About 115k voxels at 2 cm, sorted (as ``np.unique`` returns them).
    """
    rng = np.random.default_rng(seed)

    def n(metres: float) -> int:
        return int(round(metres / voxel))

    def grid(a, b, c) -> np.ndarray:
        return np.stack(np.meshgrid(a, b, c, indexing="ij"), -1).reshape(-1, 3)

    w, d, h = n(4.0), n(3.4), n(2.4)
    parts = [grid(np.arange(w), np.arange(d), [0]), grid(np.arange(w), [d - 1], np.arange(h)),
             grid([0], np.arange(d), np.arange(h))]
    for _ in range(6):
        sx, sy, sz = n(rng.uniform(0.4, 1.0)), n(rng.uniform(0.4, 0.8)), n(rng.uniform(0.4, 0.9))
        x0, y0 = int(rng.integers(5, w - sx - 5)), int(rng.integers(5, d - sy - 5))
        xs, ys, zs = np.arange(x0, x0 + sx + 1), np.arange(y0, y0 + sy + 1), np.arange(1, sz + 1)
        parts += [grid(xs, ys, [sz]), grid([x0, x0 + sx], ys, zs), grid(xs, [y0, y0 + sy], zs)]
    theta, phi = np.meshgrid(np.linspace(0, np.pi, 200), np.linspace(0, 2 * np.pi, 400))
    sphere = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    parts.append((np.array([w * 0.6, d * 0.3, n(0.5)]) + n(0.3) * sphere.reshape(-1, 3)).astype(np.int64))
    return np.unique(np.concatenate(parts).astype(np.int32), axis=0)


def _scene() -> tuple[torch.Tensor, torch.Tensor]:
    xyz = synthetic_room()
    coords = torch.from_numpy(np.concatenate([np.zeros((len(xyz), 1), np.int32), xyz], 1))
    feats = torch.from_numpy(np.random.default_rng(1).uniform(-0.5, 0.5, (len(xyz), 3)).astype(np.float32))
    return coords, feats


def _setup(backend: str, task: str) -> dict[str, Callable[[], object]]:
    """The timed calls of one (backend, task), by measurement name, ready to run here."""
    coords, feats = _scene()
    ops = get_backend(backend)
    use_cpu_threads(0, backend)  # OMP_NUM_THREADS threads, as the Segmenter runs each backend

    def make(f):
        x = SparseTensor(f, coords)
        return ops.to_native(x) if task == "layer" else x

    if task == "layer":
        f64 = torch.randn(len(coords), 64, generator=torch.Generator().manual_seed(0))
        layer = ops.conv(64, 64, 3)
        cached = make(f64)
        calls = {"fresh": lambda: layer(make(f64)).features, "cached": lambda: layer(cached).features}
        if backend == "torch":
            calls["map"] = lambda: SparseTensor(f64, coords).maps.submanifold(1, 3)
        return {name: torch.no_grad()(fn) for name, fn in calls.items()}
    net = build_network("Res16UNet34C", 3, 20, backend=backend)
    if task == "forward":
        net.eval()
        return {"forward": torch.no_grad()(lambda: net(make(feats)).features)}
    net.train()
    labels = torch.randint(0, 20, (len(coords),), generator=torch.Generator().manual_seed(0))

    def step():
        net.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(make(feats)).features, labels).backward()

    return {"train": step}


def _serve(backend: str, task: str) -> None:
    """Worker loop: answer each stdin line NAME with the seconds one call of NAME takes."""
    calls = _setup(backend, task)
    for fn in calls.values():
        fn()  # warm-up: allocator, lazy imports, first-touch of workspaces
    print(json.dumps({"ready": sorted(calls)}), flush=True)
    for line in sys.stdin:
        name = line.strip()
        if name == "quit":
            break
        t0 = time.perf_counter()
        calls[name]()
        print(json.dumps({"s": time.perf_counter() - t0}), flush=True)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}), flush=True)


class _Worker:
    """A subprocess holding one (backend, task) set up, timed on request."""

    def __init__(self, backend: str, task: str, threads: int, wait_policy: str) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        env.pop("OMP_WAIT_POLICY", None)
        if wait_policy != "default":
            env["OMP_WAIT_POLICY"] = wait_policy.upper()
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.sparse", "--serve", backend, task,
                                      "--threads", str(threads)], env=env, cwd=REPO, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.names = self._read()["ready"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(self.proc.stderr.read().strip().splitlines()[-1:] or "worker died")
        return json.loads(line)

    def time(self, name: str) -> float:
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        return self._read()["s"]

    def close(self) -> float:
        """Stop the worker; its peak RSS in MiB."""
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        rss = self._read()["peak_rss_mb"]
        self.proc.wait()
        return rss


def _measure(task: str, backends: list[str], rounds: int, threads: int, wait_policy: str) -> dict:
    """Interleaved rounds over the backends (so load changes hit all alike): times and peak RSS."""
    results: dict = {}
    workers = {}
    for b in backends:
        try:
            workers[b] = _Worker(b, task, threads, wait_policy)
        except (RuntimeError, json.JSONDecodeError) as err:
            results[(b, task)] = {"error": str(err)}
    for b, w in workers.items():
        results[(b, task)] = {name: [] for name in w.names}
    for _ in range(rounds):
        for b, w in workers.items():
            for name in w.names:
                results[(b, task)][name].append(w.time(name))
    for b, w in workers.items():
        results[(b, task)]["peak_rss_mb"] = w.close()
        print(f"{b} {task}: {results[(b, task)]}", file=sys.stderr)
    return results


def _available(backend: str) -> str:
    """Empty when ``backend`` can run here, else why not."""
    ok, why = backend_available(backend)
    return "" if ok else f"{backend} does not import ({why}); {INSTALL[backend]} to compare"


def _report(results: dict, skipped: dict, rounds: int, threads: int, wait_policy: str, voxels: int,
            pairs: int, total_s: float) -> str:
    def med(backend: str, task: str, name: str) -> float | None:
        r = results.get((backend, task), {})
        return statistics.median(r[name]) if r.get(name) else None

    def cell(backend: str, task: str, name: str) -> str:
        v = med(backend, task, name)
        return "—" if v is None else f"{v:.3f}"

    def ratio(backend: str, task: str, name: str) -> str:
        a, b = med(backend, task, name), med("torch", task, name)
        return "—" if a is None or b is None else f"{a / b:.2f}"

    def rss(backend: str, task: str) -> str:
        v = results.get((backend, task), {}).get("peak_rss_mb")
        return "—" if v is None else f"{v:.0f}"

    ran = [b for b in ENGINES if b not in skipped and any(k[0] == b for k in results)]
    lines = [f"Scene: `synthetic_room()`, {voxels:,} voxels at 2 cm ({pairs:,} neighbour pairs for a 3x3x3 "
             f"kernel), batch 1, 3 input features. Model: Res16UNet34C (conv1 kernel 3, 20 outputs, "
             f"37.8M parameters). {threads} thread(s) per backend, set as the Segmenter sets them "
             f"(`ssen_ros.sparse.use_cpu_threads`: torch backend {threads} tile worker(s) with 1 intra-op "
             f"thread; MinkowskiEngine and spconv {threads} OpenMP thread(s), spconv's convolutions 1, "
             f"as its CPU scatter-add is wrong on more), OMP_WAIT_POLICY "
             f"{wait_policy}. Each backend and task "
             f"runs in its own process (so peak RSS figures do not mix), timed in {rounds} interleaved "
             f"rounds after a warm-up (so load changes hit every backend alike); medians. Kernel maps are "
             f"rebuilt in every forward. Bench wall time {total_s:.0f} s.", "",
             "| backend | eval forward s | train step (fwd+bwd) s | eval peak RSS MiB | train peak RSS MiB |",
             "|---|---|---|---|---|"]
    lines += [f"| {b} | {cell(b, 'forward', 'forward')} | {cell(b, 'train', 'train')} | {rss(b, 'forward')} | "
              f"{rss(b, 'train')} |" for b in ran]
    lines += ["", "Time of each backend / time of torch, same run (> 1: torch is faster):", "",
              "| backend | eval forward | train step | 64->64 layer, map built | 64->64 layer, map cached |",
              "|---|---|---|---|---|"]
    lines += [f"| {b} | {ratio(b, 'forward', 'forward')} | {ratio(b, 'train', 'train')} | "
              f"{ratio(b, 'layer', 'fresh')} | {ratio(b, 'layer', 'cached')} |" for b in ran if b != "torch"]
    lines += ["", "One 64->64 submanifold 3x3x3 layer, no autograd:", "",
              "| backend | with kernel map build s | with cached map s |", "|---|---|---|"]
    lines += [f"| {b} | {cell(b, 'layer', 'fresh')} | {cell(b, 'layer', 'cached')} |" for b in ran]
    if med("torch", "layer", "map") is not None:
        lines += ["", f"The torch backend's 3x3x3 kernel map alone: {cell('torch', 'layer', 'map')} s."]
    notes = [f"- {b} not measured: {why}" for b, why in skipped.items()]
    notes += [f"- {b} {t} failed: {r['error']}" for (b, t), r in results.items() if "error" in r]
    if notes:
        lines += ["", *notes]
    lines += ["", "Every timing (s):", ""]
    for (b, t), r in results.items():
        lines += [f"- {b} {t} {name}: " + ", ".join(f"{v:.3f}" for v in r[name])
                  for name in ("forward", "train", "fresh", "cached") if r.get(name)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks sparse", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds (median)")
    parser.add_argument("--train-rounds", type=int, default=3, help="rounds for the training step")
    parser.add_argument("--threads", type=int, nargs="+", default=[2], help="thread counts, one section each")
    parser.add_argument("--omp-wait-policy", nargs="+", choices=("passive", "active", "default"),
                        default=["passive"], help="OMP_WAIT_POLICY of every worker (passive: idle threads "
                        "sleep, not spin; default: libgomp spins a while), one section each")
    parser.add_argument("--backends", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--serve", nargs=2, metavar=("BACKEND", "TASK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads[0])
    if args.serve:
        _serve(*args.serve)
        return 0
    coords, _ = _scene()
    pairs = KernelMaps(coords).submanifold(1, 3).num_pairs
    skipped = {b: why for b in args.backends if (why := _available(b))}
    sections = []
    for policy in args.omp_wait_policy:
        for threads in args.threads:
            start, load = time.perf_counter(), os.getloadavg()[0]
            results: dict = {}
            for task in args.tasks:
                rounds = args.train_rounds if task == "train" else args.rounds
                results.update(_measure(task, [b for b in args.backends if b not in skipped], rounds, threads,
                                        policy))
            sections.append(f"## {threads} thread{'s' if threads > 1 else ''}, OMP_WAIT_POLICY {policy}\n\n"
                            + _report(results, skipped, args.rounds, threads, policy, len(coords), pairs,
                                      time.perf_counter() - start)
                            + f"\n\nLoad average (1 min) of the machine: {load:.2f} before this section, "
                            f"{os.getloadavg()[0]:.2f} after; on 2 cores, above 1 means other work competed.")
    body = "\n\n".join(sections)
    path = write_results("sparse", "Sparse convolution backends", body)
    print(body)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
