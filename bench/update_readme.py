"""Regenerate the README's benchmark table from bench/run.py's JSON.

    python bench/run.py --json bench/results/latest.json
    python bench/update_readme.py bench/results/latest.json

Replaces the lines between the two markers in README.md.
"""

import json
import sys
from pathlib import Path

START = "<!-- bench-table-start -->"
END = "<!-- bench-table-end -->"
PEERS = ["torch", "onnxruntime", "openvino", "numpy"]
TITLES = {"torch": "PyTorch", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO",
          "numpy": "NumPy"}


def table(data, threads):
    rows = [r for r in data["rows"] if r["threads"] == threads]
    peers = [p for p in PEERS if any(r["impl"] == p for r in rows)]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    head = (["shape", "G", "gncpu `out=`", "gncpu"] + [TITLES[p] for p in peers]
            + ["gncpu vs fastest peer", "gncpu max error", "PyTorch max error"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for shape in shapes:
        by_impl = {r["impl"]: r for r in rows if r["shape"] == shape}
        first = next(iter(by_impl.values()))
        dims = "×".join(map(str, first["dims"]))
        cells = [f"{shape} ({dims})", str(first["groups"])]
        for impl in ["gncpu out=", "gncpu"] + peers:
            r = by_impl.get(impl)
            if r is None:
                cells.append("–")
            elif first["dims"] and r["seconds"] < 1e-4 and shape.lower().startswith("tiny"):
                cells.append(f"{r['seconds'] * 1e6:.1f} µs")
            else:
                cells.append(f"{r['x_copy']:.2f}×")
        peer_times = [by_impl[p]["seconds"] for p in peers if p in by_impl]
        mine = by_impl.get("gncpu")
        cells.append(f"**{min(peer_times) / mine['seconds']:.1f}×**" if peer_times and mine else "–")
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
            out += ["", f"Geometric-mean speed-up over the fastest peer per shape: "
                        f"**{s['geomean_speedup_over_fastest_peer']:.1f}×** (worst shape "
                        f"{s['min_speedup_over_fastest_peer']:.1f}×)."]
    return out


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    data = json.loads(Path(argv[1]).read_text())
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        sys.exit(f"README.md lacks the markers {START} / {END}")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    readme.write_text(before + START + "\n" + "\n".join(render(data)) + "\n" + END + after)
    print(f"README.md table updated from {argv[1]}")


if __name__ == "__main__":
    main(sys.argv)
