"""The backward pass against its floor and PyTorch's.

    python bench/backward.py                         # the model-shape suite, float32
    python bench/backward.py --threads 1,2 --activation silu --json bench/results/backward.json
    python bench/backward.py --channels-last --shape 2x256x100x152:32

Per shape, each implementation computes (dx, dweight, dbias) from grad_y, x
and the forward's statistics, at the same thread count, timed as bench/run.py
times (median of rounds, best of passes, a pause between implementations):
  floor          the memory traffic alone: x and grad_y read once, grad_x
                 written once (a parallel byte-wise XOR with the kernels'
                 threading, or 1.5 copies of x, whichever is faster; each
                 timed with the thread count and with one thread, the faster
                 kept, as the kernels drop to one thread while a core is busy)
  gncpu          gncpu.group_norm_backward (dx allocated by it)
  gncpu out=     the same into a NumPy-like buffer (16 bytes past a cache line)
  torch          PyTorch's CPU backward: autograd of F.group_norm (then the
                 activation), backward only (the graph kept and re-run)
  torch.compile  the backward graph torch.compile (Inductor) made of the same
  gncpu.torch    autograd through gncpu's PyTorch op, backward only
dx of every implementation is checked against the float64 oracle.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys

import numpy as np

import gncpu
from gncpu import reference
from gncpu._core import _parallel_copy, _parallel_xor
from gncpu._measure import floor_destination, format_seconds, measure_floor, plural, plural_counts

from harness import (add_common_arguments, floor_note, machine_info, numpy_dtype, parse_shape,
                     sweep)
from run import SUITE, numpy_like_empty_like, time_each

ACTIVATIONS = ("silu", "relu", "gelu")


@dataclasses.dataclass(frozen=True)
class Case:
    """One shape's inputs, held in the benchmark's layout."""
    x: np.ndarray
    dy: np.ndarray
    mean: np.ndarray
    rstd: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    groups: int
    activation: str | None
    channels_last: bool


def make_case(shape, groups, dtype, activation, channels_last):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32).astype(dtype)
    dy = rng.standard_normal(shape).astype(np.float32).astype(dtype)
    pdtype = np.float64 if dtype == np.float64 else np.float32
    weight = rng.uniform(0.5, 1.5, shape[1]).astype(pdtype)
    bias = rng.standard_normal(shape[1]).astype(pdtype)
    if channels_last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        dy = np.ascontiguousarray(np.moveaxis(dy, 1, -1))
    _, mean, rstd = gncpu.group_norm(x, groups, weight, bias, return_stats=True,
                                     channels_last=channels_last)
    return Case(x, dy, mean, rstd, weight, bias, groups, activation, channels_last)


# ------------------------------------------------------------- implementations

def make_floor_xor(case):
    out = floor_destination(case.x)  # (not where a slow memcpy path would put it)
    return lambda: _parallel_xor(out, case.x, case.dy)


def make_copy(case):
    out = floor_destination(case.x)
    return lambda: _parallel_copy(out, case.x)


def make_gncpu(case):
    return lambda: gncpu.group_norm_backward(
        case.dy, case.x, case.mean, case.rstd, case.groups, case.weight, case.bias,
        activation=case.activation, channels_last=case.channels_last)[0]


def make_gncpu_out(case):
    out = numpy_like_empty_like(case.x)
    return lambda: gncpu.group_norm_backward(
        case.dy, case.x, case.mean, case.rstd, case.groups, case.weight, case.bias,
        activation=case.activation, channels_last=case.channels_last, out=out)[0]


def _torch_inputs(case):
    import torch
    if case.x.dtype not in (np.float32, np.float64):
        raise ImportError(f"not timed for {case.x.dtype}")  # (torch has no NumPy bfloat16)
    x = torch.from_numpy(case.x)
    dy = torch.from_numpy(case.dy)
    if case.channels_last:  # the NCHW view of channels-last memory, as torch holds it
        x, dy = x.movedim(-1, 1), dy.movedim(-1, 1)
    x = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    w = torch.from_numpy(case.weight).clone().requires_grad_()
    b = torch.from_numpy(case.bias).clone().requires_grad_()
    return torch, x, dy, w, b


def _activation(torch, name):
    f = torch.nn.functional
    return {None: lambda v: v, "silu": f.silu, "relu": f.relu, "gelu": f.gelu}[name]


def _backward_only(torch, case, x, dy, w, b, y):
    """Re-runs the backward of the graph that produced y (kept between calls)."""
    def run():
        dx = torch.autograd.grad(y, (x, w, b), dy, retain_graph=True)[0]
        return dx.movedim(1, -1).numpy() if case.channels_last else dx.numpy()
    return run


def make_torch(case):
    torch, x, dy, w, b = _torch_inputs(case)
    act = _activation(torch, case.activation)
    y = act(torch.nn.functional.group_norm(x, case.groups, w, b))
    return _backward_only(torch, case, x, dy, w, b, y)


def make_torch_compile(case):
    torch, x, dy, w, b = _torch_inputs(case)
    # Re-running one compiled backward needs its buffers kept (not donated).
    import torch._functorch.config
    torch._functorch.config.donated_buffer = False
    act = _activation(torch, case.activation)
    compiled = torch.compile(lambda v, w_, b_: act(torch.nn.functional.group_norm(v, case.groups, w_, b_)))
    y = compiled(x, w, b)
    return _backward_only(torch, case, x, dy, w, b, y)


def make_gncpu_torch(case):
    torch, x, dy, w, b = _torch_inputs(case)
    import gncpu.torch as gt
    y = gt.group_norm(x, case.groups, w, b, activation=case.activation)
    return _backward_only(torch, case, x, dy, w, b, y)


IMPLEMENTATIONS = [
    ("floor xor", make_floor_xor), ("copy", make_copy), ("gncpu", make_gncpu),
    ("gncpu out=", make_gncpu_out), ("torch", make_torch), ("torch.compile", make_torch_compile),
    ("gncpu.torch", make_gncpu_torch),
]
PEERS = ("torch", "torch.compile")
FLOORS = ("floor xor", "copy")  # timed by measure_floor, not with the others
DISPLAY_NAMES = {"floor xor": "xor of x, dy", "copy": "copy of x"}

LEGEND = """\
  time          median time per call over {rounds}, the best of {passes}
  x floor       time / the floor's: the faster of the xor and 1.5 copies of x,
                each on the table's thread count or on 1 thread, whichever is
                faster; lower is better, 1.00 = the floor
  gncpu faster  the row's time / gncpu's: 2.00x = gncpu takes half the time
  dx error      largest |dx - the float64 oracle's| / largest |dx|
  xor of x, dy  dx = x ^ dy byte-wise with gncpu's threading: x and dy read once,
                dx written once, no arithmetic
  copy of x     a copy of x with gncpu's threading (1.5 of them move as many bytes)
  gncpu         group_norm_backward allocating dx; gncpu out=: into a buffer
                placed as NumPy places its arrays (16 bytes past a cache line)
  torch, torch.compile, gncpu.torch
                autograd's backward of F.group_norm / the compiled graph /
                gncpu's operator, the forward graph kept and the backward re-run"""


def display_name(impl):
    return DISPLAY_NAMES.get(impl, impl)


def bench_shape(name, shape, groups, dtype, activation, channels_last, threads, rounds, passes,
                note=None):
    """One shape's rows and the skipped implementations; note(text) hears the progress."""
    case = make_case(shape, groups, dtype, activation, channels_last)
    expected = reference.group_norm_backward(case.dy, case.x, case.mean, case.rstd, groups,
                                             case.weight, case.bias, activation=activation,
                                             channels_last=channels_last)[0]
    scale = float(np.max(np.abs(expected)))
    runs, errors, skipped = {}, {}, {}
    for impl, factory in IMPLEMENTATIONS:
        if note:
            note(f"preparing {display_name(impl)}")
        try:
            fn = factory(case)
            out = fn()
        except ImportError as exc:
            skipped[impl] = str(exc) or "not installed"
            continue
        runs[impl] = fn
        if out is not None:
            errors[impl] = float(np.max(np.abs(np.asarray(out, np.float64) - expected))) / scale

    def best_of_passes(runs_now):  # a noisy neighbour hits one pass, not all
        timed = [time_each(runs_now, rounds, note=note) for _ in range(passes)]
        return {impl: min(pass_[impl] for pass_ in timed) for impl in timed[0]}

    times, floors = {}, {}
    for impl in FLOORS:
        floors[impl] = measure_floor(runs.pop(impl), threads,
                                     lambda fn, impl=impl: best_of_passes({impl: fn})[impl])
        times[impl] = floors[impl].seconds
    times.update(best_of_passes(runs))
    floor = min(times["floor xor"], 1.5 * times["copy"])
    rows = []
    for impl, seconds in times.items():
        rows.append({"shape": name, "dims": list(shape), "groups": groups, "dtype": dtype.name,
                     "activation": activation, "channels_last": channels_last,
                     "threads": threads, "impl": impl, "seconds": seconds,
                     "x_floor": seconds / floor,
                     "gncpu_speedup": seconds / times["gncpu"],
                     "max_rel_error": errors.get(impl)})
        if impl in floors:  # both timings behind it
            rows[-1].update(team_s=floors[impl].team_seconds, solo_s=floors[impl].solo_seconds,
                            floor_threads=floors[impl].threads)
    return rows, skipped


def format_rows(rows):
    """A shape's table (see LEGEND), and a note when a 1-thread floor beat the team's."""
    lines = [f"  {'implementation':14s} {'time':>10s} {'x floor':>8s} {'gncpu faster':>12s} "
             f"{'dx error':>9s}"]
    for r in rows:
        speed = f"{r['gncpu_speedup']:.2f}x" if r["impl"] not in ("gncpu",) + FLOORS else ""
        err = f"{r['max_rel_error']:.1e}" if r["max_rel_error"] is not None else "-"
        lines.append(f"  {display_name(r['impl']):14s} {format_seconds(r['seconds'])} "
                     f"{r['x_floor']:7.2f}x {speed:>12s} {err:>9s}")
    for r in rows:
        note = r["impl"] in FLOORS and floor_note(display_name(r["impl"]), r["threads"],
                                                   r.get("team_s"), r.get("solo_s"))
        if note:
            lines.append(note)
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, held="x and dy", rounds=11)
    parser.add_argument("--activation", choices=ACTIVATIONS,
                        help="the backward of GroupNorm followed by this activation")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    dtype = numpy_dtype(args.dtype)
    shapes = [parse_shape(s) for s in args.shape] or SUITE
    thread_counts = [int(t) for t in args.threads.split(",")]
    info = machine_info(thread_counts)
    print(f"gncpu backward benchmark: {info['cpu']} ({plural(info['cores'], 'CPU')}), "
          f"ISA {info['isa']}, {plural_counts(thread_counts, 'thread')}, {dtype.name}"
          f"{', + ' + args.activation if args.activation else ''}"
          f"{', channels-last' if args.channels_last else ''}")
    print(LEGEND.format(rounds=plural(args.rounds, "timed round"),
                        passes=plural(args.passes, "pass", "passes")))
    rows, notes = sweep(thread_counts, shapes, dtype, args.skip_large,
                        lambda threads, name, shape, groups, note: bench_shape(
                            name, shape, groups, dtype, args.activation, args.channels_last,
                            threads, args.rounds, args.passes, note=note),
                        format_rows, display_name)
    for threads in thread_counts:
        sel = [r for r in rows if r["threads"] == threads]
        ratios = []
        for shape in dict.fromkeys(r["shape"] for r in sel):
            theirs = [r["seconds"] for r in sel if r["shape"] == shape and r["impl"] in PEERS]
            mine = [r["seconds"] for r in sel if r["shape"] == shape and r["impl"] == "gncpu"]
            if theirs and mine:
                ratios.append(min(theirs) / mine[0])
        if ratios:
            print(f"\n{plural(threads, 'thread')}: gncpu's backward vs the fastest PyTorch "
                  "backward per shape (that backward's time / gncpu's): geometric mean "
                  f"{math.exp(np.mean(np.log(ratios))):.2f}x, worst {min(ratios):.2f}x")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"machine": info, "dtype": dtype.name, "activation": args.activation,
                       "channels_last": args.channels_last, "rows": rows, "skipped": notes},
                      f, indent=1)
        print(f"results written to {args.json}")


if __name__ == "__main__":
    sys.exit(main())
