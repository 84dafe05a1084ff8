"""The Python runner checks what the caller passes before any C runs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import emit

from .helpers import make_model, tensor


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    m = make_model(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Add", ["k", "k"], ["z"])],
        [tensor("x", [2, 3]), tensor("k", [4], TensorProto.INT64)],
        [tensor("y", [2, 3]), tensor("z", [4], TensorProto.INT64)],
    )
    out = tmp_path_factory.mktemp("runner")
    emit.export(m, target="native", out=out, name="runner")
    return emit.load(out)


def test_specs(model):
    assert [(s.name, s.dtype, s.shape) for s in model.inputs] == [("x", "float32", (2, 3)), ("k", "int64", (4,))]
    assert [s.name for s in model.outputs] == ["y", "z"]


def test_run_dict_positional_keywords(model):
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    k = np.arange(4, dtype=np.int64)
    for outs in (model.run({"x": x, "k": k}), model(x, k), model(x, k=k), model.run(x=x, k=k)):
        np.testing.assert_array_equal(outs["y"], np.maximum(x, 0))
        np.testing.assert_array_equal(outs["z"], 2 * k)
    outs = model.run({"x": x.tolist(), "k": [1, 2, 3, 4]})  # plain lists convert to the declared dtype
    np.testing.assert_array_equal(outs["z"], [2, 4, 6, 8])


@pytest.mark.parametrize(
    "feeds, needle",
    [
        ({"x": np.zeros((2, 3), np.float64), "k": np.zeros(4, np.int64)}, "input 'x': expected dtype float32, got float64"),
        ({"x": np.zeros((3, 2), np.float32), "k": np.zeros(4, np.int64)}, "input 'x': expected shape [2, 3], got [3, 2]"),
        ({"x": np.zeros((2, 3), np.float32)}, "missing input 'k'"),
        ({"x": np.zeros((2, 3), np.float32), "k": np.zeros(4, np.int32)}, "input 'k': expected dtype int64, got int32"),
        ({"x": np.zeros((2, 3), np.float32), "k": np.zeros(4, np.int64), "q": 1}, "unknown input 'q'"),
        ({"x": "hello", "k": np.zeros(4, np.int64)}, "input 'x'"),
        ({"x": np.zeros(6, np.float32), "k": np.zeros(4, np.int64)}, "expected shape [2, 3], got [6]"),
    ],
)
def test_bad_inputs_raise_value_error(model, feeds, needle):
    with pytest.raises(ValueError) as info:
        model.run(feeds)
    assert needle in str(info.value)


def test_non_contiguous_input_is_handled(model):
    big = np.arange(12, dtype=np.float32).reshape(2, 6) - 6
    x = big[:, ::2]  # a strided view: must be copied, not read past its end
    np.testing.assert_array_equal(model.run({"x": x, "k": np.zeros(4, np.int64)})["y"], np.maximum(x, 0))


def test_too_many_positional(model):
    with pytest.raises(ValueError, match="takes 2 input"):
        model(1, 2, 3)


def test_outputs_the_caller_holds_are_never_written_again(model):
    """An output array is reused by a later call only once nothing references it: not the caller, a view of it, the
    dict it came in, nor an input of that later call (a state fed back)."""
    x, k = np.arange(6, dtype=np.float32).reshape(2, 3) - 2, np.arange(4, dtype=np.int64)
    held = model.run(x, k)
    y_view = model.run(x, k)["y"][1:]
    z = model.run(x, k)["z"]
    before = (held["y"].copy(), y_view.copy(), z.copy())
    fed = model.run(x, k)["y"]
    again = model.run(fed * 0 + 5, z)  # an output as the next call's input
    model.run(-x, k + 1)
    for got, want in zip((held["y"], y_view, z), before):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(again["y"], np.full((2, 3), 5, np.float32))
    np.testing.assert_array_equal(again["z"], 2 * z)


def test_an_output_dropped_is_written_again_not_allocated(model):
    x, k = np.ones((2, 3), np.float32), np.zeros(4, np.int64)
    y = model.run(x, k)["y"]
    address = y.ctypes.data
    del y
    y = model.run(2 * x, k)["y"]
    assert y.ctypes.data == address  # a fresh 1 MB array costs ~1 ms of page faults a call
    np.testing.assert_array_equal(y, 2 * x)
