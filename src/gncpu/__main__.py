"""python -m gncpu: what this build runs here, a self-check, and its speed."""

import argparse
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


def _median_seconds(fn, repeats):
    fn()  # warm-up: page faults, thread team start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


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
    copy_s = _median_seconds(lambda: _parallel_copy(y, x), repeats)
    gn_s = _median_seconds(lambda: gncpu.group_norm(x, groups, out=y), repeats)
    alloc_s = _median_seconds(lambda: gncpu.group_norm(x, groups), repeats)
    moved = 2 * x.nbytes  # read x once, write y once
    label = "x".join(map(str, shape))
    print(f"Throughput on {label} float32, G={groups} "
          f"({gncpu.get_num_threads()} threads, {gncpu.isa()}):")
    for name, seconds in [("copy (floor)", copy_s), ("group_norm(out=)", gn_s),
                          ("group_norm", alloc_s)]:
        print(f"  {name:18s} {seconds * 1e6:9.1f} us  {moved / seconds / 1e9:6.1f} GB/s"
              f"  {seconds / copy_s:5.2f}x copy")


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
