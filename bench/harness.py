"""What bench/run.py and bench/backward.py share: their common options, the
machine's description, shapes and their titles, and the sweep over shapes and
thread counts."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform

import numpy as np

import gncpu
from gncpu._measure import Floor, format_seconds, plural, progress

from machine import cpu_name


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


def shape_title(name, shape, groups, threads):
    """'SD U-Net 64: 1x320x64x64, G=32, 2 threads' ('1x32x8x8, G=32, ...' for --shape's)."""
    dims = "x".join(map(str, shape))
    head = dims if name.partition(":")[0].lower() == dims else f"{name}: {dims}"
    return f"{head}, G={groups}, {plural(threads, 'thread')}"


def sweep(thread_counts, shapes, dtype, skip_large, bench_one, format_rows, display_name):
    """Every shape at every thread count, with a progress line and each shape's
    table as it comes; bench_one(threads, name, shape, groups, note) returns
    (rows, {implementation: why skipped}).  Returns all the rows and the
    skipped implementations with why."""
    jobs = [(threads, name, shape, groups) for threads in thread_counts
            for name, shape, groups in shapes
            if not (skip_large and math.prod(shape) * dtype.itemsize > 64 << 20)]
    rows, notes = [], {}
    with progress(len(jobs), "shapes") as bar:
        for threads, name, shape, groups in jobs:
            gncpu.set_num_threads(threads)
            try:  # the peers' threads too
                import torch
                torch.set_num_threads(threads)
            except ImportError:
                pass
            bar.step(f"{name}, {plural(threads, 'thread')}")
            shape_rows, skipped = bench_one(threads, name, shape, groups, bar.note)
            notes.update(skipped)
            bar.write("\n" + shape_title(name, shape, groups, threads) + "\n"
                      + format_rows(shape_rows))
            rows += shape_rows
    for impl, why in notes.items():
        print(f"note: {display_name(impl)} skipped ({why})")
    return rows, notes


def add_common_arguments(parser, held="x", rounds=15):
    """The options bench/run.py and bench/backward.py share: the problems, the
    threads, the timing and the output.  held: what the layout option holds."""
    parser.add_argument("--shape", action="append", default=[],
                        help="NxCxHxW[:G] (repeatable; G defaults to min(32, C)); "
                             "default: bench/run.py's model suite")
    parser.add_argument("--dtype", choices=["float32", "float64", "float16", "bfloat16"],
                        default="float32",
                        help=f"{held}'s dtype (default: %(default)s; bfloat16 needs ml_dtypes)")
    parser.add_argument("--channels-last", action="store_true",
                        help=f"{held} held (N, *spatial, C); shapes are still given as NxCxHxW")
    parser.add_argument("--threads", default=str(gncpu.get_num_threads()),
                        help="thread count, or a comma list for a sweep, e.g. 1,2,4 "
                             "(default: gncpu's, %(default)s)")
    parser.add_argument("--rounds", type=int, default=rounds,
                        help="timed rounds per implementation and pass; each figure is "
                             "their median (default: %(default)s)")
    parser.add_argument("--passes", type=int, default=2,
                        help="timing passes per shape; each implementation keeps its best "
                             "median (default: %(default)s)")
    parser.add_argument("--skip-large", action="store_true", help="skip shapes over 64 MiB")
    parser.add_argument("--json", help="write the results to this file")


def numpy_dtype(name):
    """The NumPy dtype called name; bfloat16 is ml_dtypes'."""
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def floor_note(name, threads, team_s, solo_s, is_floor=False):
    """A note when the 1-thread floor `name` beat the `threads`-thread one, else None."""
    if threads <= 1 or solo_s is None or not Floor(threads, team_s, solo_s).team_waited:
        return None
    return (f"  note: the 1-thread {name} ({format_seconds(solo_s).strip()}) beat the "
            f"{threads}-thread one ({format_seconds(team_s).strip()})"
            f"{' and is the floor' if is_floor else ''}: other work may be running on these cores")
