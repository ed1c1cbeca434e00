"""python -m gncpu: what this build runs here, a self-check, and its speed."""

import argparse
import os
import platform
import sys
import time

import numpy as np

import gncpu
from gncpu import reference
from gncpu._core import _parallel_copy

SELF_CHECK_CASES = [  # (shape, groups, input mean, input std)
    ((2, 64, 17, 9), 32, 0.0, 1.0),
    ((1, 320, 16, 16), 32, 1e4, 1.0),
    ((3, 12, 1), 3, -50.0, 1e-2),
    ((2, 16, 2500), 1, 0.0, 1.0),
]


def _timings(fn, repeats):
    """Seconds per call of each repeat, after a warm-up (page faults, thread team start)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return np.array(times)


def contention_signs(team, team_s, solo_s, spread, load, cpus):
    """Why the timings may not show gncpu's speed: other work on these cores.
    team_s/solo_s: median seconds with the thread team and with one thread;
    spread: slowest decile over the median; load: the 1-minute load average."""
    signs = []
    if team > 1 and solo_s is not None and solo_s < team_s:
        signs.append(f"1 thread ({solo_s * 1e6:.0f} us) beat the {team}-thread team "
                     f"({team_s * 1e6:.0f} us): a teammate waited for a busy core")
    if spread > 2.0:
        signs.append(f"repeats vary by {spread:.1f}x")
    if load is not None and load > cpus - 0.5:
        signs.append(f"load average {load:.1f} on {cpus} CPUs")
    return signs


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


def benchmark(shape=(1, 320, 64, 64), groups=32, repeats=30):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    y = np.empty_like(x)
    copy_s = float(np.median(_timings(lambda: _parallel_copy(y, x), repeats)))
    gn_times = _timings(lambda: gncpu.group_norm(x, groups, out=y), repeats)
    gn_s = float(np.median(gn_times))
    alloc_s = float(np.median(_timings(lambda: gncpu.group_norm(x, groups), repeats)))
    team, solo_s = gncpu.get_num_threads(), None
    if team > 1:
        gncpu.set_num_threads(1)
        try:
            solo_s = float(np.median(_timings(lambda: gncpu.group_norm(x, groups, out=y), repeats)))
        finally:
            gncpu.set_num_threads(team)
    moved = 2 * x.nbytes  # read x once, write y once
    label = "x".join(map(str, shape))
    print(f"Throughput on {label} float32, G={groups} ({team} threads, {gncpu.isa()}):")
    rows = [("copy (floor)", copy_s), ("group_norm(out=)", gn_s), ("group_norm", alloc_s)]
    if solo_s is not None:
        rows.append(("1 thread, out=", solo_s))
    for name, seconds in rows:
        print(f"  {name:18s} {seconds * 1e6:9.1f} us  {moved / seconds / 1e9:6.1f} GB/s"
              f"  {seconds / copy_s:5.2f}x copy")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    signs = contention_signs(team, gn_s, solo_s, float(np.percentile(gn_times, 90) / gn_s),
                             load, gncpu.default_num_threads())
    if signs:
        print("WARNING: these cores look busy with other work (" + "; ".join(signs) + "):")
        print("  the timings above show the machine's load, not gncpu's speed.")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gncpu", description=__doc__)
    parser.add_argument("--no-bench", action="store_true", help="skip the throughput run")
    args = parser.parse_args(argv)

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
        benchmark()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
