"""How `python -m gncpu` and bench/ time gncpu: the floor (a copy of the same
bytes) measured the way the kernels run, the busy-machine verdict, and the
words and progress lines around the numbers.  Private (no API promise);
NumPy only, so that bench/ and `python -m gncpu` need nothing more."""

from __future__ import annotations  # "float | None" on Python 3.9

import contextlib
import dataclasses
import shutil
import sys
import time

import numpy as np

import gncpu
from gncpu import _core

# A GroupNorm reads x and writes y, as a copy does: on the in-cache shapes
# `python -m gncpu` times, taking less time than the copy means the copy was
# slowed down by something else.  (On large outputs written with streaming
# stores it can beat memcpy, whose stores first read each line: bench/run.py
# reports down to ~0.8 there, so this is no rule for every shape.)
BELOW_THE_FLOOR = 0.9
SPREAD_LIMIT = 2.0  # slowest decile over the median
# Two threads copying may be no faster than one where they share a core's
# caches (SMT siblings), but a team 25% slower than one thread, by more than
# a tenth of a millisecond, waited for a teammate (a descheduled thread costs
# the rest of a time slice: milliseconds); below that it is timer noise, or
# a copy too small to be split at all.
SOLO_COPY_MARGIN = 0.8
SOLO_COPY_MIN_GAIN_S = 1e-4


# ------------------------------------------------------------------ words

def plural(count, noun, nouns=None):
    """'1 thread', '2 threads' ('2 passes' with nouns="passes")."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def plural_counts(counts, noun):
    """'1 thread', '1 and 2 threads', '1, 2 and 4 threads'."""
    counts = list(counts)
    if len(counts) == 1:
        return plural(counts[0], noun)
    listed = ", ".join(map(str, counts[:-1])) + f" and {counts[-1]}"
    return f"{listed} {noun}s"


def format_seconds(seconds):
    """A time with its unit, 10 characters wide: '  812.4 us', '   8.12 ms', '   12.50 s'."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:7.1f} us"
    if seconds < 10.0:
        return f"{seconds * 1e3:7.2f} ms"
    return f"{seconds:7.2f} s"


def format_elapsed(seconds):
    """'41 s', '3 min 05 s'."""
    seconds = int(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


# ---------------------------------------------------------------- threads

@contextlib.contextmanager
def thread_count(n):
    """gncpu's thread count set to n inside the block, then restored exactly:
    the count and whether the user chose it (set_num_threads marks the count
    as chosen, which stops gncpu.torch following torch's)."""
    saved, chosen = gncpu.get_num_threads(), _core._num_threads_chosen()
    gncpu.set_num_threads(n)
    try:
        yield
    finally:
        if chosen:
            gncpu.set_num_threads(saved)
        else:
            gncpu.set_num_threads(None)  # clears the mark...
            _core._set_num_threads(saved)  # ...and keeps the count it had


# ----------------------------------------------------------------- timing

def timings(fn, repeats):
    """Seconds of each of `repeats` calls, after one warm-up call (page
    faults, the thread team's start)."""
    fn()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return times


def median_seconds(fn, repeats=30):
    return float(np.median(timings(fn, repeats)))


@dataclasses.dataclass(frozen=True)
class Floor:
    """A floor operation's time with the thread team and with one thread; the
    floor is the faster.  The kernels run on one thread for a while when a
    teammate waited for a busy core (cpp/src/runtime.cpp's back-off); a copy
    timed with the team alone has no such back-off, and on a busy machine
    takes many times longer than the GroupNorm it should bound."""
    team: int
    team_seconds: float
    solo_seconds: float | None  # None when the team is one thread

    @property
    def seconds(self):
        if self.solo_seconds is None:
            return self.team_seconds
        return min(self.team_seconds, self.solo_seconds)

    @property
    def threads(self):
        """The thread count that reached the floor."""
        return 1 if self.solo_beat_team else self.team

    @property
    def solo_beat_team(self):
        return self.solo_seconds is not None and self.solo_seconds < self.team_seconds

    @property
    def team_waited(self):
        """One thread beat the team by more than noise: a teammate waited
        for a core busy with other work."""
        return (self.solo_seconds is not None
                and self.solo_seconds < SOLO_COPY_MARGIN * self.team_seconds
                and self.team_seconds - self.solo_seconds > SOLO_COPY_MIN_GAIN_S)

    def describe(self):
        """'copy on 2 threads 8.00 ms, on 1 thread 1.10 ms'."""
        text = f"on {plural(self.team, 'thread')} {format_seconds(self.team_seconds).strip()}"
        if self.solo_seconds is not None:
            text += f", on 1 thread {format_seconds(self.solo_seconds).strip()}"
        return text


def measure_floor(fn, team, measure=median_seconds):
    """fn (a floor operation run with gncpu's threading, e.g. _parallel_copy)
    timed by measure(fn) -> seconds with `team` threads and, when team > 1,
    with one; the Floor keeps both."""
    with thread_count(team):
        team_seconds = measure(fn)
    solo_seconds = None
    if team > 1:
        with thread_count(1):
            solo_seconds = measure(fn)
    return Floor(team, team_seconds, solo_seconds)


def floor_destination(src, distance=2048):
    """An uninitialised array like src (C-contiguous) that starts `distance`
    bytes past src modulo a 4 KiB page.  glibc's memcpy (rep movsb, before
    glibc 2.39) runs about ten times slower on AMD Zen when the destination
    starts less than 64 bytes past the source modulo 4 KiB, and NumPy puts
    large arrays at the same offset in their pages: a floor copied there
    makes GroupNorm (which does not call memcpy) look faster than a copy."""
    raw = np.empty(src.nbytes + 4096, np.uint8)
    skip = (src.ctypes.data + distance - raw.ctypes.data) % 4096
    return raw[skip:skip + src.nbytes].view(src.dtype).reshape(src.shape)


def copy_floor(src, team, measure=median_seconds):
    """The forward's floor: src read once, a buffer as large written once."""
    dst = floor_destination(src)
    return measure_floor(lambda: _core._parallel_copy(dst, src), team, measure)


def xor_floor(a, b, team, measure=median_seconds):
    """The backward's floor: a and b read once, a buffer as large written
    once (a ^ b byte-wise; a and b 8-byte aligned, as NumPy allocates)."""
    dst = floor_destination(a)
    return measure_floor(lambda: _core._parallel_xor(dst, a, b), team, measure)


# ---------------------------------------------------------------- verdict

def contention_signs(team, team_s, solo_s, spread, load, cpus, vs_floor=None, floor=None):
    """Why the timings may not show gncpu's speed: other work on these cores.
    team_s/solo_s: median seconds of GroupNorm with the thread team and with
    one thread; spread: slowest decile over the median; load: the 1-minute
    load average (None where unknown); vs_floor: GroupNorm's time over the
    floor's, on a shape where below BELOW_THE_FLOOR cannot be right; floor:
    the copy's Floor, whose 1-thread copy should not beat its team's."""
    signs = []
    if floor is not None and floor.team_waited:
        signs.append(f"a 1-thread copy ({_short(floor.solo_seconds)}) beat the "
                     f"{floor.team}-thread one ({_short(floor.team_seconds)})")
    if team > 1 and solo_s is not None and solo_s < team_s:
        signs.append(f"1 thread ({_short(solo_s)}) beat the {team}-thread team "
                     f"({_short(team_s)}): a teammate waited for a busy core")
    if spread > SPREAD_LIMIT:
        signs.append(f"repeats vary by {spread:.1f}x (slowest tenth over the median)")
    if load is not None and load > cpus - 0.5:
        signs.append(f"load average {load:.1f} on {plural(cpus, 'CPU')}")
    if vs_floor is not None and vs_floor < BELOW_THE_FLOOR:
        signs.append(f"GroupNorm took {vs_floor:.2f}x the time of a copy of the same bytes, "
                     "which it cannot beat on this shape: the copy was slowed down")
    return signs


def _short(seconds):
    return format_seconds(seconds).strip()


def verdict(signs):
    """The lines that say whether the timings mean anything."""
    if not signs:
        return "VERDICT: measured on a quiet machine (no sign of other work on these cores)."
    return "\n".join(["VERDICT: too busy to measure:"] + [f"  - {sign}" for sign in signs]
                     + ["  The times above show the machine's load, not gncpu's speed: "
                        "run again on a quiet machine."])


# --------------------------------------------------------------- progress

class Progress:
    """Where a long run is, on stderr: on a terminal, a bar redrawn in place
    (step, elapsed time, an estimate of what is left, a detail); elsewhere
    (a log, a pipe) one plain line per step and no details.

        progress = Progress(9, "shapes")
        progress.step("SD VAE 128")      # starting step 1 of 9
        progress.note("timing torch")    # terminal only
        progress.write(table)            # to stdout, the bar kept below it
        progress.close()
    """

    def __init__(self, total, what="steps", stream=None, width=20):
        self.total, self.what, self.width = total, what, width
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.started = 0  # steps begun; those before the current one are done
        self.label = self.detail = ""
        self.start = time.monotonic()
        self.drawn = 0  # characters of the bar now on the terminal line

    def elapsed(self):
        return time.monotonic() - self.start

    def line(self):
        """The bar's text, cut to the terminal's width:
        '[#####-----] 3/9 shapes, 41 s, ~1 min 20 s left: SD VAE 128 (timing torch)'."""
        done = max(0, self.started - 1)
        filled = round(self.width * done / self.total) if self.total else self.width
        text = (f"[{'#' * filled}{'-' * (self.width - filled)}] {self.started}/{self.total} "
                f"{self.what}, {format_elapsed(self.elapsed())}")
        if done:
            left = self.elapsed() / done * (self.total - done)
            text += f", ~{format_elapsed(left)} left"
        text += f": {self.label}" + (f" ({self.detail})" if self.detail else "")
        columns = shutil.get_terminal_size((100, 20)).columns
        return text[:max(20, columns - 1)]

    def _draw(self):
        if not self.tty or not self.started:
            return
        text = self.line()
        self.stream.write("\r" + text + " " * max(0, self.drawn - len(text)))
        self.stream.flush()
        self.drawn = len(text)

    def _clear(self):
        if self.tty and self.drawn:
            self.stream.write("\r" + " " * self.drawn + "\r")
            self.stream.flush()
            self.drawn = 0

    def step(self, label):
        """Starts the next step."""
        self.started += 1
        self.label, self.detail = label, ""
        if self.tty:
            self._draw()
        else:
            self.stream.write(f"[{self.started}/{self.total} {self.what}, "
                              f"{format_elapsed(self.elapsed())}] {label}\n")
            self.stream.flush()

    def note(self, detail):
        """What the current step is doing (shown on a terminal only)."""
        self.detail = detail
        self._draw()

    def write(self, text):
        """Prints text to stdout with the bar out of its way."""
        self._clear()
        print(text, flush=True)
        self._draw()

    def close(self):
        self._clear()


@contextlib.contextmanager
def progress(total, what="steps", stream=None):
    """A Progress that is cleared from the terminal however the block ends."""
    bar = Progress(total, what, stream)
    try:
        yield bar
    finally:
        bar.close()
