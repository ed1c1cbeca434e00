# The backward pass's bindings (included by _core.pyx): the same pipeline as
# group_norm's, parse -> plan -> execute, onto gncpu_backward_problem.


cdef _raise_invalid_backward(gncpu_status status, const gncpu_backward_problem* b,
                             object shape=None):
    """The exception for a status of gncpu_check_backward_problem."""
    cdef gncpu_problem p
    p.batch, p.channels, p.spatial, p.num_groups = b.batch, b.channels, b.spatial, b.num_groups
    p.layout = b.layout
    if status == GNCPU_ERR_OVERLAP:
        raise ValueError("grad_weight and grad_bias overlap each other or grad_x")
    _raise_invalid(status, &p, None, shape)


cdef object _as_stats(object s, int64_t batch, int64_t groups, object dtype, str name):
    """mean/rstd as C-contiguous native (batch, groups) arrays of dtype: as
    group_norm(..., return_stats=True) returns them, without a copy."""
    cdef cnp.ndarray a
    if cnp.PyArray_Check(s):
        a = s
        if (a.dtype is dtype and a.ndim == 2 and a.shape[0] == batch and a.shape[1] == groups
                and cnp.PyArray_ISCARRAY_RO(a)):
            return a
    return _as_param_array(s, (batch, groups), dtype, name)


cdef class _BackwardCall:
    """One group_norm_backward call: its C problem and the arrays behind its pointers."""
    cdef gncpu_backward_problem problem
    cdef cnp.ndarray x, dy, dx, target
    cdef object weight, bias, mean, rstd, grad_weight, grad_bias, native, param_dtype
    cdef bint moved_axis

    cdef parse(self, object grad_out, object x, object mean, object rstd, object num_groups,
               object weight, object bias, object activation, object channels_last, object out):
        cdef gncpu_backward_problem* p = &self.problem
        cdef cnp.ndarray xa = _as_float_array(x)
        cdef cnp.ndarray dya = _as_float_array(grad_out, "grad_out")
        if _dtype_of(dya) != _dtype_of(xa):  # (byte order aside: a copy reads it)
            raise TypeError(f"grad_out must have x's dtype ({xa.dtype}), got {dya.dtype}")
        if (<object>dya).shape != (<object>xa).shape:
            raise ValueError(f"grad_out must have x's shape {(<object>xa).shape}, "
                             f"got {(<object>dya).shape}")
        cdef int ndim = xa.ndim
        if ndim < 2:
            raise ValueError(
                f"x must have shape (N, C, *spatial), got shape {(<object>xa).shape}")
        cdef bint nhwc = channels_last is not False and _as_flag(channels_last, "channels_last")
        if not nhwc and out is None and _has_channels_last_strides(xa):
            xa = np.moveaxis(xa, 1, -1)  # channels-last memory, read as it is
            dya = np.moveaxis(dya, 1, -1)  # (copied below unless it is too)
            nhwc = self.moved_axis = True
        cdef _Geometry g = _geometry(xa, nhwc, num_groups)
        p.dtype, p.layout, p.batch, p.channels = g.dtype, g.layout, g.batch, g.channels
        p.spatial, p.num_groups = g.spatial, g.num_groups
        self.param_dtype = _parameter_dtype(p.dtype)
        self.native = _native_dtype(xa, p.dtype)
        shape = (<object>xa).shape
        self.weight = _as_param(weight, p.channels, self.param_dtype, "weight", shape, nhwc)
        self.bias = _as_param(bias, p.channels, self.param_dtype, "bias", shape, nhwc)
        p.activation = _as_activation(activation)
        p.num_threads = _num_threads
        p.grad_y = p.x = p.mean = p.rstd = p.weight = p.bias = NULL
        p.grad_x = p.grad_weight = p.grad_bias = NULL
        cdef gncpu_status status = gncpu_check_backward_problem(p)
        if status != GNCPU_OK and status != GNCPU_ERR_NULL_POINTER:
            _raise_invalid_backward(status, p, shape)
        self.mean = _as_stats(mean, p.batch, p.num_groups, self.param_dtype, "mean")
        self.rstd = _as_stats(rstd, p.batch, p.num_groups, self.param_dtype, "rstd")
        self.x = xa
        self.dy = dya

    cdef cnp.ndarray _readable(self, cnp.ndarray a):
        """a as the kernel can read it beside dx: native and C-contiguous, and
        either dx itself (in place) or apart from it."""
        if not _is_native_c_array(a):
            return np.array(a, dtype=self.native, order="C", copy=True)
        if cnp.PyArray_DATA(a) != cnp.PyArray_DATA(self.dx) and _overlaps(a, self.dx):
            return a.copy()
        return a

    cdef plan(self, object out):
        cdef gncpu_backward_problem* p = &self.problem
        cdef cnp.ndarray xa = self.x
        if out is None:
            self.dx = _new_output(xa.ndim, xa.shape, _STORAGE_TYPENUM[<int>p.dtype])
            if self.dx.dtype is not self.native:  # (a storage type NumPy lacks)
                self.dx = self.dx.view(self.native)
        else:
            _check_out(out, xa, self.native)
            self.dx = out
            if not cnp.PyArray_ISALIGNED(self.dx):  # computed aside, then copied in
                self.target = self.dx
                self.dx = np.empty_like(out)
        self.x = self._readable(self.x)
        self.dy = self._readable(self.dy)
        p.x = cnp.PyArray_DATA(self.x)
        p.grad_y = cnp.PyArray_DATA(self.dy)
        p.grad_x = cnp.PyArray_DATA(self.dx)
        p.mean = cnp.PyArray_DATA(<cnp.ndarray>self.mean)
        p.rstd = cnp.PyArray_DATA(<cnp.ndarray>self.rstd)
        p.weight = NULL if self.weight is None else cnp.PyArray_DATA(<cnp.ndarray>self.weight)
        p.bias = NULL if self.bias is None else cnp.PyArray_DATA(<cnp.ndarray>self.bias)
        if self.weight is not None:
            self.grad_weight = np.empty(p.channels, self.param_dtype)
            p.grad_weight = cnp.PyArray_DATA(<cnp.ndarray>self.grad_weight)
        if self.bias is not None:
            self.grad_bias = np.empty(p.channels, self.param_dtype)
            p.grad_bias = cnp.PyArray_DATA(<cnp.ndarray>self.grad_bias)

    cdef object execute(self):
        cdef gncpu_status status
        if self.problem.batch * self.problem.channels * self.problem.spatial >= _RELEASE_GIL_ELEMENTS:
            with nogil:
                status = gncpu_group_norm_backward(&self.problem)
        else:
            status = gncpu_group_norm_backward(&self.problem)
        if status != GNCPU_OK:
            _raise_invalid_backward(status, &self.problem)
        cdef cnp.ndarray dx = self.dx
        if self.target is not None:
            self.target[...] = dx
            dx = self.target
        result = np.moveaxis(dx, -1, 1) if self.moved_axis else dx
        return result, self.grad_weight, self.grad_bias


def group_norm_backward(grad_out, x, mean, rstd, num_groups, weight=None, bias=None, *,
                        activation=None, channels_last=False, out=None):
    """The gradients of GroupNorm (and its fused activation): ``(dx, dweight,
    dbias)`` from ``grad_out``, the gradient of a loss with respect to
    ``group_norm(x, num_groups, weight, bias, activation=activation)``.

    mean, rstd: the statistics ``group_norm(..., return_stats=True)``
        returned, shape (N, num_groups); used as given (the forward's eps is
        in rstd).
    grad_out: x's shape and dtype.  16-bit values are computed in float32.
    weight, bias: as given to the forward (bias matters only with an
        activation).  dweight is None when weight is None, dbias when bias is.
    out: where dx goes (as group_norm's out=); ``out=grad_out`` or ``out=x``
        computes in place.
    channels_last: x and grad_out are (N, *spatial, C).

    With x^ = (x - mean) * rstd, z = x^ * weight + bias, dz = grad_out * act'(z),
    per example and group::

        dbias[c] = sum dz,  dweight[c] = sum dz * x^   (over examples and positions)
        dx = rstd * (weight[c] * dz - mean(weight * dz) - x^ * mean(weight * dz * x^))

    dweight and dbias have the statistics' dtype, dx has x's.  Results are
    bitwise the same for any thread count.  ValueError for values out of
    range, TypeError for wrong types; nothing is written when either is raised.
    """
    cdef _BackwardCall call = _BackwardCall.__new__(_BackwardCall)
    call.parse(grad_out, x, mean, rstd, num_groups, weight, bias, activation, channels_last, out)
    call.plan(out)
    return call.execute()


def _group_norm_backward_raw(int dtype, int layout, int64_t batch, int64_t channels,
                             int64_t spatial, num_groups, activation, size_t grad_y, size_t x,
                             size_t mean, size_t rstd, size_t weight=0, size_t bias=0,
                             size_t grad_x=0, size_t grad_weight=0, size_t grad_bias=0,
                             int num_threads=0):
    """group_norm_backward on memory given by address (see _group_norm_raw):
    statistics, weight, bias and the parameters' gradients of the parameter
    type.  With grad_y = x = 0 the values are only checked."""
    cdef gncpu_backward_problem p
    p.dtype = <gncpu_dtype>dtype
    p.layout = <gncpu_layout>layout
    p.batch = batch
    p.channels = channels
    p.spatial = spatial
    p.num_groups = _as_groups(num_groups, channels)
    p.activation = _as_activation(activation)
    p.grad_y = <const void*>grad_y
    p.x = <const void*>x
    p.mean = <const void*>mean
    p.rstd = <const void*>rstd
    p.weight = <const void*>weight
    p.bias = <const void*>bias
    p.grad_x = <void*>grad_x
    p.grad_weight = <void*>grad_weight
    p.grad_bias = <void*>grad_bias
    p.num_threads = _raw_threads(num_threads)
    cdef gncpu_status status = gncpu_check_backward_problem(&p)
    if status != GNCPU_OK:
        if status == GNCPU_ERR_NULL_POINTER and grad_y == 0 and x == 0:
            return
        _raise_invalid_backward(status, &p)
    if grad_y == 0 and x == 0:
        return
    if batch * channels * spatial >= _RELEASE_GIL_ELEMENTS:
        with nogil:
            status = gncpu_group_norm_backward(&p)
    else:
        status = gncpu_group_norm_backward(&p)
    if status != GNCPU_OK:
        _raise_invalid_backward(status, &p)
