"""python -m gncpu and the bench harness: the floor, the busy-machine verdict,
the words around the numbers.  No timing is asserted (the machines are
shared): the logic is fed made-up timings."""

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gncpu
from gncpu import _core
from gncpu._measure import (Floor, Progress, contention_signs, copy_floor, floor_destination,
                            format_seconds, measure_floor, plural, plural_counts, thread_count,
                            verdict, xor_floor)

# bench/ is in the source tree only: CI runs these tests from a copy of tests/
# against the installed package, where the bench tests skip.
BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def thread_state():
    """gncpu's thread count and whether the user chose it, restored after."""
    saved, chosen = gncpu.get_num_threads(), _core._num_threads_chosen()
    yield saved, chosen
    if chosen:
        gncpu.set_num_threads(saved)
    else:
        gncpu.set_num_threads(None)
        _core._set_num_threads(saved)


# -------------------------------------------------------------------- words

def test_plural_says_one_thread_and_two_threads():
    assert plural(1, "thread") == "1 thread"
    assert plural(2, "thread") == "2 threads"
    assert plural(0, "CPU") == "0 CPUs"
    assert plural(3, "pass", "passes") == "3 passes"
    assert plural(1, "pass", "passes") == "1 pass"
    assert plural_counts([2], "thread") == "2 threads"
    assert plural_counts([1], "thread") == "1 thread"
    assert plural_counts([1, 2], "thread") == "1 and 2 threads"
    assert plural_counts([1, 2, 4], "thread") == "1, 2 and 4 threads"


def test_times_carry_their_unit():
    assert format_seconds(812.4e-6).strip() == "812.4 us"
    assert format_seconds(8.0e-3).strip() == "8.00 ms"
    assert format_seconds(12.5).strip() == "12.50 s"
    assert format_seconds(3e-7).strip() == "0.3 us"


# -------------------------------------------------------------------- floor

def fake_measure(seconds_by_threads, calls):
    """A timer that times nothing: the seconds a floor operation 'took' at
    gncpu's current thread count."""
    def measure(fn):
        calls.append(gncpu.get_num_threads())
        return seconds_by_threads[gncpu.get_num_threads()]
    return measure


def test_floor_is_the_one_thread_copy_when_the_team_waited(thread_state):
    """The issue's machine: 8 ms on 2 threads, 1.1 ms on 1."""
    calls = []
    floor = measure_floor(lambda: None, 2, fake_measure({2: 8.0e-3, 1: 1.1e-3}, calls))
    assert calls == [2, 1]
    assert floor.seconds == 1.1e-3 and floor.threads == 1
    assert floor.team_seconds == 8.0e-3 and floor.solo_seconds == 1.1e-3
    assert floor.solo_beat_team and floor.team_waited
    # GroupNorm at 1.6 ms is then 1.45x the floor, not 0.2x
    assert 1.6e-3 / floor.seconds > 1.0


def test_floor_is_the_team_copy_on_a_quiet_machine(thread_state):
    calls = []
    floor = measure_floor(lambda: None, 4, fake_measure({4: 0.3e-3, 1: 1.0e-3}, calls))
    assert calls == [4, 1]
    assert floor.seconds == 0.3e-3 and floor.threads == 4
    assert not floor.solo_beat_team and not floor.team_waited


def test_one_thread_team_is_timed_once(thread_state):
    calls = []
    floor = measure_floor(lambda: None, 1, fake_measure({1: 1e-3}, calls))
    assert calls == [1]
    assert floor.solo_seconds is None and floor.seconds == 1e-3 and floor.threads == 1
    assert not floor.team_waited


@pytest.mark.parametrize("team, solo, waited", [
    (0.5e-6, 0.3e-6, False),  # tiny: timer noise, or a copy too small to split
    (1.0e-3, 0.9e-3, False),  # within the margin (threads sharing a core)
    (1.0e-3, 0.5e-3, True),
    (8.0e-3, 1.1e-3, True),
])
def test_a_team_waited_only_when_one_thread_won_by_more_than_noise(team, solo, waited):
    assert Floor(2, team, solo).team_waited is waited


@pytest.mark.parametrize("chosen", [False, True])
def test_floor_leaves_the_thread_state_as_it_was(thread_state, chosen):
    """The count and whether the user chose it (gncpu.torch follows torch's
    count unless the user chose gncpu's)."""
    if chosen:
        gncpu.set_num_threads(3)
    else:
        gncpu.set_num_threads(None)
        _core._set_num_threads(3)
    measure_floor(lambda: None, 2, fake_measure({2: 1.0, 1: 2.0}, []))
    assert gncpu.get_num_threads() == 3
    assert _core._num_threads_chosen() is chosen


def test_thread_count_restores_after_an_exception(thread_state):
    before = (gncpu.get_num_threads(), _core._num_threads_chosen())
    with pytest.raises(RuntimeError):
        with thread_count(1):
            assert gncpu.get_num_threads() == 1
            raise RuntimeError("inside")
    assert (gncpu.get_num_threads(), _core._num_threads_chosen()) == before


def test_copy_and_xor_floors_run_the_operation(thread_state):
    src = np.arange(4096, dtype=np.float32)
    calls = []
    floor = copy_floor(src, 2, lambda fn: (calls.append(fn()), 1.0)[1])
    assert calls == [None, None]  # team, then one thread
    assert floor.team == 2 and floor.seconds == 1.0
    xor_floor(src, np.ones_like(src), 1, lambda fn: (fn(), 1.0)[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 64, 33)])
def test_floor_destination_keeps_half_a_page_from_the_source(dtype, shape):
    """(glibc's memcpy is ten times slower on AMD when the destination starts
    within 64 bytes past the source modulo 4 KiB.)"""
    src = np.ones(shape, dtype)
    dst = floor_destination(src)
    assert dst.shape == src.shape and dst.dtype == src.dtype and dst.flags.c_contiguous
    assert dst.flags.writeable and not np.shares_memory(dst, src)
    assert (dst.ctypes.data - src.ctypes.data) % 4096 == 2048
    _core._parallel_copy(dst, src)
    np.testing.assert_array_equal(dst, src)


# ------------------------------------------------------------------ verdict

QUIET = dict(team=2, team_s=1e-3, solo_s=1.8e-3, spread=1.1, load=0.3, cpus=2)


def busy(**changes):
    return contention_signs(**dict(QUIET, **changes))


def test_a_quiet_machine_gets_no_sign():
    assert contention_signs(**QUIET) == []
    assert contention_signs(**QUIET, vs_floor=1.4, floor=Floor(2, 0.2e-3, 0.3e-3)) == []
    assert busy(load=None) == []  # no load average (Windows)
    assert verdict([]).startswith("VERDICT: measured on a quiet machine")


@pytest.mark.parametrize("changes, words", [
    (dict(solo_s=2e-4), "1 thread"),                 # one thread beat the team
    (dict(spread=3.0), "vary by 3.0x"),              # repeats vary
    (dict(load=4.0), "load average 4.0 on 2 CPUs"),  # load >= CPUs
    (dict(vs_floor=0.15), "0.15x"),                  # faster than a copy: impossible
    (dict(floor=Floor(2, 8.0e-3, 1.1e-3)), "1-thread copy (1.10 ms) beat the 2-thread one"),
])
def test_each_sign_of_a_busy_machine(changes, words):
    signs = busy(**changes)
    assert len(signs) == 1 and words in signs[0], signs


def test_the_verdict_of_a_busy_machine_says_so_and_why():
    signs = busy(solo_s=2e-4, load=3.0, vs_floor=0.15)
    text = verdict(signs)
    assert text.startswith("VERDICT: too busy to measure")
    assert "run again on a quiet machine" in text
    for sign in signs:
        assert sign in text


def test_python_dash_m_keeps_contention_signs_importable():
    from gncpu.__main__ import contention_signs as from_main
    assert from_main is contention_signs


# ----------------------------------------------------------------- progress

class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_prints_plain_lines_off_a_terminal(capsys):
    stream = io.StringIO()
    bar = Progress(3, "shapes", stream)
    bar.step("SD U-Net 64")
    bar.note("timing torch")  # a detail: terminals only
    bar.step("tiny")
    bar.write("a table")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert lines[0].startswith("[1/3 shapes, ") and lines[0].endswith("] SD U-Net 64")
    assert lines[1].startswith("[2/3 shapes, ") and lines[1].endswith("] tiny")
    assert capsys.readouterr().out == "a table\n"


def test_progress_draws_a_bar_on_a_terminal_and_clears_it(capsys):
    stream = FakeTerminal()
    bar = Progress(4, "shapes", stream)
    bar.step("first")
    bar.step("second")
    bar.note("timing gncpu")
    assert "[#####---------------] 2/4 shapes" in stream.getvalue()
    assert "second (timing gncpu)" in stream.getvalue() and "left" in stream.getvalue()
    bar.write("a table")
    assert capsys.readouterr().out == "a table\n"
    bar.close()
    assert stream.getvalue().endswith("\r")  # the line wiped
    assert "\n" not in stream.getvalue()


# ------------------------------------------------------------ python -m gncpu

def test_python_dash_m_gncpu_without_the_benchmark_runs():
    result = subprocess.run([sys.executable, "-m", "gncpu", "--no-bench"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Self-check" in result.stdout and "FAIL" not in result.stdout
    assert "VERDICT" not in result.stdout


def test_python_dash_m_gncpu_benchmark_ends_with_a_verdict(capsys, thread_state):
    from gncpu.__main__ import benchmark
    signs = benchmark(shape=(1, 32, 16, 16), groups=8, repeats=3)
    out = capsys.readouterr().out
    assert "VERDICT: " in out
    assert "x floor: time / the floor's" in out  # the legend
    assert plural(gncpu.get_num_threads(), "thread") + ":" in out
    assert ("too busy to measure" in out) == bool(signs)
    if not signs:  # ratios are printed only when they mean something
        assert "1.00x floor" in out
    assert (gncpu.get_num_threads(), _core._num_threads_chosen()) == thread_state


# -------------------------------------------------------------------- bench

@pytest.fixture
def bench(monkeypatch):
    if not (BENCH / "run.py").is_file():
        pytest.skip("bench/ is not here (tests run outside the source tree)")
    monkeypatch.syspath_prepend(str(BENCH))
    return BENCH


def bench_rows(threads, copy_team_s, copy_solo_s):
    floor = Floor(threads, copy_team_s, copy_solo_s)
    rows = []
    for impl, seconds in (("copy", floor.seconds), ("gncpu out=", 2e-3),
                          ("gncpu out=64", 1.9e-3), ("gncpu", 2.2e-3), ("torch", 4.4e-3)):
        rows.append({"shape": "SD U-Net 64", "dims": [1, 320, 64, 64], "groups": 32,
                     "dtype": "float32", "threads": threads, "impl": impl,
                     "seconds": seconds, "gb_per_s": 10.5e6 / seconds / 1e9,
                     "x_copy": seconds / floor.seconds, "gncpu_speedup": seconds / 2.2e-3,
                     "max_error": None if impl == "copy" else 1e-6})
        if impl == "copy":
            rows[-1].update(copy_team_s=copy_team_s, copy_solo_s=copy_solo_s,
                            floor_threads=floor.threads)
    return rows


def test_bench_tables_name_things_plainly(bench):
    import run
    text = run.format_rows(bench_rows(2, 1.0e-3, 1.2e-3))
    for name in ("copy (floor)", "gncpu out=numpy", "gncpu out=aligned", "gncpu faster", "x copy"):
        assert name in text
    assert "2.00x" in text  # torch took twice gncpu's time
    assert "note:" not in text
    for name in ("x copy", "gncpu faster", "gncpu out=numpy", "gncpu out=aligned", "GB/s"):
        assert name in run.LEGEND
    import harness
    assert harness.shape_title("SD U-Net 64", (1, 320, 64, 64), 32, 1) == \
        "SD U-Net 64: 1x320x64x64, G=32, 1 thread"
    assert harness.shape_title("1x32x8x8", (1, 32, 8, 8), 32, 2) == "1x32x8x8, G=32, 2 threads"
    # --only takes the names the tables show, or the JSON's
    assert run.internal_name("gncpu out=aligned") == "gncpu out=64"
    assert run.internal_name("gncpu out=64") == "gncpu out=64"


def test_bench_table_notes_a_team_that_waited(bench):
    import run
    text = run.format_rows(bench_rows(2, 8.0e-3, 1.1e-3))
    assert "note: the 1-thread copy (1.10 ms) beat the 2-thread one (8.00 ms)" in text


def test_bench_plot_has_a_panel_per_thread_count_and_its_legend_outside(bench):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plots
    import run
    rows = bench_rows(1, 2e-3, None) + bench_rows(2, 1.0e-3, 1.2e-3)
    fig = plots.plot_figure(rows, {"cpu": "a CPU", "isa": "avx2"}, label=run.display_name)
    try:
        assert [ax.get_title(loc="left") for ax in fig.axes] == ["1 thread", "2 threads"]
        assert all(ax.get_legend() is None for ax in fig.axes)  # not over the floor line
        assert len(fig.legends) == 1
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "copy of the same bytes (the floor)" in labels and "gncpu out=aligned" in labels
    finally:
        plt.close(fig)


@pytest.mark.parametrize("script", ["run", "backward", "e2e"])
def test_every_bench_option_is_explained(bench, script):
    module = __import__(script)
    for action in module.build_parser()._actions:
        if action.help != argparse.SUPPRESS:
            assert action.help, f"bench/{script}.py {action.option_strings} has no help"


def test_bench_run_on_the_tiny_shape(bench, tmp_path):
    """The harness end to end on one tiny shape, gncpu only (about two seconds)."""
    out = tmp_path / "tiny.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(gncpu.__file__).parent.parent)] + [p for p in [env.get("PYTHONPATH")] if p])
    result = subprocess.run(
        [sys.executable, str(bench / "run.py"), "--shape", "1x32x8x8", "--rounds", "2",
         "--passes", "1", "--threads", "1,2", "--only", "gncpu", "--json", str(out)],
        capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "1x32x8x8, G=32, 1 thread\n" in result.stdout
    assert "1x32x8x8, G=32, 2 threads\n" in result.stdout
    assert "x copy" in result.stdout and "1 and 2 threads" in result.stdout
    assert "[2/2 shapes" in result.stderr  # progress, off the results' stream
    rows = json.loads(out.read_text())["rows"]
    assert {(r["threads"], r["impl"]) for r in rows} == {
        (t, i) for t in (1, 2) for i in ("copy", "gncpu")}
    copy2 = next(r for r in rows if r["threads"] == 2 and r["impl"] == "copy")
    assert copy2["seconds"] == min(copy2["copy_team_s"], copy2["copy_solo_s"])
