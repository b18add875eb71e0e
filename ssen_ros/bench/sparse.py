"""``ssen bench sparse``: the sparse backends on a ~110k-voxel room at 2 cm (issue 4 goals).

Res16UNet34C eval forward, one training step (forward + backward) and one 64->64 submanifold
3x3x3 layer, for the torch backend, MinkowskiEngine (when it imports) and spconv 2.3.8 (when
installed; a peer for comparison, not a dependency). Kernel maps are rebuilt on every forward,
as in use. Each (backend, task) runs in its own subprocess with the same thread count, so
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

from ssen_ros.bench import peak_rss_mb, write_results

BACKENDS = ("torch", "minkowski", "spconv")
TASKS = ("forward", "train", "layer")


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


def _spconv_unet(arch: str, in_channels: int, out_channels: int) -> torch.nn.Module:
    """The same Res16UNet built from spconv layers (benchmark peer only)."""
    import spconv.pytorch as sp
    import spconv.pytorch.ops as sp_ops
    from torch import nn

    from ssen_ros.models import ARCHITECTURES

    sp_ops.get_current_stream = lambda: 0  # its CPU backward asks for a CUDA stream (FACTS §5)
    a = ARCHITECTURES[arch]

    def bn(c: int) -> nn.Module:
        return nn.BatchNorm1d(c, momentum=0.02)

    def feat(x, f):
        return x.replace_feature(f)

    class Block(nn.Module):
        def __init__(self, inp: int, planes: int, stride: int) -> None:
            super().__init__()
            key = f"subm{stride}"
            self.conv1 = sp.SubMConv3d(inp, planes, 3, bias=False, indice_key=key)
            self.conv2 = sp.SubMConv3d(planes, planes, 3, bias=False, indice_key=key)
            self.norm1, self.norm2 = bn(planes), bn(planes)
            self.down = nn.Sequential(nn.Linear(inp, planes, bias=False), bn(planes)) if inp != planes else None

        def forward(self, x):
            out = self.conv1(x)
            out = self.conv2(feat(out, torch.relu(self.norm1(out.features))))
            res = x.features if self.down is None else self.down(x.features)
            return feat(out, torch.relu(self.norm2(out.features) + res))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv0 = sp.SubMConv3d(in_channels, a.init_dim, 3, bias=False, indice_key="subm1")
            self.bn0 = bn(a.init_dim)
            inp, self.downs, self.ups, self.blocks = a.init_dim, nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
            self.bns = nn.ModuleList()
            for i in range(4):
                self.downs.append(sp.SparseConv3d(inp, inp, 2, 2, bias=False, indice_key=f"down{2 ** i}"))
                self.bns.append(bn(inp))
                blocks = []
                for j in range(a.layers[i]):
                    blocks.append(Block(inp, a.planes[i], 2 ** (i + 1)))
                    inp = a.planes[i]
                self.blocks.append(nn.Sequential(*blocks))
            skips = (a.planes[2], a.planes[1], a.planes[0], a.init_dim)
            for i in range(4):
                planes = a.planes[4 + i]
                self.ups.append(sp.SparseInverseConv3d(inp, planes, 2, bias=False, indice_key=f"down{2 ** (3 - i)}"))
                self.bns.append(bn(planes))
                blocks, inp = [], planes + skips[i]
                for j in range(a.layers[4 + i]):
                    blocks.append(Block(inp, planes, 2 ** (3 - i)))
                    inp = planes
                self.blocks.append(nn.Sequential(*blocks))
            self.final = nn.Linear(inp, out_channels)

        def forward(self, x):
            out = self.conv0(x)
            out = feat(out, torch.relu(self.bn0(out.features)))
            skips = [out]
            for i in range(4):
                out = self.downs[i](out)
                out = self.blocks[i](feat(out, torch.relu(self.bns[i](out.features))))
                skips.append(out)
            skips.pop()
            for i in range(4):
                out = self.ups[i](out)
                out = feat(out, torch.relu(self.bns[4 + i](out.features)))
                skip = skips.pop()
                out = self.blocks[4 + i](feat(skip, torch.cat([out.features, skip.features], 1)))
            return self.final(out.features)

    return Net()


def _worker(backend: str, task: str, repeat: int) -> dict:
    """Run one (backend, task) here and return its numbers; called in a fresh subprocess."""
    coords, feats = _scene()
    rss_start = peak_rss_mb()
    if backend == "spconv":
        import spconv.pytorch as sp

        def make(f):
            return sp.SparseConvTensor(f, coords, spatial_shape=(coords[:, 1:].amax(0) + 1).tolist(), batch_size=1)

        def out(y):
            return y if isinstance(y, torch.Tensor) else y.features
    else:
        from ssen_ros.sparse import SparseTensor, get_backend

        ops = get_backend(backend)

        def make(f):
            x = SparseTensor(f, coords)
            return ops.to_native(x) if task == "layer" else x

        def out(y):
            return y.F if backend == "minkowski" and task == "layer" else y.features
    result: dict = {"voxels": len(coords)}
    if task == "layer":
        torch.manual_seed(0)
        f64 = torch.randn(len(coords), 64)
        if backend == "spconv":
            layer = sp.SubMConv3d(64, 64, 3, bias=False, indice_key="subm1")
        else:
            layer = ops.conv(64, 64, 3)
        with torch.no_grad():
            result["fresh_s"] = _times(lambda: out(layer(make(f64))), repeat)
            x = make(f64)
            result["cached_s"] = _times(lambda: out(layer(x)), repeat)
        if backend == "torch":
            result["pairs"] = x.maps.submanifold(1, 3).num_pairs
            result["map_s"] = _times(lambda: SparseTensor(f64, coords).maps.submanifold(1, 3), repeat)
    else:
        if backend == "spconv":
            net = _spconv_unet("Res16UNet34C", 3, 20)
        else:
            from ssen_ros.models import build_network
            net = build_network("Res16UNet34C", 3, 20, backend=backend)
        labels = torch.randint(0, 20, (len(coords),), generator=torch.Generator().manual_seed(0))
        if task == "forward":
            net.eval()
            with torch.no_grad():
                result["times_s"] = _times(lambda: out(net(make(feats))), repeat)
        else:
            net.train()

            def step():
                net.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(out(net(make(feats))), labels)
                loss.backward()

            result["times_s"] = _times(step, repeat)
    result["rss_start_mb"] = rss_start
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def _times(fn, repeat: int) -> list[float]:
    fn()  # warm-up (allocator, lazy imports)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _available(backend: str) -> str:
    """Empty when ``backend`` can run here, else why not."""
    if backend == "minkowski":
        from ssen_ros.sparse import minkowski_available
        ok, why = minkowski_available()
        return "" if ok else f"MinkowskiEngine does not import ({why})"
    if backend == "spconv":
        try:
            import spconv.pytorch  # noqa: F401
        except ImportError as err:
            return f"spconv is not installed ({err}); pip install spconv==2.3.8 to compare"
    return ""


def _run(backend: str, task: str, repeat: int, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "ssen_ros.bench.sparse", "--worker", backend, task,
           "--repeat", str(repeat), "--threads", str(threads)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _med(r: dict, key: str) -> float:
    return statistics.median(r[key])


def _report(results: dict, skipped: dict, repeat: int, threads: int, total_s: float) -> str:
    def cell(backend: str, task: str, key: str = "times_s") -> str:
        r = results.get((backend, task))
        if r is None:
            return "—"
        if "error" in r:
            return "error"
        return f"{_med(r, key):.3f}"

    def ratio(task: str, num: str, den: str, key: str = "times_s") -> str:
        a, b = results.get((num, task)), results.get((den, task))
        if not a or not b or "error" in a or "error" in b:
            return "—"
        return f"{_med(a, key) / _med(b, key):.2f}"

    voxels = next(r["voxels"] for r in results.values() if "voxels" in r)
    lines = [f"Scene: `synthetic_room()`, {voxels:,} voxels at 2 cm, batch 1, 3 input features. "
             f"Model: Res16UNet34C (conv1 kernel 3, 20 outputs). {threads} threads per backend "
             f"(torch and OpenMP), each backend and task in its own process; median of {repeat} "
             f"runs after one warm-up; kernel maps rebuilt on every forward. Bench wall time {total_s:.0f} s.",
             "", "| backend | eval forward s | train step (fwd+bwd) s | eval peak RSS MiB | train peak RSS MiB |",
             "|---|---|---|---|---|"]
    for b in BACKENDS:
        if b in skipped:
            continue
        f, t = results.get((b, "forward"), {}), results.get((b, "train"), {})
        lines.append(f"| {b} | {cell(b, 'forward')} | {cell(b, 'train')} | "
                     f"{f.get('peak_rss_mb', float('nan')):.0f} | {t.get('peak_rss_mb', float('nan')):.0f} |")
    lines += ["", "Ratios in this run (time of the other backend / time of torch; > 1 means torch is faster):", "",
              "| compared with torch | eval forward | train step | 64->64 layer, map built | 64->64 layer, map cached |",
              "|---|---|---|---|---|"]
    for b in ("minkowski", "spconv"):
        if b not in skipped:
            lines.append(f"| {b} | {ratio('forward', b, 'torch')} | {ratio('train', b, 'torch')} | "
                         f"{ratio('layer', b, 'torch', 'fresh_s')} | {ratio('layer', b, 'torch', 'cached_s')} |")
    lines += ["", "One 64->64 submanifold 3x3x3 layer (no grad):", "",
              "| backend | with kernel map build s | with cached map s |", "|---|---|---|"]
    for b in BACKENDS:
        if b not in skipped:
            lines.append(f"| {b} | {cell(b, 'layer', 'fresh_s')} | {cell(b, 'layer', 'cached_s')} |")
    layer = results.get(("torch", "layer"), {})
    if "pairs" in layer:
        lines += ["", f"torch kernel map alone: {_med(layer, 'map_s'):.3f} s for {layer['pairs']:,} "
                      f"neighbour pairs (centre included)."]
    errors = [f"- {b} {t}: {r['error']}" for (b, t), r in results.items() if "error" in r]
    notes = [f"- {b} not measured: {why}" for b, why in skipped.items()]
    if errors or notes:
        lines += ["", *notes, *errors]
    lines += ["", "All times per backend (s):", ""]
    for (b, t), r in results.items():
        for key in ("times_s", "fresh_s", "cached_s"):
            if key in r:
                lines.append(f"- {b} {t} {key[:-2]}: " + ", ".join(f"{v:.3f}" for v in r[key]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssen bench sparse", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--train-repeat", type=int, default=3, help="timed training steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "TASK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(_worker(*args.worker, args.repeat)))
        return 0
    start = time.perf_counter()
    skipped = {b: why for b in args.backends if (why := _available(b))}
    results = {}
    for task in args.tasks:
        for b in args.backends:
            if b not in skipped:
                results[(b, task)] = _run(b, task, args.train_repeat if task == "train" else args.repeat,
                                          args.threads)
                print(f"{b} {task}: {results[(b, task)]}", file=sys.stderr)
    body = _report(results, skipped, args.repeat, args.threads, time.perf_counter() - start)
    path = write_results("sparse", "Sparse convolution backends", body)
    print(body)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
