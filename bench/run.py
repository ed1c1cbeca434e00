"""gncpu's benchmark harness: GroupNorm against a copy (the floor) and the peers.

    python bench/run.py                          # the model-shape suite, float32
    python bench/run.py --threads 1,2 --json bench/results/latest.json --plot gn.png
    python bench/run.py --shape 1x320x64x64:32 --dtype float64 --isa scalar

For every shape, each implementation is timed at the same thread count (warm-up,
seeded data, median of --rounds samples, a pause between implementations so
one library's spinning threads do not slow the next; the best median of
--passes passes, since a noisy neighbour on a shared machine hits one pass),
and its output is checked against the float64 oracle. Peers that are not installed
are skipped with a note: PyTorch, ONNX Runtime, OpenVINO (their factories are in
bench/peers.py).  --activation silu|relu|gelu makes gncpu fuse the activation
and every peer apply it after GroupNorm.
"""

from __future__ import annotations  # BenchConfig's "str | None" on Python 3.9

import argparse
import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import sys
import time

import numpy as np

import gncpu
from gncpu import reference
from gncpu._core import _parallel_copy

import peers  # bench/ is on sys.path when this file is run as a script
from machine import cpu_name
from busy import busy_rows
from peers import Skip

SUITE = [  # (name, shape, groups)
    ("SD U-Net 64", (1, 320, 64, 64), 32),
    ("SD U-Net 32", (2, 640, 32, 32), 32),
    ("SD U-Net 16", (2, 1280, 16, 16), 32),
    ("SD VAE 128", (1, 512, 128, 128), 32),
    ("SD VAE 256", (1, 256, 256, 256), 32),
    ("SD VAE 512", (1, 128, 512, 512), 32),
    ("FPN", (2, 256, 100, 152), 32),
    ("CNN small batch", (8, 64, 56, 56), 8),
    ("tiny", (1, 32, 8, 8), 32),
]


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """One run's settings, handed to every implementation factory and to
    bench_shape.  Frozen: the thread sweep derives one per thread count with
    dataclasses.replace instead of mutating shared state."""
    dtype: np.dtype
    activation: str | None = None  # fused by gncpu; each peer applies it after GroupNorm
    channels_last: bool = False  # x held (N, *spatial, C)
    eps: float = 1e-5
    threads: int = 1
    rounds: int = 15
    passes: int = 2
    only: frozenset | None = None  # implementations to run (copy always runs)


# ------------------------------------------------------------- expected values

def expected_output(config, x, groups, weight, bias):
    """The float64 answer for x (given NCHW), held in config's layout."""
    expected = reference.group_norm(x.astype(np.float64), groups, weight, bias, config.eps,
                                    activation=config.activation)
    return np.moveaxis(expected, 1, -1) if config.channels_last else expected


# ------------------------------------------------------------- implementations
# gncpu's own entries; the peers' factories (same signature) are in peers.py.

def aligned_empty_like(x, alignment=64):
    """An uninitialised array like x whose data starts on a cache line."""
    raw = np.empty(x.nbytes + alignment, np.uint8)
    skip = -raw.ctypes.data % alignment
    return raw[skip:skip + x.nbytes].view(x.dtype).reshape(x.shape)


def numpy_like_empty_like(x):
    """An array like x 16 bytes past a cache line: where NumPy's allocations
    (np.empty_like, anything under the output cache's 4 MiB) usually start."""
    raw = aligned_empty_like(np.empty(x.nbytes + 16, np.uint8))
    return raw[16:].view(x.dtype).reshape(x.shape)


def make_gncpu_out(config, x, groups, weight, bias):
    """out= a buffer as NumPy hands it out (16 bytes past a cache line)."""
    out = numpy_like_empty_like(x)
    return lambda: gncpu.group_norm(x, groups, weight, bias, config.eps, out=out,
                                    activation=config.activation,
                                    channels_last=config.channels_last)


def make_gncpu_out_aligned(config, x, groups, weight, bias):
    """out= a 64-byte-aligned buffer: the kindest case, for comparison."""
    out = aligned_empty_like(x)
    return lambda: gncpu.group_norm(x, groups, weight, bias, config.eps, out=out,
                                    activation=config.activation,
                                    channels_last=config.channels_last)


def make_gncpu_alloc(config, x, groups, weight, bias):
    return lambda: gncpu.group_norm(x, groups, weight, bias, config.eps,
                                    activation=config.activation,
                                    channels_last=config.channels_last)


def make_copy(config, x, groups, weight, bias):
    out = np.empty_like(x)

    def run():
        _parallel_copy(out, x)
        return None
    return run


IMPLEMENTATIONS = [  # (name, factory, is a peer), in the order they are timed and printed
    ("copy", make_copy, False),
    ("gncpu out=", make_gncpu_out, False),
    ("gncpu out=64", make_gncpu_out_aligned, False),
    ("gncpu", make_gncpu_alloc, False),
] + [(name, factory, True) for name, factory in peers.PEERS]
PEER_NAMES = {name for name, _, is_peer in IMPLEMENTATIONS if is_peer}


# ------------------------------------------------------------------ timing

def time_each(runs, rounds, min_sample_s=2e-3, settle_s=0.2):
    """Median seconds per call of each callable.  Each sample loops enough calls
    to last min_sample_s.  Implementations run one after another with a pause
    between them: every runtime's thread pool spins for a while after a call,
    and on a small machine interleaving would charge one library for another's
    spinning threads."""
    medians = {}
    for name, fn in runs.items():
        time.sleep(settle_s)
        for _ in range(3):  # warm-up: page faults, thread pools, JIT
            fn()
        start = time.perf_counter()
        fn()
        once = max(time.perf_counter() - start, 1e-7)
        loops = max(1, int(min_sample_s / once))
        samples = []
        # Calls of a quarter second or more are stable enough with fewer rounds.
        for _ in range(rounds if once < 0.25 else max(5, rounds // 3)):
            start = time.perf_counter()
            for _ in range(loops):
                fn()
            samples.append((time.perf_counter() - start) / loops)
        medians[name] = float(np.median(samples))
    return medians


def parse_shape(text):
    dims, _, groups = text.partition(":")
    shape = tuple(int(d) for d in dims.lower().split("x"))
    return (text, shape, int(groups) if groups else min(32, shape[1]))


def machine_info(threads):
    cpu = cpu_name()
    versions = {"gncpu": gncpu.__version__, "numpy": np.__version__,
                "python": platform.python_version()}
    for package in ("torch", "onnxruntime", "openvino"):
        try:  # metadata only: importing would start the peers' thread pools
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "isa": gncpu.isa(),
            "supported_isas": list(gncpu.supported_isas()), "threads": threads,
            "openmp": gncpu.openmp_enabled(), "versions": versions,
            "platform": platform.platform()}


def bench_shape(config, name, shape, groups):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32).astype(config.dtype)
    param_dtype = np.float64 if config.dtype == np.float64 else np.float32
    weight = rng.uniform(0.5, 1.5, shape[1]).astype(param_dtype)
    bias = rng.standard_normal(shape[1]).astype(param_dtype)
    expected = expected_output(config, x, groups, weight, bias)
    if config.channels_last:  # the same values, held (N, *spatial, C)
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    runs, errors, skipped = {}, {}, {}
    for impl, factory, _ in IMPLEMENTATIONS:
        if config.only and impl not in config.only and impl != "copy":
            continue
        try:
            fn = factory(config, x, groups, weight, bias)
            y = fn()
        except ImportError as exc:
            skipped[impl] = str(exc) or "not installed"
            continue
        except Skip as exc:
            skipped[impl] = str(exc)
            continue
        runs[impl] = fn
        if y is not None:
            errors[impl] = float(np.max(np.abs(np.asarray(y).astype(np.float64) - expected)))
    times = {}
    for _ in range(config.passes):  # best of several passes: a noisy neighbour hits one
        for impl, seconds in time_each(runs, config.rounds).items():
            times[impl] = min(seconds, times.get(impl, float("inf")))
    moved = 2 * x.nbytes
    rows = []
    for impl, seconds in times.items():
        rows.append({"shape": name, "dims": list(shape), "groups": groups,
                     "dtype": config.dtype.name, "threads": config.threads, "impl": impl,
                     "seconds": seconds, "gb_per_s": moved / seconds / 1e9,
                     "x_copy": seconds / times["copy"],
                     "gncpu_speedup": seconds / times["gncpu"] if "gncpu" in times else None,
                     "max_error": errors.get(impl)})
    return rows, skipped


def print_rows(rows):
    print(f"  {'implementation':14s} {'time':>11s} {'GB/s':>7s} {'x copy':>7s} "
          f"{'gncpu is':>9s} {'max error':>10s}")
    for r in rows:
        t = r["seconds"]
        shown = f"{t * 1e6:8.1f} us" if t < 1e-2 else f"{t * 1e3:8.2f} ms"
        shown_speed = r["impl"] not in ("copy", "gncpu") and r["gncpu_speedup"] is not None
        speed = f"{r['gncpu_speedup']:7.2f}x" if shown_speed else ""  # no gncpu row with --only
        err = f"{r['max_error']:.1e}" if r["max_error"] is not None else "-"
        print(f"  {r['impl']:14s} {shown:>11s} {r['gb_per_s']:7.1f} {r['x_copy']:7.2f} "
              f"{speed:>9s} {err:>10s}")


def summarize(rows):
    """Per thread count: gncpu's geometric-mean speed-up over the fastest peer."""
    summary = {}
    for threads in sorted({r["threads"] for r in rows}):
        ratios = []
        for shape in dict.fromkeys(r["shape"] for r in rows if r["threads"] == threads):
            sel = [r for r in rows if r["threads"] == threads and r["shape"] == shape]
            theirs = [r["seconds"] for r in sel if r["impl"] in PEER_NAMES]
            mine = [r["seconds"] for r in sel if r["impl"] == "gncpu"]
            if theirs and mine:
                ratios.append(min(theirs) / mine[0])
        if ratios:
            summary[threads] = {
                "geomean_speedup_over_fastest_peer": math.exp(np.mean(np.log(ratios))),
                "min_speedup_over_fastest_peer": min(ratios)}
    return summary


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    threads = max(r["threads"] for r in rows)
    sel = [r for r in rows if r["threads"] == threads]
    shapes = list(dict.fromkeys(r["shape"] for r in sel))
    impls = [i for i in dict.fromkeys(r["impl"] for r in sel) if i != "copy"]
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(shapes)), 4.5))
    width = 0.8 / max(1, len(impls))
    for k, impl in enumerate(impls):
        values = [next((r["gb_per_s"] for r in sel if r["shape"] == s and r["impl"] == impl), 0)
                  for s in shapes]
        ax.bar([i + k * width for i in range(len(shapes))], values, width, label=impl)
    for i, s in enumerate(shapes):
        floor = next(r["gb_per_s"] for r in sel if r["shape"] == s and r["impl"] == "copy")
        ax.hlines(floor, i - width / 2, i + 0.8 - width / 2, colors="black", linestyles="dashed",
                  label="copy (floor)" if i == 0 else None)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(shapes))], shapes, rotation=20)
    ax.set_ylabel("GB/s (read x + write y)")
    ax.set_title(f"GroupNorm throughput, {threads} threads, {gncpu.isa()}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", default=[],
                        help="NxCxHxW[:G] (repeatable); default: the model suite")
    parser.add_argument("--dtype", choices=["float32", "float64", "float16", "bfloat16"],
                        default="float32", help="bfloat16 needs ml_dtypes")
    parser.add_argument("--channels-last", action="store_true",
                        help="x held (N, *spatial, C); shapes are still given as NxCxHxW")
    parser.add_argument("--threads", default=str(gncpu.get_num_threads()),
                        help="thread count, or a comma list for a sweep (e.g. 1,2,4)")
    parser.add_argument("--activation", choices=list(peers.ACTIVATIONS),
                        help="fuse it in gncpu; peers run GroupNorm, then the activation "
                             "(gelu: the erf form)")
    parser.add_argument("--isa", help="gncpu kernel to use (default: the best supported)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per shape")
    parser.add_argument("--passes", type=int, default=2,
                        help="timing passes per shape; each implementation keeps its best median")
    parser.add_argument("--only", help="comma list of implementations (copy always runs)")
    parser.add_argument("--skip-large", action="store_true", help="skip shapes over 64 MiB")
    parser.add_argument("--busy", action="store_true",
                        help="instead of the peers: gncpu beside a second process running "
                             "--threads-thread GroupNorm calls, against the quiet 1-thread time")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--plot", help="write a PNG plot to this file (needs matplotlib)")
    args = parser.parse_args(argv)

    if args.isa:
        gncpu.set_isa(args.isa)
    thread_counts = [int(t) for t in args.threads.split(",")]
    shapes = [parse_shape(s) for s in args.shape] or SUITE
    if args.dtype == "bfloat16":
        import ml_dtypes
        dtype = np.dtype(ml_dtypes.bfloat16)
    else:
        dtype = np.dtype(args.dtype)
    base = BenchConfig(dtype=dtype, activation=args.activation,
                       channels_last=args.channels_last, rounds=args.rounds,
                       passes=args.passes,
                       only=frozenset(args.only.split(",")) if args.only else None)
    info = machine_info(thread_counts)
    print(f"gncpu benchmark: {info['cpu']} ({info['cores']} CPUs), ISA {info['isa']}, "
          f"threads {args.threads}, {dtype.name}"
          f"{', GroupNorm + ' + base.activation if base.activation else ''}"
          f"{', channels-last' if base.channels_last else ''}, "
          f"OpenMP {'on' if info['openmp'] else 'off'}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))

    if args.busy:
        print(f"\nbeside a second process running {max(thread_counts)}-thread calls "
              "(mean over >= 1 s; target <= 1.3x the quiet 1-thread mean):")
        busy = busy_rows(shapes, dtype, max(thread_counts), base.channels_last)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": info, "dtype": dtype.name, "busy": busy}, f, indent=1)
            print(f"results written to {args.json}")
        return

    rows, notes = [], {}
    for threads in thread_counts:
        gncpu.set_num_threads(threads)
        config = dataclasses.replace(base, threads=threads)
        for name, shape, groups in shapes:
            if args.skip_large and math.prod(shape) * dtype.itemsize > 64 << 20:
                continue
            print(f"\n{name}: {'x'.join(map(str, shape))}, G={groups}, {threads} threads")
            shape_rows, skipped = bench_shape(config, name, shape, groups)
            notes.update(skipped)
            print_rows(shape_rows)
            rows += shape_rows
    for impl, why in notes.items():
        print(f"note: {impl} skipped ({why})")
    summary = summarize(rows)
    for threads, s in summary.items():
        print(f"\n{threads} threads: gncpu vs the fastest peer per shape: geometric mean "
              f"{s['geomean_speedup_over_fastest_peer']:.2f}x, "
              f"worst {s['min_speedup_over_fastest_peer']:.2f}x")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"machine": info, "dtype": dtype.name, "activation": base.activation,
                       "channels_last": base.channels_last,
                       "rows": rows,
                       "summary": {str(k): v for k, v in summary.items()},
                       "skipped": notes}, f, indent=1)
        print(f"results written to {args.json}")
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
