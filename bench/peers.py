"""The peers bench/run.py times gncpu against: NumPy, PyTorch (eager and
torch.compile), ONNX Runtime, OpenVINO.

Each factory takes (config, x, groups, weight, bias), config being run.py's
BenchConfig (dtype, activation, channels_last, eps, threads, ...), and returns a
zero-argument callable producing the output as a NumPy array.  A factory
raises ImportError when its package is missing and Skip when the peer cannot
do the configuration (layout, dtype or activation); both are reported, not run.

With an activation each peer runs GroupNorm and then the activation, spelled as
a user of that library would: gncpu fuses it, the peers cannot, and that is
what the activation tables measure.  GELU is the erf form everywhere (PyTorch's
default, and what gncpu computes).
"""

import math

import numpy as np

ACTIVATIONS = ("silu", "relu", "gelu")


class Skip(Exception):
    """An implementation that cannot do this configuration (reported, not run)."""


def _numpy_activation(name):
    """The activation in the input's dtype, as a NumPy user writes it."""
    if name == "silu":
        return lambda v: v / (1.0 + np.exp(-v))
    if name == "relu":
        return lambda v: np.maximum(v, 0)
    if name == "gelu":
        try:  # NumPy has no erf; a Python-level math.erf loop would time the loop, not NumPy
            from scipy.special import erf
        except ImportError:
            raise Skip("gelu needs scipy.special.erf: NumPy has no erf") from None
        return lambda v: 0.5 * v * (1.0 + erf(v * (1.0 / math.sqrt(2.0))))
    raise Skip(f"no {name} here")


def make_numpy(config, x, groups, weight, bias):
    act = _numpy_activation(config.activation) if config.activation else None
    eps = config.eps
    if config.channels_last:
        grouped_shape = (x.shape[0], -1, groups, x.shape[-1] // groups)
        axes = (1, 3)
        w, b = weight, bias
    else:
        grouped_shape = (x.shape[0], groups, -1)
        axes = -1
        per_channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        w, b = weight.reshape(per_channel), bias.reshape(per_channel)

    def run():  # what a NumPy user writes, in x's dtype
        g = x.reshape(grouped_shape)
        mean = g.mean(axis=axes, keepdims=True)
        var = g.var(axis=axes, keepdims=True)
        y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape) * w + b
        return act(y) if act else y
    return run


def _torch_activation(name):
    import torch.nn.functional as F
    if name == "silu":  # in place, as a model's inference code would
        return lambda y: F.silu(y, inplace=True)
    if name == "relu":
        return lambda y: F.relu(y, inplace=True)
    if name == "gelu":  # approximate="none": the erf form; F.gelu has no in-place variant
        return F.gelu
    raise Skip(f"no {name} here")


def _torch_group_norm(config, x, groups, weight, bias, compile_it):
    import torch
    torch.set_num_threads(config.threads)
    act = _torch_activation(config.activation) if config.activation else None
    channels_last, eps = config.channels_last, config.eps
    bf16 = x.dtype.name == "bfloat16"
    tx = torch.from_numpy(x.view(np.int16)).view(torch.bfloat16) if bf16 else torch.from_numpy(x)
    if channels_last:  # an NCHW tensor in channels_last memory format, as PyTorch holds it
        tx = tx.permute(0, x.ndim - 1, *range(1, x.ndim - 1))
    tw, tb = (torch.from_numpy(a).to(tx.dtype) for a in (weight, bias))

    def forward(t):
        y = torch.nn.functional.group_norm(t, groups, tw, tb, eps)
        return act(y) if act else y

    # Inductor's generated C++ kernel, compiled on the first call (in setup).
    fn = torch.compile(forward, dynamic=False) if compile_it else forward

    def run():
        with torch.no_grad():
            y = fn(tx)
            if channels_last:
                y = y.permute(0, *range(2, x.ndim), 1)
            if bf16:
                return y.contiguous().view(torch.int16).numpy().view(x.dtype)
            return y.numpy()
    return run


def make_torch(config, x, groups, weight, bias):
    return _torch_group_norm(config, x, groups, weight, bias, compile_it=False)


def make_torch_compile(config, x, groups, weight, bias):
    return _torch_group_norm(config, x, groups, weight, bias, compile_it=True)


def _onnx_activation_nodes(name, helper, source, target):
    """The nodes ONNX exporters emit for the activation, source -> target."""
    if name == "silu":
        return [helper.make_node("Sigmoid", [source], ["S"]),
                helper.make_node("Mul", [source, "S"], [target])]
    if name == "relu":
        return [helper.make_node("Relu", [source], [target])]
    if name == "gelu":  # Gelu is in the default domain from opset 20; erf form by default
        return [helper.make_node("Gelu", [source], [target])]
    raise Skip(f"no {name} here")


def make_onnxruntime(config, x, groups, weight, bias):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    if config.channels_last or x.dtype not in (np.float32, np.float64):
        raise Skip("GroupNormalization is NCHW float32/float64 here")
    elem = TensorProto.FLOAT if x.dtype == np.float32 else TensorProto.DOUBLE
    act = config.activation
    nodes = [helper.make_node("GroupNormalization", ["X", "scale", "bias"],
                              ["G" if act else "Y"], epsilon=config.eps, num_groups=groups)]
    if act:
        nodes += _onnx_activation_nodes(act, helper, "G", "Y")
    graph = helper.make_graph(
        nodes, "gn",
        [helper.make_tensor_value_info("X", elem, list(x.shape))],
        [helper.make_tensor_value_info("Y", elem, list(x.shape))],
        initializer=[numpy_helper.from_array(weight, "scale"),
                     numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = min(model.ir_version, 10)
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.threads
    options.inter_op_num_threads = 1
    # No busy-waiting after a run, so it does not slow whatever runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
    except ort.capi.onnxruntime_pybind11_state.NotImplemented as exc:
        # e.g. Gelu in float64: the CPU provider has no double Erf kernel.
        raise Skip(str(exc).split(" : ")[-1]) from None
    _ = onnx  # imported to fail early when onnx is missing
    return lambda: session.run(None, {"X": x})[0]


def _openvino_activation(name, ops, node):
    if name == "silu":
        return ops.swish(node)
    if name == "relu":
        return ops.relu(node)
    if name == "gelu":
        return ops.gelu(node, approximation_mode="erf")
    raise Skip(f"no {name} here")


def make_openvino(config, x, groups, weight, bias):
    import openvino as ov
    import openvino.opset13 as ops

    if x.dtype != np.float32 or config.channels_last:
        raise Skip("run here in NCHW float32 only")
    data = ops.parameter(list(x.shape), ov.Type.f32, name="x")
    node = ops.group_normalization(data, ops.constant(weight), ops.constant(bias),
                                   num_groups=groups, epsilon=config.eps)
    if config.activation:
        node = _openvino_activation(config.activation, ops, node)
    model = ov.Model([node], [data], "gn")
    compiled = ov.Core().compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": config.threads})
    request = compiled.create_infer_request()

    def run():
        request.infer({0: x}, share_inputs=True)
        return request.get_output_tensor(0).data
    return run


PEERS = [  # (name, factory), in the order they are timed and printed
    ("numpy", make_numpy),
    ("torch", make_torch),
    ("torch.compile", make_torch_compile),
    ("onnxruntime", make_onnxruntime),
    ("openvino", make_openvino),
]
