"""Resize (and Upsample) whose scales, sizes or roi are runtime values while the output shape is static
(declared by the model): the C computes the per-axis taps at run time, matches onnxruntime and the
onnx reference, agrees with the compile-time path (the same values as constants), and returns 1
(RuntimeError "error code 1") when the values imply another output shape -- never reading out of bounds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import emit

from .helpers import check_strict_c99, make_model, ort_run, tensor

F32, I64 = TensorProto.FLOAT, TensorProto.INT64
RNG = np.random.default_rng(7)


def f32(v) -> np.ndarray:
    return np.array(v, dtype=np.float32)


def i64(v) -> np.ndarray:
    return np.array(v, dtype=np.int64)


@dataclass
class Case:
    """One Resize node: `which` ("scales" or "sizes") and `roi` are runtime inputs; `good` holds value sets
    that give the declared output shape; `bad` one that does not; `ort` whether onnxruntime runs it."""

    name: str
    in_shape: list[int]
    out_shape: list[int]
    which: str
    good: list[np.ndarray]
    bad: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)
    roi: np.ndarray | None = None
    dtype: type = np.float32
    ort: bool = True

    def x(self) -> np.ndarray:
        v = RNG.standard_normal(self.in_shape) * 4
        if np.dtype(self.dtype).kind == "u":
            v = RNG.integers(0, 256, self.in_shape)
        elif np.dtype(self.dtype).kind == "i":
            v = RNG.integers(-1000, 1000, self.in_shape)
        return v.astype(self.dtype)


CASES = [
    Case(
        "linear",
        [1, 2, 4, 5],
        [1, 2, 8, 7],
        "scales",
        [f32([1, 1, 2, 1.5]), f32([1, 1, 2.1, 1.45])],  # not the nominal ratio, same output shape
        f32([1, 1, 2, 1.6]),
        {"mode": "linear"},
    ),
    Case(
        "linear_outer_axes",  # scales on the batch and channel axes that keep their length
        [2, 3, 4],
        [2, 3, 6],
        "scales",
        [f32([1.4, 1.3, 1.5])],
        f32([2, 1, 1.5]),
        {"mode": "linear"},
        ort=False,  # onnxruntime resizes only the inner axes in linear mode
    ),
    Case(
        "nearest_sizes",
        [1, 1, 3, 4],
        [1, 1, 7, 9],
        "sizes",
        [i64([1, 1, 7, 9])],
        i64([1, 1, 7, 8]),
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "round_prefer_ceil"},
    ),
    Case(
        "nearest_floor_down_int32",
        [2, 6, 7],
        [2, 4, 3],
        "scales",
        [f32([1, 0.7, 0.5])],
        f32([1, 0.7, 0.6]),
        {"mode": "nearest", "nearest_mode": "floor"},
        dtype=np.int32,
    ),
    Case(
        "cubic_align_corners",
        [1, 1, 4, 4],
        [1, 1, 3, 6],
        "scales",
        [f32([1, 1, 0.75, 1.5])],
        f32([1, 1, 1, 1.5]),
        {"mode": "cubic", "coordinate_transformation_mode": "align_corners"},
    ),
    Case(
        "cubic_align_corners_off_ratio",
        [1, 1, 4, 4],
        [1, 1, 3, 6],
        "scales",
        [f32([1, 1, 0.8, 1.5]), f32([1, 1, 0.76, 1.7])],
        f32([1, 1, 0.7, 1.5]),
        {"mode": "cubic", "coordinate_transformation_mode": "align_corners"},
        ort=False,  # the reference divides by scale * length - 1, onnxruntime by the output length - 1
    ),
    Case(
        "cubic_exclude_outside",
        [1, 2, 3, 5],
        [1, 2, 3, 12],
        "scales",
        [f32([1, 1, 1, 2.5])],
        f32([1, 1, 1, 2.7]),
        {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1},
    ),
    Case(
        "tf_crop_and_resize",
        [1, 1, 5, 6],
        [1, 1, 4, 3],
        "sizes",
        [i64([1, 1, 4, 3])],
        i64([1, 1, 3, 4]),
        {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": -7.0},
        roi=f32([0, 0, 0.2, -0.1, 1, 1, 0.9, 1.2]),
    ),
    Case(
        "keep_aspect_axes",
        [1, 1, 4, 6],
        [1, 1, 5, 8],
        "sizes",
        [i64([9, 5]), i64([8, 6])],  # w, h on axes [3, 2]; not_larger: scale 1.25 then 4/3
        i64([9, 6]),
        {"mode": "nearest", "axes": [3, 2], "keep_aspect_ratio_policy": "not_larger"},
    ),
    Case(
        "linear_antialias",
        [1, 1, 8, 9],
        [1, 1, 3, 4],
        "scales",
        [f32([1, 1, 0.4, 0.45]), f32([1, 1, 0.375, 0.5])],
        f32([1, 1, 0.5, 0.45]),
        {"mode": "linear", "antialias": 1},
    ),
    Case(
        "cubic_antialias_sizes",
        [1, 1, 9, 7],
        [1, 1, 4, 3],
        "sizes",
        [i64([1, 1, 4, 3])],
        i64([1, 1, 4, 4]),
        {"mode": "cubic", "antialias": 1},
    ),
    Case(
        "uint8_linear_symmetric",
        [1, 2, 5, 3],
        [1, 2, 7, 7],
        "scales",
        [f32([1, 1, 1.5, 2.4])],
        f32([1, 1, 1.5, 2.3]),
        {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"},
        dtype=np.uint8,
        ort=False,  # integer rounding differs between onnxruntime and the reference
    ),
    Case(
        "pytorch_half_pixel_to_one",
        [1, 1, 4, 5],
        [1, 1, 1, 3],
        "sizes",
        [i64([1, 1, 1, 3])],
        i64([1, 1, 2, 3]),
        {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
        ort=False,  # the reference maps a length-1 axis to -0.5, onnxruntime and the spec to 0
    ),
]
N_SETS = max(len(c.good) for c in CASES)
X = {c.name: c.x() for c in CASES}


def _node(c: Case, consts: bool) -> tuple[list, list, list]:
    """(nodes, inputs, initializers) of one case; the runtime inputs become initializers if `consts`."""
    n = c.name
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(c.dtype))
    roi = f"{n}_roi" if c.roi is not None else ""
    ins = [f"{n}_x", roi, f"{n}_v" if c.which == "scales" else "", f"{n}_v" if c.which == "sizes" else ""]
    while not ins[-1]:
        ins.pop()
    node = helper.make_node("Resize", ins, [f"{n}_y"], **c.attrs)
    inputs, inits = [tensor(f"{n}_x", c.in_shape, elem)], []
    runtime = [(f"{n}_v", c.good[0])] + ([(roi, c.roi)] if c.roi is not None else [])
    for name, v in runtime:
        if consts:
            inits.append(numpy_helper.from_array(v, name))
        else:
            inputs.append(tensor(name, list(v.shape), helper.np_dtype_to_tensor_dtype(v.dtype)))
    return [node], inputs, inits


def _model(cases: list[Case], consts: bool = False) -> onnx.ModelProto:
    nodes, inputs, inits = [], [], []
    for c in cases:
        nd, i, it = _node(c, consts)
        nodes += nd
        inputs += i
        inits += it
    outputs = [tensor(f"{c.name}_y", c.out_shape, helper.np_dtype_to_tensor_dtype(np.dtype(c.dtype))) for c in cases]
    return make_model(nodes, inputs, outputs, inits, opset=19)


def _feeds(c: Case, k: int, value: np.ndarray | None = None) -> dict:
    f = {f"{c.name}_x": X[c.name], f"{c.name}_v": c.good[min(k, len(c.good) - 1)] if value is None else value}
    if c.roi is not None:
        f[f"{c.name}_roi"] = c.roi
    return f


def feeds(k: int, bad: str | None = None) -> dict:
    out: dict = {}
    for c in CASES:
        out.update(_feeds(c, k, c.bad if c.name == bad else None))
    return out


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("resize_runtime")
    emit.export(_model(CASES), target="native", out=out, name="rsr")
    return emit.load(out)


@pytest.fixture(scope="module")
def compiled_const(tmp_path_factory):
    out = tmp_path_factory.mktemp("resize_const")
    emit.export(_model(CASES, consts=True), target="native", out=out, name="rsc")
    return emit.load(out)


def _close(got: np.ndarray, ref: np.ndarray, name: str) -> None:
    assert got.shape == ref.shape and got.dtype == ref.dtype, name
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, err_msg=name)
    else:  # integer outputs may differ by one where the reference rounds and we truncate
        assert np.abs(got.astype(np.int64) - ref.astype(np.int64)).max(initial=0) <= 1, name


@pytest.mark.parametrize("k", range(N_SETS))
def test_matches_onnxruntime(compiled, k):
    cases = [c for c in CASES if c.ort]
    f = feeds(k)
    got = compiled.run(f)
    for c in cases:
        sub = _model([c])
        ref = ort_run(sub, _feeds(c, k))[0]
        _close(got[f"{c.name}_y"], ref, c.name)


@pytest.mark.parametrize("k", range(N_SETS))
def test_matches_onnx_reference(compiled, k):
    got = compiled.run(feeds(k))
    for c in CASES:
        ref = ReferenceEvaluator(_model([c])).run(None, _feeds(c, k))[0]
        _close(got[f"{c.name}_y"], ref, c.name)


def test_runtime_path_equals_compile_time_path(compiled, compiled_const):
    got = compiled.run(feeds(0))
    const = compiled_const.run({f"{c.name}_x": X[c.name] for c in CASES})
    for c in CASES:
        name = f"{c.name}_y"
        if got[name].dtype.kind == "f":
            np.testing.assert_allclose(got[name], const[name], rtol=1e-6, atol=1e-6, err_msg=c.name)
        else:  # merged edge weights may move an integer result across a truncation boundary
            assert np.abs(got[name].astype(np.int64) - const[name].astype(np.int64)).max() <= 1, c.name


@pytest.mark.parametrize("case", [c.name for c in CASES if c.bad is not None])
def test_disagreeing_values_return_error(compiled, case):
    with pytest.raises(RuntimeError, match="error code 1"):
        compiled.run(feeds(0, bad=case))


@pytest.mark.parametrize("value", [-2.0, 0.0, np.nan, np.inf, 1e-30])
def test_absurd_scales_return_error(compiled, value):
    f = feeds(0)
    f["linear_antialias_v"] = f32([1, 1, value, 0.45])
    with pytest.raises(RuntimeError, match="error code 1"):
        compiled.run(f)


@pytest.mark.parametrize("roi", [[0, 0, np.nan, np.inf, 1, 1, -np.inf, 1e30], [0, 0, -1e9, 5e8, 1, 1, 1e9, -3]])
def test_absurd_roi_does_not_crash(compiled, roi):
    f = feeds(0)
    f["tf_crop_and_resize_roi"] = f32(roi)
    y = compiled.run(f)["tf_crop_and_resize_y"]
    assert y.shape == (1, 1, 4, 3)


def test_runtime_roi_with_constant_scales(tmp_path):
    node = helper.make_node(
        "Resize",
        ["x", "roi", "s"],
        ["y"],
        mode="cubic",
        coordinate_transformation_mode="tf_crop_and_resize",
        extrapolation_value=2.5,
    )
    model = make_model(
        [node],
        [tensor("x", [1, 1, 4, 5]), tensor("roi", [8])],
        [tensor("y", [1, 1, 7, 4])],
        [numpy_helper.from_array(f32([1, 1, 1.75, 0.8]), "s")],  # exact ratios: onnxruntime divides by the output length
        opset=19,
    )
    emit.export(model, target="native", out=tmp_path, name="roi")
    m = emit.load(tmp_path)
    x = RNG.standard_normal((1, 1, 4, 5)).astype(np.float32)
    for roi in ([0, 0, 0.1, 0.2, 1, 1, 0.8, 0.9], [0, 0, -0.3, 0.5, 1, 1, 1.4, 0.6], [0, 0, 0, 0, 1, 1, 1, 1]):
        f = {"x": x, "roi": f32(roi)}
        got = m.run(f)["y"]
        np.testing.assert_allclose(got, ort_run(model, f)[0], rtol=1e-5, atol=1e-5, err_msg=str(roi))
        np.testing.assert_allclose(got, ReferenceEvaluator(model).run(None, f)[0], rtol=1e-5, atol=1e-5, err_msg=str(roi))


def test_upsample_with_runtime_scales(tmp_path):
    # opset 9: the importer upgrades Upsample to Resize (asymmetric, legacy nearest rounding)
    nodes = [
        helper.make_node("Upsample", ["x", "s"], ["n"], mode="nearest"),
        helper.make_node("Upsample", ["x", "s"], ["l"], mode="linear"),
    ]
    model = make_model(
        nodes, [tensor("x", [1, 2, 3, 4]), tensor("s", [4])], [tensor("n", [1, 2, 7, 6]), tensor("l", [1, 2, 7, 6])], opset=9
    )
    emit.export(model, target="native", out=tmp_path, name="ups")
    m = emit.load(tmp_path)
    x = RNG.standard_normal((1, 2, 3, 4)).astype(np.float32)
    for s in ([1, 1, 2.5, 1.5], [1, 1, 2.4, 1.7]):
        f = {"x": x, "s": f32(s)}
        got = m.run(f)
        for name, ref in zip(("n", "l"), ort_run(model, f)):
            np.testing.assert_allclose(got[name], ref, rtol=1e-5, atol=1e-5, err_msg=f"{name} {s}")
    with pytest.raises(RuntimeError, match="error code 1"):
        m.run({"x": x, "s": f32([1, 1, 2, 1.5])})


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_strict_c99(tmp_path, cc):
    check_strict_c99(_model(CASES), tmp_path, cc, "rsr")
