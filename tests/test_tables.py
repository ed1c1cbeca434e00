"""One table per fact: the C API's codes as _core exports them agree with the
C header, with the Cython declarations, with the type stubs' literals and
with gncpu.torch.  The header and the .pxd are read where the source tree is
beside the tests (CI's step 1); elsewhere only the installed tables are
compared with each other."""

import re
import typing
from pathlib import Path

import pytest

import gncpu
from gncpu import _core, _types

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "cpp" / "include" / "gncpu" / "gncpu.h"
PXD = ROOT / "src" / "gncpu" / "_capi.pxd"
ISA_LIST = ROOT / "cpp" / "src" / "isa_list.h"

needs_source = pytest.mark.skipif(not HEADER.exists(), reason="no source tree beside the tests")


def header_enum(name):
    """{enumerator: value} of `typedef enum name {...}` in gncpu.h."""
    body = re.search(r"typedef enum %s \{(.*?)\}" % name, HEADER.read_text(), re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    return {k: int(v) for k, v in re.findall(r"(GNCPU_\w+)\s*=\s*(\d+)", body)}


def header_list(macro):
    """[(ID, name)] of the X-macro list `#define macro(X) X(ID, name) ...`."""
    lines = re.search(r"#define %s\(X\)((?:[^\n]*\\\n)*[^\n]*)" % macro,
                      HEADER.read_text()).group(1)
    return re.findall(r"X\((\w+), (\w+)\)", lines)


def pxd_enum(name):
    """The enumerators _capi.pxd declares for `ctypedef enum name`."""
    body = re.search(r"ctypedef enum %s:\n((?:        \w+\n)+)" % name, PXD.read_text()).group(1)
    return set(body.split())


@needs_source
@pytest.mark.parametrize("enum,listed", [
    ("gncpu_status", None), ("gncpu_layout", None),
    ("gncpu_dtype", "GNCPU_DTYPE_NAMES"), ("gncpu_activation", "GNCPU_ACTIVATION_NAMES")])
def test_cython_declares_only_what_the_header_has(enum, listed):
    if listed is None:
        declared = set(header_enum(enum))
    else:
        prefix = "GNCPU_ACT_" if enum == "gncpu_activation" else "GNCPU_"
        declared = {prefix + id_ for id_, _ in header_list(listed)}
        declared.add(prefix.rstrip("_") + "_COUNT" if enum == "gncpu_activation"
                     else "GNCPU_DTYPE_COUNT")
    assert pxd_enum(enum) <= declared


@needs_source
def test_dtype_codes_are_the_headers():
    listed = header_list("GNCPU_DTYPE_NAMES")
    assert _core.DTYPE_CODES == {name: code for code, (_, name) in enumerate(listed)}
    assert [f"GNCPU_{id_}" for id_, _ in listed] == [
        f"GNCPU_{n}" for n in ("F32", "F64", "F16", "BF16")]  # the ABI's values


@needs_source
def test_layout_codes_are_the_headers():
    values = header_enum("gncpu_layout")
    assert len(_core.LAYOUT_CODES) == values["GNCPU_LAYOUT_COUNT"]
    assert _core.LAYOUT_CODES == {"nchw": values["GNCPU_NCHW"], "nhwc": values["GNCPU_NHWC"]}


@needs_source
def test_activation_names_are_the_headers():
    listed = header_list("GNCPU_ACTIVATION_NAMES")
    assert listed[0] == ("NONE", "none")
    assert _core.ACTIVATION_NAMES == tuple(name for _, name in listed[1:])
    assert [id_ for id_, _ in listed[:4]] == ["NONE", "SILU", "RELU", "GELU"]  # the ABI's values


@needs_source
def test_isa_names_are_the_isa_lists():
    names = re.findall(r"^ +X\([A-Z0-9_]+, (\w+),", ISA_LIST.read_text(), re.M)
    assert tuple(names) == typing.get_args(_types.IsaName)


def test_parameter_type_is_double_only_for_float64():
    assert _core.PARAMETER_DTYPES == {
        code: "float64" if name == "float64" else "float32"
        for name, code in _core.DTYPE_CODES.items()}


def test_the_stubs_literals_are_the_tables():
    assert typing.get_args(_types.ActivationName) == _core.ACTIVATION_NAMES
    assert set(gncpu.compiled_isas()) <= set(typing.get_args(_types.IsaName))


def test_gncpu_torch_reads_the_tables():
    torch = pytest.importorskip("torch")
    from gncpu.torch import _activations, _checks

    assert {str(dtype).removeprefix("torch."): code
            for dtype, code in _checks.DTYPE_CODES.items()} == _core.DTYPE_CODES
    assert (_checks.NCHW, _checks.NHWC) == (_core.LAYOUT_CODES["nchw"], _core.LAYOUT_CODES["nhwc"])
    for dtype in _checks.DTYPE_CODES:
        expected = torch.float64 if dtype == torch.float64 else torch.float32
        assert _checks.param_dtype(dtype) == expected
    # torch's implementation of each activation: ONNX, forward AD, fusion
    assert tuple(_activations.ACTIVATIONS) == _core.ACTIVATION_NAMES
