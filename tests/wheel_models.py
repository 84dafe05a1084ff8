"""Host side of the wheel tests (tests/test_pyodide.py, tests/test_wasmtime.py): the models they build, the job for
tests/wheel_cases.py, and the checks of its results against onnxruntime (or numpy for the dtype model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

import emit
from emit.runner import TensorSpec
from emit.verify import compare, run_onnxruntime, sample_inputs

from .helpers import REPO, init, make_model, tensor

DIGITS = REPO / "examples" / "digits" / "digits_cnn.onnx"
CASES = Path(__file__).resolve().parent / "wheel_cases.py"
TABLE = np.arange(12, dtype=np.float32).reshape(4, 3)
INT_DTYPES = {"float64": TensorProto.DOUBLE, "int8": TensorProto.INT8, "int16": TensorProto.INT16, "int32": TensorProto.INT32,
              "int64": TensorProto.INT64, "uint8": TensorProto.UINT8, "uint16": TensorProto.UINT16,
              "uint32": TensorProto.UINT32, "uint64": TensorProto.UINT64}


def dtypes_model() -> onnx.ModelProto:
    """Every supported dtype in and out: y = table[idx] (float32, and a runtime index check), out_T = in_T + in_T,
    out_bool = not in_bool."""
    nodes = [helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)]
    ins, outs = [tensor("idx", [2], TensorProto.INT64)], [tensor("y", [2, 3])]
    for d, elem in INT_DTYPES.items():
        nodes.append(helper.make_node("Add", [f"in_{d}", f"in_{d}"], [f"out_{d}"]))
        ins.append(tensor(f"in_{d}", [2, 2], elem))
        outs.append(tensor(f"out_{d}", [2, 2], elem))
    nodes.append(helper.make_node("Not", ["in_bool"], ["out_bool"]))
    ins.append(tensor("in_bool", [3], TensorProto.BOOL))
    outs.append(tensor("out_bool", [3], TensorProto.BOOL))
    return make_model(nodes, ins, outs, [init("table", TABLE)])


def dtypes_feeds() -> dict[str, np.ndarray]:
    """Values at the edges of each type (wrap-around on the doubling for the integers, as in C and numpy)."""
    feeds = {"idx": np.array([3, -4], np.int64)}
    for d in INT_DTYPES:
        dt = np.dtype(d)
        if dt.kind == "f":
            feeds[f"in_{d}"] = np.array([[1.5, -2.25], [1e300, 3.0]], dt)
        else:
            info = np.iinfo(dt)
            feeds[f"in_{d}"] = np.array([[info.min, info.max], [1, info.max // 3]], dt)
    feeds["in_bool"] = np.array([True, False, True])
    return feeds


def dtypes_expected(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {"y": TABLE[feeds["idx"]]}
    with np.errstate(over="ignore"):
        for d in INT_DTYPES:
            out[f"out_{d}"] = feeds[f"in_{d}"] + feeds[f"in_{d}"]
    out["out_bool"] = ~feeds["in_bool"]
    return out


def export_wheel(model, out: Path, **kw) -> dict:
    return emit.export(model, target="pyodide", out=out, **kw)


def real_model(model_id: str, out: Path, **kw) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Export a zoo model for pyodide (kw: export's options); (manifest, inputs, onnxruntime's outputs)."""
    from emit.models_zoo import fetch, get_entry

    path = fetch(model_id)
    shapes = {k: v[0] for k, v in get_entry(model_id).input_shapes.items()}
    info = export_wheel(path, out, shapes=shapes, **kw)
    feeds = sample_inputs([TensorSpec(t["name"], t["dtype"], tuple(t["shape"])) for t in info["inputs"]], seed=0)
    return info, feeds, run_onnxruntime(str(path), feeds)


def digits(out: Path, n: int = 16) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    x = np.load(REPO / "examples" / "digits" / "samples.npz")["x"][:n]
    info = export_wheel(DIGITS, out, dims={"N": len(x)})
    return info, {"x": x}, run_onnxruntime(str(DIGITS), {"x": x})


def model_job(info: dict, feeds: dict[str, np.ndarray], modes: list[str], bad: bool = False, extra_bad: dict | None = None) -> dict:
    return {"package": info["pyodide"]["package"], "feeds": {k: np.asarray(v).ravel().tolist() for k, v in feeds.items()},
            "modes": modes, "bad": bad, "extra_bad": extra_bad or {}}


def write_job(path: Path, jobs: list[dict]) -> Path:
    path.write_text(json.dumps({"models": jobs}))
    return path


def as_numpy(desc: dict, dtype: str, shape) -> np.ndarray:
    return np.array(desc["values"], dtype=dtype).reshape(shape)


def check_runs(res: dict, info: dict, ref: dict[str, np.ndarray], exact: bool = False) -> None:
    """Every mode's outputs: shaped per the manifest and within verify's tolerance of `ref` (exact for `exact`)."""
    assert res["runs"], "no runs"
    for mode, outs in [*res["runs"].items(), *([("after", res["after"])] if "after" in res else [])]:
        assert list(outs) == [t["name"] for t in info["outputs"]], mode
        for t in info["outputs"]:
            d = outs[t["name"]]
            assert d["shape"] == t["shape"] and d["dtype"] == t["dtype"], (mode, t["name"], d["shape"], d["dtype"])
            if d["type"] != "ndarray":
                assert d["type"] == "Tensor" and d["base"] and d["nested_ok"], (mode, d["type"])
                assert d["nested_shape"] == t["shape"][: len(d["nested_shape"])] and len(d["nested_shape"]) == len(t["shape"])
            got = as_numpy(d, t["dtype"], t["shape"])
            if exact:
                np.testing.assert_array_equal(got, ref[t["name"]], err_msg=f"{mode} {t['name']}")
            else:
                r = compare(t["name"], got, ref[t["name"]], rtol=1e-4, atol=0.0)
                assert r.ok, f"{mode} {t['name']}: max abs err {r.max_abs:.3g}, max |ref| {r.ref_max:.3g}"


DTYPES_EXTRA_BAD = {
    "index_out_of_range": {"idx": [1, 4]},
    "uint8_overflow": {"in_uint8": [300, 0, 0, 0]},
    "float_for_int32": {"in_int32": [1.5, 0, 0, 0]},
    "bool_two": {"in_bool": [2, 0, 1]},
    "bool_strings": {"in_bool": ["yes", "no", "yes"]},
}


def check_bad_messages(bad: dict, size: int, shape: list[int]) -> None:
    """The digits model's bad inputs (first input 'x', float32): one clear line naming the input each."""
    s = ", ".join(map(str, shape))
    assert bad["short"] == f"ValueError: input 'x': expected {size} elements (shape [{s}]), got {size - 1}"
    assert bad["long"] == f"ValueError: input 'x': expected {size} elements (shape [{s}]), got {size + 1}"
    assert bad["wrong_dtype_array"] == "ValueError: input 'x': expected dtype float32, got float64 (array.array 'd')"
    assert bad["strings"] == "TypeError: input 'x': expected numbers for float32, got str at index 0"
    assert bad["nested_wrong_shape"] == f"ValueError: input 'x': expected shape [{s}], got [1, {size}]"
    assert bad["ragged"] == f"ValueError: input 'x': ragged nested list at depth 1 (length {size} and length 1)"
    assert bad["none"] == "TypeError: input 'x': expected a list, array.array, memoryview or numpy array of float32, got NoneType"
    assert bad["bytes"] == "ValueError: input 'x': expected dtype float32, got uint8 (bytes format 'B')"
    assert bad["unknown"] == "ValueError: unknown input 'nope' (inputs: x)"
    assert bad["missing"] == "ValueError: missing input 'x' (expected x)"
    assert bad["too_many_positional"] == "ValueError: model takes 1 input(s) (x), got 2"


def check_dtypes_bad(bad: dict) -> None:
    assert bad["index_out_of_range"].startswith("RuntimeError: model returned error code 1: an input value was out of range")
    assert bad["uint8_overflow"] == "ValueError: input 'in_uint8': value 300 at index 0 is out of range for uint8"
    assert bad["float_for_int32"] == "TypeError: input 'in_int32': expected integers for int32, got float at index 0"
    assert bad["bool_two"] == "ValueError: input 'in_bool': bool values must be True/False or 0/1, got 2 at index 0"
    assert bad["bool_strings"] == "TypeError: input 'in_bool': expected booleans for bool, got str at index 0"
