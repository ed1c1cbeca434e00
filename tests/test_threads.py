"""Threads: determinism, concurrency and the thread-count API."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import gncpu
from gncpu import reference

from conftest import TOLERANCE, max_error, random_affine, random_input

THREAD_COUNTS = [1, 2, 3, 4, 7]


@pytest.mark.parametrize("shape,groups", [
    ((1, 320, 32, 32), 32),   # N*G = 32 whole groups
    pytest.param((1, 8, 128, 128), 2,  # two large groups, split across threads
                 marks=pytest.mark.smoke),
    ((3, 6, 40, 40), 3),      # N*G = 9: uneven over most thread counts
    ((2, 4, 3001), 4),        # rows cut mid-way by block boundaries
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_identical_for_any_thread_count(isa, schedule, restore_threads, rng,
                                                shape, groups, dtype):
    x = random_input(rng, shape, dtype, mean=10.0)
    weight, bias = random_affine(rng, shape[1], dtype)
    results = []
    for threads in THREAD_COUNTS:
        gncpu.set_num_threads(threads)
        results.append(gncpu.group_norm(x, groups, weight, bias))
    for threads, y in zip(THREAD_COUNTS[1:], results[1:]):
        assert np.array_equal(y, results[0]), f"{threads} threads differ from 1 thread"


@pytest.mark.smoke
def test_concurrent_calls_from_python_threads(rng):
    inputs = [random_input(rng, (2, 32, 24, 24), mean=float(i)) for i in range(16)]
    expected = [gncpu.group_norm(x, 8) for x in inputs]

    def work(i):
        for _ in range(5):
            if not np.array_equal(gncpu.group_norm(inputs[i], 8), expected[i]):
                return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(work, range(len(inputs))))


def test_set_num_threads_validation(restore_threads):
    gncpu.set_num_threads(3)
    assert gncpu.get_num_threads() == 3
    gncpu.set_num_threads(np.int64(1))
    assert gncpu.get_num_threads() == 1
    for bad, error in [(0, ValueError), (-1, ValueError), (10**9, ValueError),
                       (2.0, TypeError), ("2", TypeError), (True, TypeError)]:
        with pytest.raises(error):
            gncpu.set_num_threads(bad)
    assert gncpu.get_num_threads() == 1
    gncpu.set_num_threads(None)  # the default again (and gncpu.torch follows torch again)
    assert gncpu.get_num_threads() == gncpu.default_num_threads()


def run_python(code, **env):
    full_env = dict(os.environ, **env)
    result = subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_default_threads_honour_omp_num_threads():
    result = run_python("import gncpu; print(gncpu.get_num_threads())", OMP_NUM_THREADS="3")
    assert result.stdout.strip() == "3"


def test_default_threads_honour_affinity():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity on this platform")
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "import gncpu; print(gncpu.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_large_tensor_matches_oracle_with_all_threads(restore_threads, rng):
    gncpu.set_num_threads(max(2, os.cpu_count() or 2))
    x = random_input(rng, (1, 64, 128, 128), mean=-300.0, std=4.0)
    weight, bias = random_affine(rng, 64)
    y = gncpu.group_norm(x, 32, weight, bias)
    assert max_error(y, reference.group_norm(x, 32, weight, bias)) <= TOLERANCE[np.float32]


def test_contention_backs_off_to_one_thread_and_recovers(rng, restore_threads):
    """A team that waited most of a call for a descheduled teammate makes the
    next calls single-threaded for a while (doubling while it recurs); a
    balanced team ends the back-off.  Results are the same either way."""
    from gncpu import _core
    gncpu.set_num_threads(2)
    x = random_input(rng, (1, 64, 64, 64))
    expected = gncpu.group_norm(x, 8)
    _core._set_tuning(0, 0, 0)  # no back-off left from calls on a busy machine
    _core._contention(10_000_000, 100_000)  # balanced: no back-off
    assert _core._contention() == 0
    assert _core._contention(10_000_000, 8_000_000) == 0  # waited 8 of 10 ms: once is a hiccup
    assert _core._contention(10_000_000, 8_000_000) == 0  # twice too
    first = _core._contention(10_000_000, 8_000_000)  # three times in a row is contention
    assert 10_000_000 < first <= 20_000_000
    second = _core._contention(10_000_000, 8_000_000)
    assert second > first  # it recurred: a longer back-off
    np.testing.assert_array_equal(gncpu.group_norm(x, 8), expected)
    _core._set_tuning(0, 0, 0)
