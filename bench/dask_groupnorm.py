"""gncpu.dask on an array larger than its workers' memory: a float32
(1, 64, S, S) array generated chunk by chunk on a LocalCluster of worker
processes with a memory limit each, normalised by gncpu.dask (statistics
first, then the normalisation: x generated twice, chunk by chunk), against
the same pipeline with a copy for the normalisation (the floor: generating
x and passing each chunk through once) and Dask's own
(x - mean) / sqrt(var + eps) on the grouped array.  Each result is reduced
to its sum, so nothing is kept.

    pip install "dask[array]" distributed
    python bench/dask_groupnorm.py [--gib 4] [--workers 2] [--worker-memory 1GiB]
"""

import argparse
import time

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

import gncpu.dask


def generated(side, chunk, seed=0):
    """x, generated chunk by chunk (each chunk from its own seed: the same values every time)."""
    return da.random.default_rng(seed).standard_normal(
        (1, 64, side, side), chunks=(1, 64, chunk, chunk), dtype=np.float32) + 3.0


def dask_formula(x, groups, eps=1e-5):
    g = x.reshape(x.shape[0], groups, x.shape[1] // groups, *x.shape[2:])
    mean = g.mean(axis=(2, 3, 4), keepdims=True)
    var = g.var(axis=(2, 3, 4), keepdims=True)
    return ((g - mean) / da.sqrt(var + eps)).reshape(x.shape)


def timed(client, what, make):
    start = time.perf_counter()
    value = make()
    seconds = time.perf_counter() - start
    peak = max(w["metrics"]["memory"] for w in client.scheduler_info()["workers"].values())
    print(f"  {what:46s} {seconds:8.1f} s   (a worker at {peak / 2**20:6.0f} MiB at the end)")
    return value, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=4.0, help="size of x, GiB")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-memory", default="1GiB", help="each worker's memory limit")
    parser.add_argument("--chunk", type=int, default=1024, help="chunk side (64 channels deep)")
    args = parser.parse_args()
    side = int((args.gib * 2**30 / 4 / 64) ** 0.5) // args.chunk * args.chunk
    print(f"x: 1x64x{side}x{side} float32 = {64 * side * side * 4 / 2**30:.1f} GiB, chunks of "
          f"{64 * args.chunk ** 2 * 4 / 2**20:.0f} MiB; {args.workers} worker processes, "
          f"{args.worker_memory} each")
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      memory_limit=args.worker_memory, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        x = generated(side, args.chunk)
        _, floor = timed(client, "floor: generate, copy each chunk, sum",
                         lambda: x.map_blocks(np.copy).sum(dtype=np.float64).compute())
        stats, s1 = timed(client, "gncpu.dask.group_norm_stats", lambda: gncpu.dask.group_norm_stats(x, 32).compute())
        total, s2 = timed(client, "gncpu.dask.group_norm(stats=), sum",
                          lambda: gncpu.dask.group_norm(x, 32, stats=stats).sum(dtype=np.float64).compute())
        reference, s3 = timed(client, "Dask's (x - mean) / sqrt(var + eps), sum",
                              lambda: dask_formula(x, 32).sum(dtype=np.float64).compute())
        print(f"  gncpu.dask, both passes: {(s1 + s2) / floor:.2f}x the floor; Dask's formula: "
              f"{s3 / floor:.2f}x; sums {float(total):.4g} and {float(reference):.4g} (about 0)")


if __name__ == "__main__":
    with dask.config.set({"distributed.worker.memory.spill": False}):
        main()
