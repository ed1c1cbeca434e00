"""python -m gncpu: what this build runs here, a self-check, and its speed."""

import argparse
import os
import platform
import sys

import numpy as np

import gncpu
from gncpu import reference
from gncpu._measure import (contention_signs, copy_floor, format_seconds, median_seconds,
                            plural, thread_count, timings, verdict)

__all__ = ["benchmark", "contention_signs", "main", "self_check"]

SELF_CHECK_CASES = [  # (shape, groups, input mean, input std)
    ((2, 64, 17, 9), 32, 0.0, 1.0),
    ((1, 320, 16, 16), 32, 1e4, 1.0),
    ((3, 12, 1), 3, -50.0, 1e-2),
    ((2, 16, 2500), 1, 0.0, 1.0),
]


def self_check():
    """Every supported ISA against the float64 oracle; returns True if all pass."""
    rng = np.random.default_rng(0)
    active = gncpu.isa()
    ok = True
    try:
        for name in gncpu.supported_isas():
            gncpu.set_isa(name)
            worst = 0.0
            for shape, groups, mean, std in SELF_CHECK_CASES:
                x = (mean + std * rng.standard_normal(shape)).astype(np.float32)
                weight = rng.uniform(0.5, 1.5, shape[1]).astype(np.float32)
                bias = rng.standard_normal(shape[1]).astype(np.float32)
                y = gncpu.group_norm(x, groups, weight, bias)
                expected = reference.group_norm(x, groups, weight, bias)
                worst = max(worst, float(np.max(np.abs(y - expected))))
            passed = worst <= 1e-5
            ok &= passed
            print(f"  {name:8s} max abs error {worst:.1e}  {'ok' if passed else 'FAIL'}")
    finally:
        gncpu.set_isa(active)
    return ok


def throughput_rows(rows, moved, floor_s, show_ratio):
    """The table's lines: name, time, GB/s and (when the timings mean
    something) time over the floor's."""
    lines = []
    for name, seconds in rows:
        ratio = f"  {seconds / floor_s:5.2f}x floor" if show_ratio else ""
        lines.append(f"  {name:31s} {format_seconds(seconds)} {moved / seconds / 1e9:7.1f} GB/s"
                     f"{ratio}")
    return lines


def benchmark(shape=(1, 320, 64, 64), groups=32, repeats=30):
    """GroupNorm against its floor on a U-Net-sized tensor; returns the
    reasons the machine looked too busy to measure (empty if none)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    y = np.empty_like(x)
    team = gncpu.get_num_threads()
    floor = copy_floor(x, team, lambda fn: median_seconds(fn, repeats))
    gn_times = timings(lambda: gncpu.group_norm(x, groups, out=y), repeats)
    gn_s = float(np.median(gn_times))
    alloc_s = median_seconds(lambda: gncpu.group_norm(x, groups), repeats)
    solo_s = None
    if team > 1:
        with thread_count(1):
            solo_s = median_seconds(lambda: gncpu.group_norm(x, groups, out=y), repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    signs = contention_signs(team, gn_s, solo_s, float(np.percentile(gn_times, 90) / gn_s),
                             load, gncpu.default_num_threads(), vs_floor=gn_s / floor.seconds,
                             floor=floor)

    moved = 2 * x.nbytes  # read x once, write y once
    label = "x".join(map(str, shape))
    print(f"Throughput on {label} float32 (x {x.nbytes / 1e6:.1f} MB read, y as much "
          f"written), G={groups}, ISA {gncpu.isa()}, {plural(team, 'thread')}:")
    print(f"  (time: median of {repeats} calls; GB/s: bytes read + written per second; "
          "x floor: time / the floor's, lower is better, 1.00 = the floor)")
    rows = []  # both copies when the team has several threads, the faster marked
    for threads, seconds in ((team, floor.team_seconds), (1, floor.solo_seconds)):
        if seconds is not None:
            mark = " (floor)" if threads == floor.threads else ""
            rows.append((f"copy{mark}, {plural(threads, 'thread')}", seconds))
    rows.append(("group_norm(x, out=y)", gn_s))
    rows.append(("group_norm(x), allocating y", alloc_s))
    if solo_s is not None:
        rows.append(("group_norm(x, out=y), 1 thread", solo_s))
    for line in throughput_rows(rows, moved, floor.seconds, show_ratio=not signs):
        print(line)
    print(verdict(signs))
    return signs


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gncpu", description=__doc__)
    parser.add_argument("--no-bench", action="store_true",
                        help="skip the throughput run (only the build and the self-check)")
    parser.add_argument("--repeats", type=int, default=30,
                        help="timed calls per measurement; each figure is their median "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    info = gncpu.build_info()
    print(f"gncpu {gncpu.__version__} (Python {platform.python_version()}, "
          f"NumPy {np.__version__}, {platform.machine()})")
    print(f"  active ISA:     {info['active_isa']}")
    print(f"  supported ISAs: {', '.join(info['supported_isas'])}")
    print(f"  compiled ISAs:  {', '.join(info['compiled_isas'])}")
    print(f"  threads:        {gncpu.get_num_threads()}")
    print(f"  OpenMP:         {'on' if info['openmp'] else 'off'}")
    print(f"  compiler:       {info['compiler']} {info['flags']}")
    print("Self-check against the float64 NumPy oracle:")
    ok = self_check()
    if not args.no_bench:
        benchmark(repeats=args.repeats)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
