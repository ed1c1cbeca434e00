"""The rest of the public API: dispatch, build info, GroupNorm, python -m gncpu."""

import subprocess
import sys

import numpy as np
import pytest

import gncpu
from gncpu import reference

from conftest import TOLERANCE, max_error, random_input


@pytest.mark.smoke
def test_isa_introspection():
    supported = gncpu.supported_isas()
    assert "scalar" in supported
    assert set(supported) <= set(gncpu.compiled_isas())
    assert set(gncpu.compiled_isas()) <= {"scalar", "avx2", "avx512", "avx512bf16", "neon"}
    assert gncpu.isa() in supported


@pytest.mark.smoke
def test_default_isa_is_the_best_supported():
    order = ["avx512bf16", "avx512", "avx2", "neon", "scalar"]
    best = next(name for name in order if name in gncpu.supported_isas())
    result = subprocess.run(
        [sys.executable, "-c", "import gncpu; print(gncpu.isa())"],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in __import__("os").environ.items() if k != "GNCPU_ISA"})
    assert result.stdout.strip() == best


@pytest.mark.smoke
def test_set_isa(isa):
    assert gncpu.isa() == isa


@pytest.mark.smoke
@pytest.mark.parametrize("name,error", [("sse9", ValueError), ("", ValueError),
                                        ("AVX2", ValueError), (2, TypeError)])
def test_set_isa_rejects_unknown(name, error):
    before = gncpu.isa()
    with pytest.raises(error):
        gncpu.set_isa(name)
    assert gncpu.isa() == before


@pytest.mark.smoke
def test_set_isa_rejects_compiled_but_unsupported():
    missing = set(gncpu.compiled_isas()) - set(gncpu.supported_isas())
    if not missing:
        pytest.skip("this CPU runs every compiled kernel")
    for name in missing:
        with pytest.raises(ValueError, match="not supported"):
            gncpu.set_isa(name)


@pytest.mark.parametrize("name", ["scalar", "avx512", "bogus"])
def test_gncpu_isa_environment_variable(name):
    code = "import warnings, gncpu; print(gncpu.isa())"
    import os
    env = dict(os.environ, GNCPU_ISA=name)
    result = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    if name in gncpu.supported_isas():
        assert result.stdout.strip() == name
    else:
        assert "not supported" in result.stderr
        assert result.stdout.strip() in gncpu.supported_isas()


@pytest.mark.smoke
def test_build_info():
    info = gncpu.build_info()
    assert info["openmp"] == gncpu.openmp_enabled()
    assert info["active_isa"] == gncpu.isa()
    assert "scalar" in info["compiled_isas"]
    assert isinstance(info["compiler"], str) and isinstance(info["flags"], str)


def test_group_norm_module(rng):
    layer = gncpu.GroupNorm(4, 8)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    np.testing.assert_array_equal(layer.weight, np.ones(8))
    np.testing.assert_array_equal(layer.bias, np.zeros(8))
    layer.weight[:] = rng.uniform(0.5, 1.5, 8)
    layer.bias[:] = rng.standard_normal(8)
    x = random_input(rng, (2, 8, 6, 6))
    expected = reference.group_norm(x, 4, layer.weight, layer.bias, 1e-5)
    assert max_error(layer(x), expected) <= TOLERANCE[np.float32]
    out = np.empty_like(x)
    assert layer(x, out=out) is out
    assert max_error(layer(x.astype(np.float64)), expected) <= TOLERANCE[np.float64]
    assert "GroupNorm(4, 8" in repr(layer)


def test_group_norm_module_without_affine(rng):
    layer = gncpu.GroupNorm(2, 6, eps=1e-3, affine=False)
    assert layer.weight is None and layer.bias is None
    x = random_input(rng, (3, 6, 5))
    assert max_error(layer(x), reference.group_norm(x, 2, eps=1e-3)) <= TOLERANCE[np.float32]


@pytest.mark.parametrize("args,error", [
    ((3, 8), ValueError), ((0, 8), ValueError), ((4, -8), ValueError),
    ((4.0, 8), TypeError), ((4, "8"), TypeError),
])
def test_group_norm_module_rejects(args, error):
    with pytest.raises(error):
        gncpu.GroupNorm(*args)
    with pytest.raises(ValueError):
        gncpu.GroupNorm(2, 4, eps=-1.0)


def test_group_norm_module_checks_channels(rng):
    layer = gncpu.GroupNorm(2, 8, affine=False)
    with pytest.raises(ValueError, match="8 channels"):
        layer(random_input(rng, (2, 4, 3)))


def test_python_dash_m():
    result = subprocess.run([sys.executable, "-m", "gncpu"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for text in ["active ISA", "OpenMP", "threads", "ok", "copy (floor)", "GB/s"]:
        assert text in result.stdout


@pytest.mark.parametrize("value,note", [
    ("5000", "using 4096"),
    ("lots", "not a thread count"),
    ("-3", "not a positive thread count"),
    ("9" * 100_000, "using 4096"),
])
def test_omp_num_threads_never_breaks_the_import(value, note):
    import os
    code = "import gncpu; print(gncpu.get_num_threads(), gncpu.build_info()['environment_notes'])"
    env = dict(os.environ, OMP_NUM_THREADS=value)
    result = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert note in result.stdout and note in result.stderr
    assert len(result.stderr) < 2000  # a huge value is not echoed in full
    threads = int(result.stdout.split()[0])
    assert 1 <= threads <= 4096


def test_gncpu_isa_warning_names_the_users_import_and_stays_short():
    import os
    env = dict(os.environ, GNCPU_ISA="x" * 100_000)
    result = subprocess.run([sys.executable, "-W", "always", "-c", "import gncpu"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "not supported" in result.stderr and len(result.stderr) < 2000
    assert "<string>:1" in result.stderr  # the warning points at `import gncpu`, not into gncpu


def test_module_flags_must_be_bools():
    with pytest.raises(TypeError, match="affine"):
        gncpu.GroupNorm(2, 8, affine="no")
    with pytest.raises(TypeError, match="channels_last"):
        gncpu.GroupNorm(2, 8, channels_last=1)


def test_python_dash_m_flags_a_busy_machine():
    from gncpu.__main__ import contention_signs
    assert contention_signs(2, 1e-3, 2e-4, 1.1, 0.3, 2)  # one thread beat the team
    assert contention_signs(1, 1e-3, None, 3.0, 0.3, 2)  # repeats vary 3x
    assert contention_signs(2, 1e-3, 2e-3, 1.1, 4.0, 2)  # load 4 on 2 CPUs
    assert not contention_signs(2, 1e-3, 1.8e-3, 1.1, 0.3, 2)


def test_help_shows_the_real_docstrings():
    """help() and IDEs read the functions' own docstrings, not the stubs."""
    doc = gncpu.group_norm.__doc__
    assert "num_groups" in doc and "channels_last" in doc and ".pyi" not in doc
    for name in ("set_num_threads", "set_isa", "build_info", "set_output_cache_limit"):
        assert getattr(gncpu, name).__doc__, name
    assert gncpu.GroupNorm.__doc__ and gncpu.reference.group_norm.__doc__


@pytest.mark.smoke
def test_build_info_names_the_compiler_and_its_version():
    compiler = gncpu.build_info()["compiler"]
    assert compiler == "msvc" or (compiler != "unix" and any(c.isdigit() for c in compiler)), compiler


@pytest.mark.smoke
def test_build_info_reports_the_cache_sizes_behind_the_schedule():
    info = gncpu.build_info()
    assert info["l2_cache_bytes"] >= 128 << 10 and info["l3_cache_bytes"] >= 1 << 20
    assert info["cache_budget_bytes"] == info["l2_cache_bytes"] // 2
    assert info["streaming_threshold_bytes"] == min(info["l3_cache_bytes"], 64 << 20)


def test_module_with_more_channels_than_memory_raises_value_error():
    """(Found by the property tests under ASan: NumPy's MemoryError escaped.)"""
    with pytest.raises(ValueError, match="too large"):
        gncpu.GroupNorm(1, 2**50)
