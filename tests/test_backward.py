"""gncpu.group_norm_backward against the float64 oracle
(gncpu.reference.group_norm_backward), on every supported ISA.

The oracle is fed the statistics the kernel is fed: those gncpu.group_norm
returned (float32, float64 for float64 x), cast to float64.  dx, dweight and
dbias are each held to BACKWARD_RTOL of their largest magnitude; 16-bit dx to
one ulp of the oracle rounded to its format (see assert_dx_matches)."""

import numpy as np
import pytest

import gncpu
from gncpu import _core, reference

from conftest import (BACKWARD_RTOL, assert_within_one_ulp, max_error, ml_dtypes, random_affine,
                      random_input)

ACTIVATIONS = [None, "silu", "relu", "gelu"]
AFFINES = [(True, True), (True, False), (False, True), (False, False)]  # weight, bias given
DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)]
if ml_dtypes is not None:  # else the bfloat16 cases are left out
    DTYPES.append(np.dtype(ml_dtypes.bfloat16))
LAYOUTS = {False: "nchw", True: "channels_last"}


def param_dtype(dtype):
    """The dtype of the statistics, dweight and dbias for x of this dtype."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def make_problem(rng, shape, groups, dtype, *, use_weight=True, use_bias=True,
                 channels_last=False, activation=None, mean=0.0, std=1.0):
    """The arguments of a backward call: x and grad_out of ``dtype`` (shape
    is NCHW; channels_last moves C to the end), weight and bias of the
    parameter dtype (or None), and the statistics gncpu.group_norm returned."""
    channels = shape[1]
    if channels_last:
        shape = (shape[0],) + tuple(shape[2:]) + (channels,)
    x = random_input(rng, shape, dtype, mean=mean, std=std)
    grad_out = random_input(rng, shape, dtype)
    weight, bias = random_affine(rng, channels, param_dtype(dtype))
    weight = weight if use_weight else None
    bias = bias if use_bias else None
    _, stats_mean, stats_rstd = gncpu.group_norm(x, groups, weight, bias, activation=activation,
                                                 return_stats=True, channels_last=channels_last)
    return dict(grad_out=grad_out, x=x, mean=stats_mean, rstd=stats_rstd, num_groups=groups,
                weight=weight, bias=bias, activation=activation, channels_last=channels_last)


def oracle(problem):
    return reference.group_norm_backward(**problem)


def backward(problem, **kwargs):
    return gncpu.group_norm_backward(**problem, **kwargs)


def assert_dx_matches(dx, expected, dtype, scale=None):
    """float32/float64 within BACKWARD_RTOL of ``scale``, by default dx's
    largest magnitude.  16-bit: each value within one ulp of the oracle
    rounded to the format (the kernel computes in float32 and rounds once:
    half an ulp, or the neighbour where float32's error crosses a rounding
    midpoint), and where values are so small that float32's error is larger
    than their ulp, within that error: BACKWARD_RTOL[float32] of the scale,
    as dx is a difference of terms of that size."""
    assert dx.dtype == dtype and dx.shape == expected.shape
    if scale is None:
        scale = float(np.max(np.abs(expected), initial=0.0))
    if dtype.itemsize == 2:
        assert_within_one_ulp(dx, expected, floor=BACKWARD_RTOL[np.float32] * scale)
    else:
        error = max_error(dx, expected) / scale if scale > 0 else max_error(dx, expected)
        assert error <= BACKWARD_RTOL[dtype.type], f"dx: {error:.3g} of {scale:.3g}"


# The largest |act'(z)|: GELU's, 1.129 at z = 2.4 (SiLU's is 1.100).
MAX_SLOPE = 1.13


def term_sizes(problem):
    """Upper bounds on the size of the terms each gradient is made of, with
    |act'| <= MAX_SLOPE: dx's largest rstd * |weight * dz|, and for dweight
    and dbias the largest root sum of squares of a channel's dz * x_hat and
    dz.  Where the terms cancel (a single channel's sum, a group of one or
    two values), rounding errors are relative to these, not to the result;
    elsewhere the result's largest magnitude is at least about as large."""
    x, channels_last = problem["x"], problem["channels_last"]
    channel_axis = x.ndim - 1 if channels_last else 1
    per_channel = [1] * x.ndim
    per_channel[channel_axis] = -1
    weight = 1.0 if problem["weight"] is None else np.abs(problem["weight"]).reshape(per_channel)
    grad_out = np.abs(problem["grad_out"].astype(np.float64)) * MAX_SLOPE
    groups = problem["num_groups"]
    x_hat = reference.group_norm(x, groups, channels_last=channels_last)  # near enough
    rstd = np.repeat(problem["rstd"].astype(np.float64), x.shape[channel_axis] // groups, axis=1)
    rstd = np.moveaxis(rstd.reshape(rstd.shape + (1,) * (x.ndim - 2)), 1, channel_axis)
    summed = tuple(a for a in range(x.ndim) if a != channel_axis)

    def largest_root_sum_square(terms):
        return float(np.sqrt(np.max(np.sum(terms * terms, axis=summed), initial=0.0)))

    return dict(dx=float(np.max(rstd * weight * grad_out, initial=0.0)),
                dweight=largest_root_sum_square(grad_out * x_hat),
                dbias=largest_root_sum_square(grad_out))


def assert_param_grad_matches(grad, expected, dtype, name, term_size):
    """Within BACKWARD_RTOL of the gradient's largest magnitude, or of its
    terms' size where the sums cancel below it."""
    if expected is None:
        assert grad is None, f"d{name} should be None without a {name}"
        return
    assert grad.dtype == param_dtype(dtype) and grad.shape == expected.shape, name
    scale = max(float(np.max(np.abs(expected), initial=0.0)), term_size)
    error = max_error(grad, expected) / scale if scale > 0 else max_error(grad, expected)
    bound = BACKWARD_RTOL[param_dtype(dtype).type]
    assert error <= bound, f"d{name}: {error:.3g} of {scale:.3g}"


def assert_matches_oracle(grads, problem, dx_of_terms=False):
    """grads against the oracle's; dx_of_terms: dx's error relative to its
    terms' size (term_sizes) rather than to its largest magnitude."""
    dtype = problem["x"].dtype
    expected = oracle(problem)
    sizes = term_sizes(problem)
    assert isinstance(grads, tuple) and len(grads) == 3
    assert_dx_matches(grads[0], expected[0], dtype, sizes["dx"] if dx_of_terms else None)
    assert_param_grad_matches(grads[1], expected[1], dtype, "weight", sizes["dweight"])
    assert_param_grad_matches(grads[2], expected[2], dtype, "bias", sizes["dbias"])


def same_bits(a, b):
    if a is None or b is None:
        return a is b
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
        np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


SHAPES = [  # NCHW shape, groups
    ((2, 32, 8, 8), 8),
    ((1, 1, 5, 5), 1),          # C = 1
    ((2, 24, 7, 7), 24),        # G = C (instance norm), C not a multiple of 16
    ((3, 40, 3, 5, 7), 1),      # G = 1 (layer norm), 3-D spatial, N = 3
    ((2, 40, 1, 1), 8),         # spatial 1
    ((2, 6, 33), 3),            # 1-D spatial
    ((4, 10), 2),               # no spatial dims
    ((1, 8, 1025), 2),          # rows past the vector widths' multiples
]


# pytest -m smoke takes the rotating cases of these two shapes: between them
# every dtype meets both layouts, and they cover every activation and affine.
SMOKE_SHAPES = {0, 7}


def _rotating_cases():
    """Every shape with every dtype.  Activation, affine and layout rotate so
    that each dtype and each shape meets every activation, affine and layout
    (test_every_activation_and_affine crosses those three fully)."""
    cases = []
    for j, (shape, groups) in enumerate(SHAPES):
        for d, dtype in enumerate(DTYPES):
            activation = ACTIVATIONS[(j + d) % 4]
            use_weight, use_bias = AFFINES[(j + 2 * d) % 4]
            channels_last = bool((j // 2 + d) % 2)
            cases.append(pytest.param(shape, groups, dtype, activation, use_weight, use_bias,
                                      channels_last,
                                      marks=[pytest.mark.smoke] if j in SMOKE_SHAPES else [],
                                      id=f"{shape}-{groups}-{dtype.name}-{activation}-"
                                         f"w{use_weight:d}b{use_bias:d}-{LAYOUTS[channels_last]}"))
    return cases


@pytest.mark.parametrize("shape,groups,dtype,activation,use_weight,use_bias,channels_last",
                         _rotating_cases())
def test_matches_oracle(isa, rng, shape, groups, dtype, activation, use_weight, use_bias,
                        channels_last):
    problem = make_problem(rng, shape, groups, dtype, use_weight=use_weight, use_bias=use_bias,
                           channels_last=channels_last, activation=activation)
    assert_matches_oracle(backward(problem), problem)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,groups", [((3, 8), 8), ((4, 10), 5), ((2, 6, 1), 3),
                                          ((2, 40, 1, 1), 40)])
def test_groups_of_one_or_two_values(isa, rng, shape, groups, dtype):
    """A group of one value normalises to 0 whatever x, and one of two to
    +-sqrt(var / (var + eps)), nearly +-1: dx is 0, or eps / (var + eps) of
    the terms it is the difference of, which are what float32's error is
    relative to."""
    problem = make_problem(rng, shape, groups, dtype, activation="gelu")
    assert_matches_oracle(backward(problem), problem, dx_of_terms=True)


@pytest.mark.parametrize("channels_last", [False, True], ids=LAYOUTS.get)
@pytest.mark.parametrize("use_weight,use_bias", AFFINES, ids=["affine", "weight", "bias", "none"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_and_affine(isa, rng, activation, use_weight, use_bias, channels_last):
    problem = make_problem(rng, (2, 24, 6, 5), 6, np.dtype(np.float32), use_weight=use_weight,
                           use_bias=use_bias, channels_last=channels_last, activation=activation)
    assert_matches_oracle(backward(problem), problem)


@pytest.mark.parametrize("channels_last", [False, True], ids=LAYOUTS.get)
@pytest.mark.parametrize("activation", ["silu", "relu", "gelu"])
def test_activation_tails(isa, rng, activation, channels_last):
    """Pre-activations out to +-30, where SiLU's and GELU's derivatives
    saturate (exp and erf far from their centre)."""
    problem = make_problem(rng, (2, 16, 9, 7), 4, np.dtype(np.float32),
                           channels_last=channels_last, activation=activation)
    problem["weight"] = np.full(16, 4.0, np.float32)
    problem["bias"] = np.linspace(-20.0, 20.0, 16, dtype=np.float32)
    assert_matches_oracle(backward(problem), problem)


# |mean| up to 1e4 std: x - mean must not lose the digits that x_hat needs.
@pytest.mark.parametrize("channels_last", [False, True], ids=LAYOUTS.get)
@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64)], ids=str)
@pytest.mark.parametrize("mean,std", [(1e4, 1.0), (-1e4, 1e-2), (1e3, 1.0), (1e-3, 1e-7)])
def test_offset_does_not_grow_the_error(isa, rng, mean, std, dtype, channels_last):
    """Against the oracle given the group's exact mean: the kernel corrects
    the rounded mean it is handed by the residual it measures (issue #22;
    tests/test_backward_offset.py goes to 1e6 std)."""
    problem = make_problem(rng, (2, 32, 12, 12), 8, dtype, channels_last=channels_last,
                           activation="silu", mean=mean, std=std)
    got = backward(problem)
    # The truth on x - mean (exact: every value is within a factor 2 of it),
    # with its exact mean: a shift does not change GroupNorm's gradient, and
    # float64 values near 1e4 could not hold their mean finer than 1e-12.
    shifted = problem["x"].astype(np.float64) - mean
    _, exact_mean, _ = reference.group_norm(shifted, 8, return_stats=True,
                                            channels_last=channels_last)
    truth = dict(problem, x=shifted, mean=exact_mean)
    expected = oracle(truth)
    dtype = problem["x"].dtype
    sizes = term_sizes(problem)
    assert_dx_matches(got[0], expected[0], dtype)
    assert_param_grad_matches(got[1], expected[1], dtype, "weight", sizes["dweight"])
    assert_param_grad_matches(got[2], expected[2], dtype, "bias", sizes["dbias"])


@pytest.mark.parametrize("channels_last", [False, True], ids=LAYOUTS.get)
@pytest.mark.parametrize("dtype", [pytest.param(d, marks=pytest.mark.smoke) if d == np.float32
                                   else d for d in DTYPES], ids=str)
def test_schedules_and_thread_counts_give_the_same_bits(isa, schedule, restore_threads, rng,
                                                        dtype, channels_last):
    """Under every scheduling path (the split one cuts these groups across
    threads, the streaming one writes dx with non-temporal stores) and any
    thread count, bitwise the result of the default path on one thread."""
    problem = make_problem(rng, (3, 32, 20, 18), 4, dtype, channels_last=channels_last,
                           activation="gelu")
    results = {}
    for threads in (1, 2, 3, 5):
        gncpu.set_num_threads(threads)
        results[threads] = backward(problem)
    assert_matches_oracle(results[1], problem)
    _core._set_tuning(0, 0, 0)  # the default path, as the fixture leaves it
    gncpu.set_num_threads(1)
    expected = backward(problem)
    for threads, grads in results.items():
        for name, got, want in zip(("dx", "dweight", "dbias"), grads, expected):
            assert same_bits(got, want), f"{name}: {schedule}, {threads} threads"


@pytest.mark.parametrize("channels_last", [False, True], ids=LAYOUTS.get)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_out_and_in_place(isa, rng, dtype, channels_last):
    problem = make_problem(rng, (2, 16, 10, 9), 4, dtype, channels_last=channels_last,
                           activation="silu")
    expected = backward(problem)
    assert_matches_oracle(expected, problem)
    out = np.empty_like(problem["x"])
    grads = backward(problem, out=out)
    assert grads[0] is out
    for got, want in zip(grads, expected):
        assert same_bits(got, want)
    for in_place in ("grad_out", "x"):
        arguments = dict(problem, **{in_place: problem[in_place].copy()})
        grads = backward(arguments, out=arguments[in_place])
        assert grads[0] is arguments[in_place], in_place
        for got, want in zip(grads, expected):
            assert same_bits(got, want), in_place


def test_misaligned_out(rng):
    problem = make_problem(rng, (2, 8, 15, 15), 4, np.dtype(np.float32), activation="relu")
    expected = backward(problem)
    raw = np.zeros(problem["x"].nbytes + 1, dtype=np.uint8)
    out = raw[1:].view(np.float32).reshape(problem["x"].shape)
    assert not out.flags.aligned
    grads = backward(problem, out=out)
    assert grads[0] is out
    assert same_bits(np.array(out), expected[0])


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float16)], ids=str)
def test_nchw_view_of_channels_last_data(isa, rng, dtype):
    """x and grad_out of NCHW shape in channels-last memory, or only one of
    them: the gradients of the NCHW problem, dx of x's shape."""
    nhwc = make_problem(rng, (2, 16, 6, 7), 4, dtype, channels_last=True, activation="gelu")
    views = {name: np.moveaxis(nhwc[name], -1, 1) for name in ("x", "grad_out")}
    nchw = dict(nhwc, channels_last=False, **{k: v.copy() for k, v in views.items()})
    expected = backward(nchw)
    assert_matches_oracle(expected, nchw)
    for viewed in (("x", "grad_out"), ("x",), ("grad_out",)):
        grads = backward(dict(nchw, **{name: views[name] for name in viewed}))
        assert grads[0].shape == nchw["x"].shape, viewed
        assert_matches_oracle(grads, nchw)


def test_strided_and_byte_swapped_inputs(rng):
    problem = make_problem(rng, (2, 8, 10, 12), 4, np.dtype(np.float32), activation="silu")
    expected = backward(problem)
    variants = {
        "fortran x": dict(x=np.asfortranarray(problem["x"])),
        "byte-swapped": dict(x=problem["x"].astype(">f4"),
                             grad_out=problem["grad_out"].astype(">f4")),
        "sliced": dict(x=np.repeat(problem["x"], 2, axis=-1)[..., ::2],
                       grad_out=np.repeat(problem["grad_out"], 2, axis=-1)[..., ::2]),
        "strided statistics": dict(mean=np.repeat(problem["mean"], 2, axis=0)[::2]),
    }
    for name, changes in variants.items():
        grads = backward(dict(problem, **changes))
        for got, want in zip(grads, expected):
            assert same_bits(got, want), name


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_statistics_are_converted_to_the_parameter_dtype(rng, dtype):
    """Statistics of another dtype (or a list) are cast to the parameter
    dtype: the same bits as passing the cast values."""
    problem = make_problem(rng, (2, 8, 5, 6), 4, dtype, activation="relu")
    other = np.float32 if param_dtype(dtype) == np.float64 else np.float64
    for convert in (lambda a: a.astype(other), lambda a: a.tolist()):
        given = dict(problem, mean=convert(problem["mean"]), rstd=convert(problem["rstd"]))
        cast = {k: np.asarray(given[k]).astype(param_dtype(dtype)) for k in ("mean", "rstd")}
        expected = backward(dict(problem, **cast))
        for got, want in zip(backward(given), expected):
            assert same_bits(got, want)


def test_inputs_are_not_modified(isa, rng):
    problem = make_problem(rng, (2, 8, 12, 12), 2, np.dtype(np.float32), activation="gelu")
    arrays = {k: v for k, v in problem.items() if isinstance(v, np.ndarray)}
    copies = {k: v.copy() for k, v in arrays.items()}
    backward(problem)
    for name, before in copies.items():
        assert same_bits(arrays[name], before), f"{name} was modified"


@pytest.mark.parametrize("channels_last", [False, True], ids=LAYOUTS.get)
@pytest.mark.parametrize("shape,groups", [((0, 8, 4, 4), 4), ((2, 8, 0, 4), 4), ((2, 8, 0), 2),
                                          ((2, 0, 5), 1)])
def test_empty_inputs(shape, groups, channels_last):
    for dtype in DTYPES:
        problem = make_problem(np.random.default_rng(0), shape, groups, dtype,
                               channels_last=channels_last, activation="silu")
        dx, dweight, dbias = backward(problem)
        assert dx.shape == problem["x"].shape and dx.dtype == dtype
        for grad in (dweight, dbias):
            assert grad.dtype == param_dtype(dtype)
            np.testing.assert_array_equal(grad, np.zeros(shape[1]))


# ----------------------------------------------------------- bad arguments

SENTINEL = -7.25


def good_problem():
    return make_problem(np.random.default_rng(0), (2, 8, 4, 4), 4, np.dtype(np.float32),
                        activation="silu")


@pytest.mark.smoke
@pytest.mark.parametrize("changes,error,match", [
    (dict(num_groups=3), ValueError, "divide"),
    (dict(num_groups=0), ValueError, "positive"),
    (dict(num_groups=2.0), TypeError, "integer"),
    (dict(num_groups=True), TypeError, "bool"),
    (dict(num_groups=None), TypeError, "integer"),
    (dict(activation="swish"), ValueError, "activation"),
    (dict(activation=1), TypeError, "activation"),
    (dict(channels_last="yes"), TypeError, "channels_last"),
    (dict(grad_out=np.ones((2, 8, 16), np.float32)), ValueError, "grad_out"),
    (dict(grad_out=np.ones((2, 8, 4, 4), np.float64)), TypeError, "grad_out"),
    (dict(grad_out=np.ones((2, 8, 4, 4), np.int32)), TypeError, "grad_out"),
    (dict(x=np.ones((2, 8, 4, 4), np.int32)), TypeError, "floating-point"),
    (dict(mean=np.zeros(2, np.float32)), ValueError, "mean"),
    (dict(mean=np.zeros((2, 8), np.float32)), ValueError, "mean"),
    (dict(rstd=np.ones((4, 2), np.float32)), ValueError, "rstd"),
    (dict(rstd=np.ones((2, 4), complex)), TypeError, "rstd"),
    (dict(weight=np.ones(7, np.float32)), ValueError, "weight"),
    (dict(bias=np.zeros((8, 1))), ValueError, "bias"),
    (dict(weight=np.ones(8, complex)), TypeError, "weight"),
])
def test_bad_arguments(changes, error, match):
    """The forward's errors; nothing written into out or, in place, grad_out."""
    problem = dict(good_problem(), **changes)
    out = np.full((2, 8, 4, 4), SENTINEL, np.float32)
    with pytest.raises(error, match=match):
        backward(problem, out=out)
    assert np.all(out == SENTINEL), "an error path wrote into out"
    grad_out = problem["grad_out"]
    if grad_out.shape == out.shape and grad_out.dtype == out.dtype:
        before = grad_out.copy()
        with pytest.raises(error, match=match):
            backward(problem, out=grad_out)
        np.testing.assert_array_equal(grad_out, before, err_msg="an error path wrote in place")


def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.smoke
@pytest.mark.parametrize("out,error,match", [
    (np.full((2, 8, 16), SENTINEL, np.float32), ValueError, "shape"),
    (np.full((2, 8, 4, 4), SENTINEL, np.float64), TypeError, "dtype"),
    (np.full((2, 8, 4, 4), SENTINEL, np.float16), TypeError, "dtype"),
    (np.asfortranarray(np.full((2, 8, 4, 4), SENTINEL, np.float32)), ValueError, "C-contiguous"),
    (np.full((2, 8, 4, 8), SENTINEL, np.float32)[..., ::2], ValueError, "C-contiguous"),
    (_read_only(np.full((2, 8, 4, 4), SENTINEL, np.float32)), ValueError, "read-only"),
])
def test_bad_out(out, error, match):
    problem = good_problem()
    grad_out = problem["grad_out"].copy()
    with pytest.raises(error, match=match):
        backward(problem, out=out)
    assert np.all(out == SENTINEL), "an error path wrote into out"
    np.testing.assert_array_equal(problem["grad_out"], grad_out)


def test_out_that_is_not_an_array():
    with pytest.raises(TypeError, match="ndarray"):
        backward(good_problem(), out=[0.0] * 256)


def test_unknown_keyword():
    with pytest.raises(TypeError):
        backward(good_problem(), eps=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sums_past_float_range_take_the_exact_path(isa, schedule, dtype, activation, channels_last):
    """Gradients of 3e37 whose sums cancel: float32 lanes overflow (their
    partial sums reach 5e38), the exact answer is finite (dbias = dweight = 0,
    dx = +-3e37 * rstd).  The item goes to the double path and comes out
    right, whatever the schedule."""
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    n = 2048
    x = np.tile([1.0, -1.0], n // 2)
    grad = np.repeat([3e37, -3e37], n // 2)
    shape = (2, n, 1) if channels_last else (2, 1, n)
    x = np.broadcast_to(x.reshape((1, n, 1) if channels_last else (1, 1, n)), shape).astype(dtype)
    grad = np.broadcast_to(grad.reshape(x.shape[1:]), shape).astype(dtype)
    weight, bias = np.full(1, 0.5, np.float32), np.full(1, 2.0, np.float32)
    _, mean, rstd = gncpu.group_norm(x, 1, weight, bias, return_stats=True,
                                     channels_last=channels_last)
    dx, dweight, dbias = gncpu.group_norm_backward(grad, x, mean, rstd, 1, weight, bias,
                                                   activation=activation,
                                                   channels_last=channels_last)
    ex, ew, eb = reference.group_norm_backward(grad, x, mean, rstd, 1, weight, bias,
                                               activation=activation, channels_last=channels_last)
    assert np.all(np.isfinite(ex)) and np.all(np.isfinite(dx.astype(np.float64)))
    scale = float(np.max(np.abs(ex)))
    assert max_error(dx, ex) <= 1e-2 * scale  # (bfloat16: one ulp of 3e37)
    for got, want in ((dweight, ew), (dbias, eb)):
        assert np.all(np.isfinite(got))
        assert float(np.max(np.abs(got.astype(np.float64) - want))) <= 1e-5 * 3e37 * n
