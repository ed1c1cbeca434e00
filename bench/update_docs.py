"""Regenerate the benchmark tables of docs/performance.md (and README.md's
short one) from bench/run.py's and bench/backward.py's JSON.

    python bench/run.py --threads 1,2 --json bench/results/latest.json
    python bench/run.py --threads 1,2 --dtype bfloat16 --json bench/results/latest-bfloat16.json
    python bench/backward.py --threads 1,2 --json bench/results/backward.json
    python bench/update_docs.py bench/results/latest.json [bench/results/latest-*.json ...]

The first file (float32, NCHW, no activation) fills the main table of
docs/performance.md and the short table of README.md; each further file
(another dtype, --channels-last or --activation) adds a compact table to the
inference-paths section; a --busy file fills the busy-machine table;
bench/backward.py's files fill the backward table.  Replaces the lines
between the markers (<!-- bench-...-start --> / <!-- bench-...-end -->); a
file without its markers is an error, and nothing is written then.
"""

import json
import sys
from pathlib import Path

START = "<!-- bench-table-start -->"
END = "<!-- bench-table-end -->"
VARIANTS_START = "<!-- bench-variants-start -->"
VARIANTS_END = "<!-- bench-variants-end -->"
BUSY_START = "<!-- bench-busy-start -->"
BUSY_END = "<!-- bench-busy-end -->"
BACKWARD_START = "<!-- bench-backward-start -->"
BACKWARD_END = "<!-- bench-backward-end -->"
SUMMARY_START = "<!-- bench-summary-start -->"
SUMMARY_END = "<!-- bench-summary-end -->"
ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE = ROOT / "docs" / "performance.md"
README = ROOT / "README.md"
PEERS = ["torch", "torch.compile", "onnxruntime", "openvino", "numpy"]
TITLES = {"torch": "PyTorch", "torch.compile": "torch.compile", "onnxruntime": "ONNX Runtime",
          "openvino": "OpenVINO", "numpy": "NumPy"}


def time_cell(r, tiny):
    """A row's time: µs for the tiny shape, otherwise x copy; a dash if absent."""
    if r is None:
        return "–"
    return f"{r['seconds'] * 1e6:.1f} µs" if tiny else f"{r['x_copy']:.2f}×"


def is_tiny(shape, r):
    return r is not None and r["seconds"] < 1e-4 and shape.lower().startswith("tiny")


def alignment_cell(by_impl):
    """out= into a NumPy buffer (16 bytes past a line) ÷ into a 64-byte-aligned one."""
    numpy_like, aligned = by_impl.get("gncpu out="), by_impl.get("gncpu out=64")
    if numpy_like is None or aligned is None:
        return "–"
    return f"{numpy_like['seconds'] / aligned['seconds']:.2f}"


def speedup_cell(by_impl, peers):
    """gncpu's speed-up over the fastest peer that ran."""
    peer_times = [by_impl[p]["seconds"] for p in peers if p in by_impl]
    mine = by_impl.get("gncpu")
    return f"**{min(peer_times) / mine['seconds']:.1f}×**" if peer_times and mine else "–"


def summary_sentence(summary):
    return (f"**{summary['geomean_speedup_over_fastest_peer']:.1f}×** (worst shape "
            f"{summary['min_speedup_over_fastest_peer']:.1f}×).")


def table(data, threads):
    rows = [r for r in data["rows"] if r["threads"] == threads]
    peers = [p for p in PEERS if any(r["impl"] == p for r in rows)]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    head = (["shape", "G", "gncpu `out=`", "gncpu"] + [TITLES[p] for p in peers]
            + ["gncpu vs fastest peer", "`out=` NumPy ÷ 64-B buffer", "gncpu max error",
               "PyTorch max error"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for shape in shapes:
        by_impl = {r["impl"]: r for r in rows if r["shape"] == shape}
        first = next(iter(by_impl.values()))
        dims = "×".join(map(str, first["dims"]))
        cells = [f"{shape} ({dims})", str(first["groups"])]
        for impl in ["gncpu out=", "gncpu"] + peers:
            r = by_impl.get(impl)
            cells.append(time_cell(r, is_tiny(shape, r)))
        cells.append(speedup_cell(by_impl, peers))
        cells.append(alignment_cell(by_impl))
        for impl in ("gncpu", "torch"):
            err = by_impl.get(impl, {}).get("max_error")
            cells.append(f"{err:.0e}" if err is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render(data):
    m = data["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    out = [f"Measured by `bench/run.py` on {m['cpu']} ({m['cores']} CPUs), ISA `{m['isa']}`, "
           f"{data['dtype']}; {versions}. Each figure is time ÷ the time of a multithreaded "
           "copy of the same tensor at the same thread count (the floor: read x once, write y "
           "once), except the tiny shape, given in µs per call. Lower is better."]
    for threads in sorted({r["threads"] for r in data["rows"]}):
        out += ["", f"**{threads} thread{'s' if threads > 1 else ''}**", ""] + table(data, threads)
        s = data["summary"].get(str(threads))
        if s:
            out += ["", "Geometric-mean speed-up over the fastest peer per shape: "
                        + summary_sentence(s)]
    return out


def render_summary(data):
    """README's short table: the main run at its largest thread count, gncpu
    against PyTorch and the fastest peer, with gncpu's error."""
    m = data["machine"]
    threads = max(r["threads"] for r in data["rows"])
    rows = [r for r in data["rows"] if r["threads"] == threads]
    peers = [p for p in PEERS if any(r["impl"] == p for r in rows)]
    out = [f"`bench/run.py` on {m['cpu']} ({m['cores']} CPUs), ISA `{m['isa']}`, {data['dtype']}, "
           f"{threads} thread{'s' if threads > 1 else ''}: time ÷ a multithreaded copy of the "
           "same tensor (µs for the tiny shape); lower is better.", "",
           "| shape | gncpu | PyTorch | fastest peer | gncpu vs fastest peer | gncpu max error |",
           "|---|---|---|---|---|---|"]
    for shape in dict.fromkeys(r["shape"] for r in rows):
        by_impl = {r["impl"]: r for r in rows if r["shape"] == shape}
        mine = by_impl.get("gncpu")
        tiny = is_tiny(shape, mine)
        ran = [p for p in peers if p in by_impl]
        fastest = min(ran, key=lambda p: by_impl[p]["seconds"]) if ran else None
        err = (mine or {}).get("max_error")
        cells = [f"{shape} ({'×'.join(map(str, next(iter(by_impl.values()))['dims']))})",
                 time_cell(mine, tiny), time_cell(by_impl.get("torch"), tiny),
                 f"{TITLES[fastest]} {time_cell(by_impl[fastest], tiny)}" if fastest else "–",
                 speedup_cell(by_impl, peers), f"{err:.0e}" if err is not None else "–"]
        out.append("| " + " | ".join(cells) + " |")
    s = data["summary"].get(str(threads))
    if s:
        out += ["", "Geometric-mean speed-up over the fastest peer per shape: " + summary_sentence(s)]
    return out


def variant_title(data):
    parts = []
    if data.get("channels_last"):
        parts.append("channels-last (NHWC)")
    parts.append(data["dtype"])
    if data.get("activation"):
        parts.append(f"GroupNorm + {data['activation']} fused (peers: GroupNorm, then "
                     f"{data['activation']})")
    return ", ".join(parts)


def variant_table(data):
    """One row per shape: gncpu and PyTorch in x copy, and gncpu's speed-up
    over the fastest peer, for each thread count."""
    rows = data["rows"]
    all_threads = sorted({r["threads"] for r in rows})
    peers = [p for p in PEERS if any(r["impl"] == p for r in rows)]
    head = ["shape"]
    for t in all_threads:
        head += [f"{t}T gncpu", f"{t}T PyTorch", f"{t}T vs fastest peer",
                 f"{t}T `out=` NumPy ÷ 64-B"]
    head += ["gncpu max error", "PyTorch max error"]
    lines = [f"**{variant_title(data)}**", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for shape in dict.fromkeys(r["shape"] for r in rows):
        cells = [shape]
        errors = {}
        for t in all_threads:
            by_impl = {r["impl"]: r for r in rows if r["shape"] == shape and r["threads"] == t}
            tiny = is_tiny(shape, by_impl.get("gncpu"))
            cells += [time_cell(by_impl.get(impl), tiny) for impl in ("gncpu", "torch")]
            cells.append(speedup_cell(by_impl, peers))
            cells.append(alignment_cell(by_impl))
            for impl in ("gncpu", "torch"):
                err = by_impl.get(impl, {}).get("max_error")
                if err is not None:
                    errors[impl] = max(errors.get(impl, 0.0), err)
        cells += [f"{errors[i]:.0e}" if i in errors else "–" for i in ("gncpu", "torch")]
        lines.append("| " + " | ".join(cells) + " |")
    for t in all_threads:
        s = data["summary"].get(str(t))
        if s:
            lines += ["", f"{t} thread{'s' if t > 1 else ''}: geometric-mean speed-up over "
                          "the fastest peer " + summary_sentence(s)]
    return lines


def render_variants(datasets):
    m = datasets[0]["machine"]
    out = [f"Measured by `bench/run.py` on {m['cpu']} ({m['cores']} CPUs), ISA `{m['isa']}`; "
           "time ÷ a multithreaded copy of the same bytes (µs for the tiny shape). Peers that "
           "lack a path are left out of it (a dash)."]
    for data in datasets:
        out += [""] + variant_table(data)
    return out


def render_busy(data):
    """bench/run.py --busy: gncpu beside a second process running thread teams."""
    m = data["machine"]
    rows = data["busy"]
    threads = rows[0]["threads"] if rows else "?"
    out = [f"Measured by `bench/run.py --busy --threads {threads}` on {m['cpu']} "
           f"({m['cores']} CPUs), ISA `{m['isa']}`, {data['dtype']}: the mean time of a "
           f"{threads}-thread call while a second process runs {threads}-thread GroupNorm "
           "calls on the same cores, ÷ the mean time of a 1-thread call on the quiet "
           "machine (means over at least a second each).", "",
           "| shape | G | quiet 1 thread | busy, mean | busy, worst call | busy ÷ quiet 1T |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['shape']} ({'×'.join(map(str, r['dims']))}) | {r['groups']} | "
                   f"{r['quiet_1t_s'] * 1e6:.0f} µs | {r['busy_s'] * 1e6:.0f} µs | "
                   f"{r['busy_worst_s'] * 1e3:.1f} ms | {r['busy_over_quiet_1t']:.2f}× |")
    return out


def is_backward(data):
    return any("x_floor" in r for r in data.get("rows", []))


def render_backward(datasets):
    """bench/backward.py: per file and thread count, each implementation's time
    ÷ the backward's floor, and gncpu's speed-up over PyTorch's backwards."""
    m = datasets[0]["machine"]
    out = [f"Measured by `bench/backward.py` on {m['cpu']} ({m['cores']} CPUs), ISA "
           f"`{m['isa']}`: time ÷ the floor (x and dy read once, dx written once: the faster "
           "of a multithreaded XOR of x and dy into dx and 1.5 copies of x), µs for the tiny "
           "shape; each computes dx, dweight and dbias. PyTorch: autograd of `F.group_norm` "
           "(then the activation), backward only; torch.compile: the backward graph Inductor "
           "made of the same; gncpu.torch: autograd through gncpu's operator. dx error: "
           "largest |error| ÷ largest |dx|, against the float64 oracle."]
    impls = ["gncpu out=", "gncpu", "gncpu.torch", "torch", "torch.compile"]
    titles = {"gncpu out=": "gncpu `out=`", "gncpu": "gncpu", "gncpu.torch": "gncpu.torch",
              "torch": "PyTorch", "torch.compile": "torch.compile"}
    for data in datasets:
        for threads in sorted({r["threads"] for r in data["rows"]}):
            rows = [r for r in data["rows"] if r["threads"] == threads]
            title = variant_title(data) + f", {threads} thread{'s' if threads > 1 else ''}"
            head = (["shape"] + [titles[i] for i in impls]
                    + ["gncpu vs fastest PyTorch", "gncpu dx error", "PyTorch dx error"])
            out += ["", f"**Backward, {title}**", "", "| " + " | ".join(head) + " |",
                    "|" + "---|" * len(head)]
            ratios = []
            for shape in dict.fromkeys(r["shape"] for r in rows):
                by_impl = {r["impl"]: r for r in rows if r["shape"] == shape}
                first = by_impl["gncpu"]
                tiny = is_tiny(shape, first)
                cells = [f"{shape} ({'×'.join(map(str, first['dims']))}, G={first['groups']})"]
                for impl in impls:
                    r = by_impl.get(impl)
                    cells.append("–" if r is None else f"{r['seconds'] * 1e6:.1f} µs" if tiny
                                 else f"{r['x_floor']:.2f}×")
                theirs = [by_impl[p]["seconds"] for p in ("torch", "torch.compile") if p in by_impl]
                if theirs:
                    ratios.append(min(theirs) / first["seconds"])
                cells.append(f"**{ratios[-1]:.1f}×**" if theirs else "–")
                for impl in ("gncpu", "torch"):
                    err = by_impl.get(impl, {}).get("max_rel_error")
                    cells.append(f"{err:.0e}" if err is not None else "–")
                out.append("| " + " | ".join(cells) + " |")
            if ratios:
                geomean = 2.0 ** (sum(__import__("math").log2(v) for v in ratios) / len(ratios))
                out += ["", f"Geometric-mean speed-up over the fastest PyTorch backward: "
                            f"**{geomean:.1f}×** (worst shape {min(ratios):.1f}×)."]
    return out


def replace_between(text, start, end, lines, name):
    if start not in text or end not in text:
        sys.exit(f"{name} lacks the markers {start} / {end}")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    return before + start + "\n" + "\n".join(lines) + "\n" + end + after


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    datasets = [json.loads(Path(a).read_text()) for a in argv[1:]]
    busy = [d for d in datasets if "busy" in d]
    backward = [d for d in datasets if is_backward(d)]
    datasets = [d for d in datasets if "busy" not in d and not is_backward(d)]
    name = PERFORMANCE.relative_to(ROOT).as_posix()
    text = PERFORMANCE.read_text()
    readme = README.read_text()
    if datasets:
        text = replace_between(text, START, END, render(datasets[0]), name)
        readme = replace_between(readme, SUMMARY_START, SUMMARY_END, render_summary(datasets[0]),
                                 "README.md")
    if len(datasets) > 1:
        text = replace_between(text, VARIANTS_START, VARIANTS_END, render_variants(datasets[1:]),
                               name)
    if busy:
        text = replace_between(text, BUSY_START, BUSY_END, render_busy(busy[0]), name)
    if backward:
        text = replace_between(text, BACKWARD_START, BACKWARD_END, render_backward(backward), name)
    PERFORMANCE.write_text(text)
    README.write_text(readme)
    print(f"{name} tables updated from {', '.join(argv[1:])}"
          + (" (and README.md's short table)" if datasets else ""))


if __name__ == "__main__":
    main(sys.argv)
