"""bench/run.py's plot: throughput per shape and implementation, one panel per
thread count, the floor dashed (needs matplotlib)."""

import sys

from gncpu._measure import plural

from harness import machine_info


def plot(rows, path, machine=None, dtype="float32", label=str):
    """Writes plot_figure's figure to path (a PNG); a note if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    fig = plot_figure(rows, machine or machine_info(sorted({r["threads"] for r in rows})), dtype,
                      label)
    fig.savefig(path, dpi=120, bbox_inches="tight")  # (the legend outside the panels kept)
    plt.close(fig)
    print(f"plot written to {path}")


def plot_figure(rows, machine, dtype="float32", label=str):
    """Throughput bars per shape and implementation, the floor dashed over
    each shape's group: one panel per thread count (the same scale), the
    legend beside them, never over a bar or a floor line.  label(impl): its
    name in the legend."""
    import matplotlib.pyplot as plt

    thread_counts = sorted({r["threads"] for r in rows})
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    impls = [i for i in dict.fromkeys(r["impl"] for r in rows) if i != "copy"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / max(1, len(impls))
    fig, axes = plt.subplots(len(thread_counts), 1, squeeze=False, sharex=True, sharey=True,
                             figsize=(max(8, 1.4 * len(shapes)), 1 + 3.2 * len(thread_counts)))
    for ax, threads in zip(axes[:, 0], thread_counts):
        by_key = {(r["shape"], r["impl"]): r for r in rows if r["threads"] == threads}
        for k, impl in enumerate(impls):  # the same colour for an implementation in every panel
            values = [by_key[(s, impl)]["gb_per_s"] if (s, impl) in by_key else float("nan")
                      for s in shapes]
            ax.bar([i + k * width for i in range(len(shapes))], values, width,
                   color=colors[k % len(colors)], label=label(impl))
        for i, s in enumerate(shapes):
            if (s, "copy") in by_key:
                ax.hlines(by_key[(s, "copy")]["gb_per_s"], i - width / 2, i + 0.8 - width / 2,
                          colors="black", linestyles="dashed",
                          label="copy of the same bytes (the floor)" if i == 0 else None)
        ax.set_title(plural(threads, "thread"), fontsize=10, loc="left")
        ax.set_ylabel("GB/s\n(x read + y written)")
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xticks([i + 0.4 - width / 2 for i in range(len(shapes))], shapes,
                           rotation=20)
    fig.suptitle(f"GroupNorm throughput, {dtype} (higher is better): {machine['cpu']}, "
                 f"ISA {machine['isa']}")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8,
               frameon=False)
    return fig
