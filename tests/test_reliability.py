"""Reliability: fork, threads racing with configuration changes, the process's
floating-point state, memory growth, and huge tensors."""

import gc
import multiprocessing
import os
import sys
import threading

import numpy as np
import pytest

import gncpu
from gncpu import reference

from conftest import RTOL, TOLERANCE, max_error, random_input


def _child_group_norm(x):
    y = gncpu.group_norm(x, 8)
    return float(np.max(np.abs(y - reference.group_norm(x, 8)))), gncpu.build_info()["forked_child"]


@pytest.mark.skipif(sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods(),
                    reason="no fork on this platform")
@pytest.mark.smoke
def test_forked_child_completes_after_parent_used_threads(restore_threads, rng):
    x = random_input(rng, (2, 32, 64, 64))  # large enough for the parent to use threads
    gncpu.set_num_threads(max(2, os.cpu_count() or 2))
    gncpu.group_norm(x, 8)  # the parent's OpenMP pool now exists
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        error, forked = pool.apply_async(_child_group_norm, (x,)).get(timeout=120)
    assert error <= TOLERANCE[np.float32]
    assert forked is True
    assert gncpu.build_info()["forked_child"] is False
    np.testing.assert_array_equal(gncpu.group_norm(x, 8), gncpu.group_norm(x, 8))


def test_threads_race_with_set_num_threads_and_set_isa(rng):
    inputs = [random_input(rng, (2, 16, 40, 40), mean=float(i)) for i in range(6)]
    expected = [reference.group_norm(x, 8) for x in inputs]
    before = (gncpu.get_num_threads(), gncpu.isa())
    stop = threading.Event()
    failures = []

    def reconfigure():
        isas = gncpu.supported_isas()
        i = 0
        while not stop.is_set():
            gncpu.set_num_threads(1 + i % 3)
            gncpu.set_isa(isas[i % len(isas)])
            i += 1

    def work(k):
        for _ in range(20):
            y = gncpu.group_norm(inputs[k], 8)
            if max_error(y, expected[k]) > TOLERANCE[np.float32]:
                failures.append(k)

    changer = threading.Thread(target=reconfigure)
    workers = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    changer.start()
    try:
        for t in workers:
            t.start()
        for t in workers:
            t.join(timeout=120)
    finally:
        stop.set()
        changer.join()
        gncpu.set_num_threads(before[0])
        gncpu.set_isa(before[1])
    assert not failures


def _flush_to_zero_is_off():
    tiny = np.float32(1e-38)
    subnormal = tiny / np.float32(10.0)          # flush-to-zero would give 0
    denormal_input = subnormal * np.float32(2.0)  # denormals-are-zero would give 0
    return subnormal != 0 and denormal_input != 0


@pytest.mark.smoke
def test_floating_point_state_is_left_alone(rng):
    assert _flush_to_zero_is_off()
    x = random_input(rng, (2, 8, 30, 30))
    for name in gncpu.supported_isas():
        gncpu.set_isa(name)
        for activation in (None, "silu", "gelu"):
            gncpu.group_norm(x, 4, activation=activation)
            gncpu.group_norm(x.astype(np.float64), 4, activation=activation)
    gncpu.set_isa(gncpu.supported_isas()[-1])
    assert _flush_to_zero_is_off()
    # Subnormal scales and results survive the kernels: a subnormal weight
    # makes every output subnormal (flush-to-zero or denormals-are-zero in the
    # kernel would give zeros).
    x = np.tile(np.array([-1.0, 1.0], np.float32), (1, 2, 4))
    weight = np.array([1e-39, 2e-39], np.float32)
    expected = reference.group_norm(x, 2, weight, eps=0.0)
    for name in gncpu.supported_isas():
        gncpu.set_isa(name)
        y = gncpu.group_norm(x, 2, weight, eps=0.0)
        assert np.all(y != 0), name
        assert np.allclose(y, expected, rtol=RTOL[np.float32], atol=0), name


def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_no_memory_growth_over_many_calls(rng):
    x = random_input(rng, (1, 32, 8, 8))
    w = np.ones(32, np.float32)
    out = np.empty_like(x)
    bad = np.ones((2, 3), np.int32)

    def burst(n):
        for _ in range(n):
            gncpu.group_norm(x, 32, w, w)
            gncpu.group_norm(x, 32, out=out, return_stats=True)
            gncpu.group_norm(x.astype(np.float64), 8, activation="silu")
            for call in (lambda: gncpu.group_norm(bad, 1), lambda: gncpu.group_norm(x, 3),
                         lambda: gncpu.group_norm(x, 32, out=out[:, :1]),
                         lambda: gncpu.group_norm(x, 32, activation="tanh")):
                try:
                    call()
                except (TypeError, ValueError):
                    pass

    burst(2000)  # warm up allocator pools and caches
    gc.collect()
    before = _resident_bytes()
    burst(10000)
    gc.collect()
    growth = _resident_bytes() - before
    assert growth < 2 << 20, f"resident memory grew by {growth / 2**20:.1f} MiB"


@pytest.mark.skipif(os.environ.get("GNCPU_TEST_HUGE") != "1",
                    reason="needs ~9 GB of memory: set GNCPU_TEST_HUGE=1")
def test_group_larger_than_2_to_the_31_elements():
    n = 2**31 + 4099  # one group, past every 32-bit index
    x = np.empty((1, 1, n), np.float32)
    x[...] = 1.0
    x[0, 0, 1::2] = 3.0  # mean 2, variance 1: y = -1, +1 alternating
    y, mean, rstd = gncpu.group_norm(x, 1, eps=0.0, out=x, return_stats=True)
    # Too large for the float64 oracle (a 17 GB copy): the answer is known exactly.
    assert y is x
    assert abs(float(mean[0, 0]) - (2.0 - 1.0 / n)) < RTOL[np.float32]  # n is odd: one more 1.0
    assert abs(float(rstd[0, 0]) - 1.0) < RTOL[np.float32]
    for index in (0, 1, 2**31 - 1, 2**31, 2**31 + 1, n - 2, n - 1):
        expected = -1.0 if index % 2 == 0 else 1.0
        assert abs(float(y[0, 0, index]) - expected) < TOLERANCE[np.float32], index
