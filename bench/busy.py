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


def busy_rows(shapes, dtype, threads, channels_last=False, min_total_s=1.0):
    """One row per shape: quiet 1-thread mean, busy `threads`-thread mean and
    worst call, and their ratio (the issue's target: <= 1.3)."""
    rows = []
    for name, shape, groups in shapes:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32).astype(dtype)
        if channels_last:
            x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        out = np.empty_like(x)

        def call():
            gncpu.group_norm(x, groups, out=out, channels_last=channels_last)

        gncpu.set_num_threads(1)
        quiet, _ = mean_seconds(call, min_total_s)
        gncpu.set_num_threads(threads)
        with Neighbour(threads):
            busy, worst = mean_seconds(call, min_total_s)
        rows.append({"shape": name, "dims": list(shape), "groups": groups, "threads": threads,
                     "quiet_1t_s": quiet, "busy_s": busy, "busy_worst_s": worst,
                     "busy_over_quiet_1t": busy / quiet})
        print(f"  {name:18s} quiet 1T {quiet * 1e6:9.1f} us   busy {threads}T mean "
              f"{busy * 1e6:9.1f} us (worst {worst * 1e3:7.2f} ms)   {busy / quiet:6.2f}x",
              flush=True)
    return rows
