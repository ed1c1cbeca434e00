"""--busy: gncpu beside a second process doing multithreaded GroupNorm calls,
as two inference workers on one box do.

For each shape: the mean time of a 1-thread call on the quiet machine, then
the mean time of a --threads call while the second process runs --threads
thread calls in a loop.  Means over at least a second each, not medians: the
stalls come and go, and a user waits for every one of them.
"""

import os
import subprocess
import sys
import time

import numpy as np

import gncpu
from gncpu._measure import format_seconds, plural, progress

# The neighbour: U-Net-sized GroupNorm calls with its own thread team.
WORKER = """
import sys, numpy as np, gncpu
gncpu.set_num_threads(int(sys.argv[1]))
x = np.random.default_rng(1).standard_normal((1, 320, 64, 64), dtype=np.float32)
out = np.empty_like(x)
print("ready", flush=True)
while True:
    gncpu.group_norm(x, 32, out=out)
"""


def mean_seconds(fn, min_total_s=1.0):
    """(mean, worst) seconds per call over at least min_total_s of calls."""
    for _ in range(3):
        fn()
    calls, worst, start = 0, 0.0, time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        worst = max(worst, t1 - t0)
        calls += 1
        if t1 - start >= min_total_s:
            return (t1 - start) / calls, worst


class Neighbour:
    """The second process, running while the `with` block does."""

    def __init__(self, threads):
        self.threads = threads

    def __enter__(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.process = subprocess.Popen([sys.executable, "-c", WORKER, str(self.threads)],
                                        env=env, stdout=subprocess.PIPE, text=True)
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the busy neighbour did not start")
        time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


TARGET = 1.3  # busy mean over the quiet 1-thread mean

LEGEND = """\
  quiet 1 thread     mean time of a 1-thread call, no neighbour running
  {busy} mean time of a {n_} call beside the neighbour
  slowest busy call  the longest of those calls
  busy / quiet       the two means' ratio; lower is better, the target {target:.2f}x or less
                     (each mean over at least {seconds:g} s of calls)"""


def legend(threads, min_total_s=1.0):
    """What busy_rows' columns mean."""
    return LEGEND.format(busy=f"{'busy ' + plural(threads, 'thread'):18s}", n_=f"{threads}-thread",
                         target=TARGET, seconds=min_total_s)


def busy_rows(shapes, dtype, threads, channels_last=False, min_total_s=1.0):
    """One row per shape: quiet 1-thread mean, busy `threads`-thread mean and
    worst call, and their ratio (the issue's target: <= 1.3); printed as a
    table as they come."""
    print(f"\nbeside a second process running {threads}-thread GroupNorm calls "
          "(1x320x64x64, G=32) in a loop:")
    print(legend(threads, min_total_s))
    print(f"  {'shape':18s} {'quiet 1 thread':>16s} {'busy ' + plural(threads, 'thread'):>16s} "
          f"{'slowest busy call':>19s} {'busy / quiet':>14s}", flush=True)
    rows = []
    with progress(len(shapes), "shapes") as bar:
        for name, shape, groups in shapes:
            bar.step(name)
            rows.append(busy_row(name, shape, groups, dtype, threads, channels_last,
                                 min_total_s, bar.note))
            r = rows[-1]
            bar.write(f"  {name:18s} {format_seconds(r['quiet_1t_s']):>16s} "
                      f"{format_seconds(r['busy_s']):>16s} "
                      f"{format_seconds(r['busy_worst_s']):>19s} "
                      f"{r['busy_over_quiet_1t']:13.2f}x")
    return rows


def busy_row(name, shape, groups, dtype, threads, channels_last, min_total_s, note):
    """busy_rows' row for one shape; note(text) hears the progress."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32).astype(dtype)
    if channels_last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    out = np.empty_like(x)

    def call():
        gncpu.group_norm(x, groups, out=out, channels_last=channels_last)

    note("1 thread, quiet")
    gncpu.set_num_threads(1)
    quiet, _ = mean_seconds(call, min_total_s)
    gncpu.set_num_threads(threads)
    note("starting the neighbour")
    with Neighbour(threads):
        note(f"{plural(threads, 'thread')}, beside the neighbour")
        busy, worst = mean_seconds(call, min_total_s)
    return {"shape": name, "dims": list(shape), "groups": groups, "threads": threads,
            "quiet_1t_s": quiet, "busy_s": busy, "busy_worst_s": worst,
            "busy_over_quiet_1t": busy / quiet}
