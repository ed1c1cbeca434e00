"""End to end: diffusers' Stable Diffusion 1.5 VAE decoder and U-Net with
torch's GroupNorm, then with gncpu.torch.replace_group_norm.

    pip install ".[torch]" diffusers   # (bench only; never a test requirement)
    python bench/e2e.py --models vae,unet --dtypes float32,bfloat16 --rounds 5

The models are built from SD 1.5's configs with random weights (seeded; no
download): the VAE decodes a 1x4x64x64 latent to 1x3x512x512, the U-Net runs
one step on a 1x4x64x64 latent with a 1x77x768 text embedding.

So that nothing but the kernel is credited to it:
  * one model object serves both variants: the swap is switched on and off
    between calls (the same parameters, the same memory), and the variants'
    calls are interleaved, round after round (order alternating), so that a
    noisy machine slows both alike; we report medians and the per-round
    torch/gncpu ratio (its median, min and max);
  * each layout is compared with itself: NCHW torch vs NCHW gncpu, and
    channels-last torch vs channels-last gncpu;
  * the whole run is repeated in fresh processes under each allocator
    (--allocators): glibc's default malloc, glibc tuned so that freed large
    blocks are reused instead of returned to the OS (MALLOC_MMAP_MAX_=0,
    MALLOC_TRIM_THRESHOLD_=...), and jemalloc when it is installed.  Under the
    default one, every large tensor is fresh mmap memory, page-faulted and
    zeroed on first write; whoever writes first pays.

A run takes minutes (building the U-Net alone takes a while): each child
process reports its steps on stderr (a progress bar on a terminal, plain
lines elsewhere), and each row is printed as soon as it is measured.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from machine import cpu_name  # bench/ is on sys.path when run as a script

# Nothing of gncpu at the top: a child imports torch first, then gncpu, as a
# user's model code does (gncpu._measure's helpers are imported after them).

ALLOCATORS = {
    "glibc": {},
    "glibc-tuned": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 36),
                    "MALLOC_TOP_PAD_": str(1 << 28)},
    "jemalloc": {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
    # jemalloc gives allocations past oversize_threshold (8 MiB) an arena that
    # returns them to the OS at once; this keeps them.
    "jemalloc-tuned": {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
                       "MALLOC_CONF": "oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1"},
}

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512), sample_size=512,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)
UNET_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    norm_num_groups=32,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                      "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                    "CrossAttnUpBlock2D"),
)


def build(name):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if name == "vae":
        model = AutoencoderKL(**VAE_CONFIG).eval()
        inputs = (torch.randn(1, 4, 64, 64, generator=g),)
        return model, inputs, lambda m, z: m.decode(z).sample
    model = UNet2DConditionModel(**UNET_CONFIG).eval()
    inputs = (torch.randn(1, 4, 64, 64, generator=g), torch.tensor(500),
              torch.randn(1, 77, 768, generator=g))
    return model, inputs, lambda m, x, t, c: m(x, t, encoder_hidden_states=c).sample


class Switch:
    """gncpu.torch.replace_group_norm, switchable off and on again."""

    def __init__(self, model):
        import gncpu.torch
        from torch import nn

        self.norms = [m for m in model.modules() if type(m) is nn.GroupNorm]
        self.swapped = len(gncpu.torch.replace_group_norm(model))
        self.fused_calls = 0  # eager swaps fuse nothing (torch.compile(backend="gncpu") does)
        self.classes = (nn.GroupNorm, gncpu.torch.GroupNorm)

    def use_gncpu(self, on):
        for m in self.norms:
            m.__class__ = self.classes[on]


def groupnorm_share(model, run, inputs):
    """The fraction of one torch forward spent in aten::group_norm (profiler)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        run(model, *inputs)
        total = time.perf_counter() - start
    gn = sum(e.cpu_time_total for e in prof.key_averages() if e.key == "aten::group_norm")
    del torch
    return gn / 1e6 / total


def child(args):
    import torch

    import gncpu
    from gncpu._measure import Progress

    torch.set_num_threads(args.threads)
    gncpu.set_num_threads(args.threads)
    results = []
    models, dtypes, layouts = (args.models.split(","), args.dtypes.split(","),
                               args.layouts.split(","))
    bar = Progress(len(models) * (1 + len(dtypes) * len(layouts)), f"steps ({args.allocator})")
    for name in models:
        bar.step(f"building {name}")
        model, inputs, run = build(name)
        switch = Switch(model)
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            model.to(dtype)
            typed = tuple(t.to(dtype) if t.is_floating_point() else t for t in inputs)
            for layout in layouts:
                bar.step(f"{name}, {dtype_name}, {layout}")
                fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
                model.to(memory_format=fmt)
                laid = tuple(t.contiguous(memory_format=fmt) if t.dim() == 4 else t for t in typed)
                with torch.inference_mode():
                    outputs, times = {}, {"torch": [], "gncpu": []}
                    for variant in ("torch", "gncpu"):  # warm-up (and the outputs)
                        bar.note(f"warm-up, {variant}")
                        switch.use_gncpu(variant == "gncpu")
                        outputs[variant] = run(model, *laid).float()
                    share = None
                    if args.profile:
                        bar.note("profiling")
                        switch.use_gncpu(False)
                        share = groupnorm_share(model, run, laid)
                    for r in range(args.rounds):
                        bar.note(f"round {r + 1} of {args.rounds}")
                        order = ("torch", "gncpu") if r % 2 == 0 else ("gncpu", "torch")
                        for variant in order:
                            switch.use_gncpu(variant == "gncpu")
                            start = time.perf_counter()
                            run(model, *laid)
                            times[variant].append(time.perf_counter() - start)
                ratios = [t / g for t, g in zip(times["torch"], times["gncpu"])]
                row = dict(
                    model=name, dtype=dtype_name, layout=layout, allocator=args.allocator,
                    threads=args.threads,
                    torch_s=statistics.median(times["torch"]),
                    gncpu_s=statistics.median(times["gncpu"]),
                    ratio_median=statistics.median(ratios), ratio_min=min(ratios),
                    ratio_max=max(ratios),
                    max_abs_diff=float((outputs["torch"] - outputs["gncpu"]).abs().max()),
                    output_max=float(outputs["torch"].abs().max()),
                    groupnorm_share=share, swapped=switch.swapped, fused=switch.fused_calls,
                    times=times,
                )
                print(json.dumps(row), flush=True)
                results.append(row)
                switch.use_gncpu(False)
                model.to(memory_format=torch.contiguous_format)
        del model
    bar.close()
    return results


def probe(args):
    """One GroupNorm on a fresh 128 MiB output, as the VAE's last norms are:
    what the allocator makes it cost."""
    import torch
    import torch.nn.functional as F

    import gncpu
    import gncpu.torch

    torch.set_num_threads(args.threads)
    gncpu.set_num_threads(args.threads)
    x = torch.randn(1, 128, 512, 512)
    calls = {"gncpu": lambda: gncpu.torch.group_norm(x, 32),
             "torch": lambda: F.group_norm(x, 32),
             "empty+fill": lambda: torch.empty_like(x).fill_(1.0)}
    times = {name: [] for name in calls}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    row = {"allocator": args.allocator, "probe": True, "rounds": args.rounds}
    # The first call of each pays for warming up; a single round has only it.
    row.update({name: statistics.median(t[1:] or t) for name, t in times.items()})
    print(json.dumps(row), flush=True)


PROBE_LEGEND = """\
One GroupNorm on a 1x128x512x512 float32 tensor, its 128 MiB output fresh
each call (as the VAE's last norms are), under each allocator; the median of
{calls} (the first, a warm-up, left out), {threads}:
  gncpu       gncpu.torch.group_norm(x, 32)
  torch       torch.nn.functional.group_norm(x, 32)
  empty+fill  torch.empty_like(x).fill_(1.0): what the allocator and the first
              write cost alone, without any GroupNorm"""


def probe_line(row):
    """'  glibc-tuned   gncpu   41.2 ms   torch   52.0 ms   empty+fill   30.1 ms'."""
    cells = "".join(f"   {name} {row[name] * 1e3:7.1f} ms"
                    for name in ("gncpu", "torch", "empty+fill"))
    return f"  {row['allocator']:15s}{cells}"


ROW_LEGEND = """\
Per model, dtype and layout: the median time of one call with torch's
GroupNorm and with gncpu's (the same model object, calls interleaved), and
torch's time / gncpu's per round, its median (min to max): above 1.00x the
model runs faster with gncpu."""


def row_line(r):
    """A measured row, readable: '  vae float32 contiguous (glibc): torch 812 ms, ...'."""
    share = ("" if r["groupnorm_share"] is None
             else f"; GroupNorm {100 * r['groupnorm_share']:.1f}% of torch's time")
    return (f"  {r['model']} {r['dtype']} {r['layout']} ({r['allocator']}): "
            f"torch {r['torch_s'] * 1e3:.0f} ms, gncpu {r['gncpu_s'] * 1e3:.0f} ms, "
            f"torch / gncpu {r['ratio_median']:.2f}x ({r['ratio_min']:.2f}x to "
            f"{r['ratio_max']:.2f}x); max |difference| {r['max_abs_diff']:.1e}{share}")


def header(threads):
    import diffusers
    import torch

    import gncpu

    cpu = cpu_name()
    return (f"{cpu} ({os.cpu_count()} CPUs), {threads} threads, gncpu {gncpu.__version__} "
            f"(`{gncpu.isa()}`), torch {torch.__version__}, diffusers {diffusers.__version__}, "
            f"python {platform.python_version()}")


def table(rows):
    lines = ["| model | dtype | layout | allocator | torch | gncpu | torch ÷ gncpu, median "
             "(min–max) | GroupNorm share of torch's time | max abs diff |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        share = "" if r["groupnorm_share"] is None else f"{100 * r['groupnorm_share']:.1f}%"
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['layout']} | {r['allocator']} | "
            f"{r['torch_s'] * 1e3:.0f} ms | {r['gncpu_s'] * 1e3:.0f} ms | "
            f"**{r['ratio_median']:.2f}×** ({r['ratio_min']:.2f}–{r['ratio_max']:.2f}) | "
            f"{share} | {r['max_abs_diff']:.1e} |")
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="vae,unet",
                        help="comma list of vae (SD 1.5's VAE decoder), unet (one U-Net step) "
                             "(default: %(default)s)")
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help="comma list of torch dtypes to run the models in "
                             "(default: %(default)s)")
    parser.add_argument("--layouts", default="contiguous,channels_last",
                        help="comma list of contiguous (NCHW), channels_last (NHWC) "
                             "(default: %(default)s)")
    parser.add_argument("--allocators", default="glibc,glibc-tuned,jemalloc",
                        help="comma list of " + ", ".join(ALLOCATORS) + "; each runs in a fresh "
                             "process (jemalloc ones are skipped when it is not installed; "
                             "default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed calls per variant, torch and gncpu interleaved "
                             "(default: %(default)s)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch's and gncpu's thread count (default: the CPUs, %(default)s)")
    parser.add_argument("--profile", action="store_true",
                        help="also measure GroupNorm's share of torch's time (torch profiler)")
    parser.add_argument("--probe", action="store_true",
                        help="only time one GroupNorm with a fresh 1x128x512x512 output "
                             "under each allocator (needs torch, not diffusers)")
    parser.add_argument("--json", help="write the rows (or --probe's) to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--allocator", default="glibc", help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.child:
        (probe if args.probe else child)(args)
        return
    from gncpu._measure import format_elapsed, plural  # (this process measures nothing)

    if args.probe:
        print(PROBE_LEGEND.format(calls=plural(max(1, args.rounds - 1), "call"),
                                  threads=plural(args.threads, "thread")), flush=True)
    else:
        print(ROW_LEGEND, flush=True)
    rows = []
    start = time.monotonic()
    allocators = args.allocators.split(",")
    for number, allocator in enumerate(allocators, 1):
        env = dict(os.environ, **ALLOCATORS[allocator])
        if "LD_PRELOAD" in ALLOCATORS[allocator] and not os.path.exists(env["LD_PRELOAD"]):
            print(f"skipping {allocator}: {env['LD_PRELOAD']} not found", file=sys.stderr)
            continue
        elapsed = format_elapsed(time.monotonic() - start)
        print(f"[allocator {number} of {len(allocators)}, {elapsed}] {allocator}: "
              "a fresh process", file=sys.stderr, flush=True)
        command = [sys.executable, __file__, "--child", "--allocator", allocator,
                   "--models", args.models, "--dtypes", args.dtypes, "--layouts", args.layouts,
                   "--rounds", str(args.rounds), "--threads", str(args.threads)]
        command += ["--profile"] if args.profile else []
        command += ["--probe"] if args.probe else []
        # Rows are read as the child prints them: a run takes minutes.
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as process:
            for line in process.stdout:
                if line.startswith("{"):
                    rows.append(json.loads(line))
                    print(probe_line(rows[-1]) if args.probe else row_line(rows[-1]), flush=True)
        if process.returncode:
            raise subprocess.CalledProcessError(process.returncode, command)
    print(f"done in {format_elapsed(time.monotonic() - start)}", file=sys.stderr)
    if args.probe:
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"threads": args.threads, "probe": rows}, f, indent=1)
            print(f"results written to {args.json}")
        return
    print()
    print(f"Measured by `bench/e2e.py` on {header(args.threads)}; {args.rounds} interleaved "
          "rounds, one call each, median time per variant.")
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header(args.threads), "rows": rows}, f, indent=1)
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
