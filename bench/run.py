"""gncpu's benchmark harness: GroupNorm against a copy (the floor) and the peers.

    python bench/run.py                          # the model-shape suite, float32
    python bench/run.py --threads 1,2 --json bench/results/latest.json --plot gn.png
    python bench/run.py --shape 1x320x64x64:32 --dtype float64 --isa scalar

For every shape, each implementation is timed at the same thread count (warm-up,
seeded data, median of --rounds samples, a pause between implementations so
one library's spinning threads do not slow the next; the best median of
--passes passes, since a noisy neighbour on a shared machine hits one pass),
and its output is checked against the float64 oracle.  The floor is a copy of
the same bytes, timed with the thread count and with one thread, the faster
kept: the kernels drop to one thread while a teammate waits for a busy core,
and a copy that did not would make GroupNorm look faster than the floor (see
gncpu/_measure.py).  Peers that are not installed are skipped with a note:
PyTorch, ONNX Runtime, OpenVINO (their factories are in bench/peers.py).
--activation silu|relu|gelu makes gncpu fuse the activation and every peer
apply it after GroupNorm.
"""

from __future__ import annotations  # BenchConfig's "str | None" on Python 3.9

import argparse
import dataclasses
import json
import math
import os
import time

import numpy as np

import gncpu
from gncpu import reference
from gncpu._core import _parallel_copy
from gncpu._measure import floor_destination, format_seconds, measure_floor, plural, plural_counts

import peers  # bench/ is on sys.path when this file is run as a script
from harness import (add_common_arguments, floor_note, machine_info, numpy_dtype, parse_shape,
                     sweep)
from plots import plot
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
    out = floor_destination(x)  # (not where a slow memcpy path would put it)

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

# What the tables and the plot call them.  The JSON keeps the names above
# (the script that fills the docs' tables and the committed results use them).
DISPLAY_NAMES = {
    "copy": "copy (floor)",
    "gncpu out=": "gncpu out=numpy",
    "gncpu out=64": "gncpu out=aligned",
}
LEGEND = """\
  time          median time per call over {rounds}, the best of {passes}
  GB/s          bytes of x read + bytes of y written, per second
  x copy        time / the time of a copy of the same bytes (the floor: the
                faster of the copy on the table's thread count and on 1 thread);
                lower is better, 1.00 = the floor
  gncpu faster  the row's time / gncpu's: 2.00x = gncpu takes half the time
  max error     largest |y - the float64 NumPy oracle|
  copy (floor)       dst[...] = x with gncpu's threading (no arithmetic)
  gncpu out=numpy    group_norm(..., out=buf), buf placed as NumPy places its
                     arrays (16 bytes past a cache line)
  gncpu out=aligned  the same into a 64-byte-aligned buffer (the kindest case)
  gncpu              group_norm allocating its output, as every peer does"""


def display_name(impl):
    return DISPLAY_NAMES.get(impl, impl)


def internal_name(name):
    """An implementation's key from its key or its display name (for --only)."""
    return {v: k for k, v in DISPLAY_NAMES.items()}.get(name, name)


# ------------------------------------------------------------------ timing

def time_each(runs, rounds, min_sample_s=2e-3, settle_s=0.2, note=None):
    """Median seconds per call of each callable.  Each sample loops enough calls
    to last min_sample_s.  Implementations run one after another with a pause
    between them: every runtime's thread pool spins for a while after a call,
    and on a small machine interleaving would charge one library for another's
    spinning threads.  note(text), if given, hears which one is being timed."""
    medians = {}
    for name, fn in runs.items():
        if note:
            note(f"timing {display_name(name)}")
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


def bench_shape(config, name, shape, groups, note=None):
    """One shape's rows (one per implementation that ran) and the skipped
    implementations with the reason; note(text) hears the progress."""
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
        if note:
            note(f"preparing {display_name(impl)}")
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

    def best_of_passes(timed):  # a noisy neighbour hits one pass, not all
        return {impl: min(pass_[impl] for pass_ in timed) for impl in timed[0]}

    def time_copy(fn):  # at the thread count measure_floor set
        if note:
            note(f"timing the copy on {plural(gncpu.get_num_threads(), 'thread')}")
        return best_of_passes([time_each({"copy": fn}, config.rounds)
                               for _ in range(config.passes)])["copy"]

    floor = measure_floor(runs.pop("copy"), config.threads, time_copy)
    times = {"copy": floor.seconds}
    times.update(best_of_passes([time_each(runs, config.rounds, note=note)
                                 for _ in range(config.passes)]))
    moved = 2 * x.nbytes
    rows = []
    for impl, seconds in times.items():
        rows.append({"shape": name, "dims": list(shape), "groups": groups,
                     "dtype": config.dtype.name, "threads": config.threads, "impl": impl,
                     "seconds": seconds, "gb_per_s": moved / seconds / 1e9,
                     "x_copy": seconds / times["copy"],
                     "gncpu_speedup": seconds / times["gncpu"] if "gncpu" in times else None,
                     "max_error": errors.get(impl)})
        if impl == "copy":  # both copies behind the floor
            rows[-1].update(copy_team_s=floor.team_seconds, copy_solo_s=floor.solo_seconds,
                            floor_threads=floor.threads)
    return rows, skipped


def format_rows(rows):
    """A shape's table (see LEGEND for the columns), and a note when a
    1-thread copy beat the team's: a sign of other work on these cores."""
    lines = [f"  {'implementation':18s} {'time':>10s} {'GB/s':>7s} {'x copy':>7s} "
             f"{'gncpu faster':>12s} {'max error':>10s}"]
    for r in rows:
        shown_speed = r["impl"] not in ("copy", "gncpu") and r["gncpu_speedup"] is not None
        speed = f"{r['gncpu_speedup']:.2f}x" if shown_speed else ""  # no gncpu row with --only
        err = f"{r['max_error']:.1e}" if r["max_error"] is not None else "-"
        lines.append(f"  {display_name(r['impl']):18s} {format_seconds(r['seconds'])} "
                     f"{r['gb_per_s']:7.1f} {r['x_copy']:6.2f}x {speed:>12s} {err:>10s}")
    for r in rows:
        note = r["impl"] == "copy" and floor_note("copy", r["threads"], r.get("copy_team_s"),
                                                   r.get("copy_solo_s"), is_floor=True)
        if note:
            lines.append(note)
    return "\n".join(lines)


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


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--activation", choices=list(peers.ACTIVATIONS),
                        help="fuse it in gncpu; peers run GroupNorm, then the activation "
                             "(gelu: the erf form)")
    parser.add_argument("--isa", help="gncpu kernel to use (default: the best supported: "
                                      f"one of {', '.join(gncpu.supported_isas())})")
    parser.add_argument("--only",
                        help="comma list of implementations to run, by the names the "
                             "tables show (copy always runs)")
    parser.add_argument("--busy", action="store_true",
                        help="instead of the peers: gncpu beside a second process running "
                             "--threads-thread GroupNorm calls, against the quiet 1-thread time")
    parser.add_argument("--plot", help="write a PNG plot to this file, one panel per thread "
                                       "count (needs matplotlib)")
    parser.add_argument("--replot", metavar="JSON",
                        help="measure nothing: draw --plot from a results file --json wrote")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)

    if args.replot:
        if not args.plot:
            parser.error("--replot needs --plot")
        with open(args.replot) as f:
            data = json.load(f)
        plot(data["rows"], args.plot, data["machine"], data["dtype"], display_name)
        return
    if args.isa:
        gncpu.set_isa(args.isa)
    thread_counts = [int(t) for t in args.threads.split(",")]
    shapes = [parse_shape(s) for s in args.shape] or SUITE
    dtype = numpy_dtype(args.dtype)
    only = None
    if args.only:
        only = frozenset(internal_name(name.strip()) for name in args.only.split(","))
        unknown = only - {impl for impl, _, _ in IMPLEMENTATIONS}
        if unknown:
            parser.error(f"--only: no implementation {', '.join(sorted(unknown))}; "
                         "the names: " + ", ".join(display_name(i) for i, _, _ in IMPLEMENTATIONS))
    base = BenchConfig(dtype=dtype, activation=args.activation,
                       channels_last=args.channels_last, rounds=args.rounds,
                       passes=args.passes, only=only)
    info = machine_info(thread_counts)
    print(f"gncpu benchmark: {info['cpu']} ({plural(info['cores'], 'CPU')}), ISA {info['isa']}, "
          f"{plural_counts(thread_counts, 'thread')}, {dtype.name}"
          f"{', GroupNorm + ' + base.activation if base.activation else ''}"
          f"{', channels-last' if base.channels_last else ''}, "
          f"OpenMP {'on' if info['openmp'] else 'off'}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))

    if args.busy:
        busy = busy_rows(shapes, dtype, max(thread_counts), base.channels_last)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": info, "dtype": dtype.name, "busy": busy}, f, indent=1)
            print(f"results written to {args.json}")
        return

    print(LEGEND.format(rounds=plural(base.rounds, "timed round"),
                        passes=plural(base.passes, "pass", "passes")))
    rows, notes = sweep(thread_counts, shapes, dtype, args.skip_large,
                        lambda threads, name, shape, groups, note: bench_shape(
                            dataclasses.replace(base, threads=threads), name, shape, groups,
                            note=note),
                        format_rows, display_name)
    summary = summarize(rows)
    for threads, s in summary.items():
        print(f"\n{plural(threads, 'thread')}: gncpu vs the fastest peer per shape (that "
              f"peer's time / gncpu's): geometric mean "
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
        plot(rows, args.plot, info, dtype.name, display_name)


if __name__ == "__main__":
    main()
