"""String tensors (fixed 64-byte UTF-8 slots): StringConcat, StringSplit, StringNormalizer, Equal and
LabelEncoder on strings, built natively and compared with onnxruntime; bad inputs refused."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import emit
from emit.errors import EmitError


def _vi(name: str, dt: int, shape: list[int]):
    return h.make_tensor_value_info(name, dt, shape)


def _model(path, nodes, inputs, outputs, ml: bool = False):
    ops = [h.make_opsetid("", 20)] + ([h.make_opsetid("ai.onnx.ml", 4)] if ml else [])
    m = h.make_model(h.make_graph(nodes, "strings", inputs, outputs), opset_imports=ops)
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return str(path)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("strings")
    path = _model(
        d / "m.onnx",
        [
            h.make_node("StringConcat", ["a", "b"], ["c"]),
            h.make_node("Equal", ["a", "b"], ["eq"]),
            h.make_node("StringSplit", ["c"], ["parts", "count"], delimiter="."),
            h.make_node("StringSplit", ["a"], ["words", "nwords"], maxsplit=1),
            h.make_node("StringNormalizer", ["a"], ["norm"], case_change_action="UPPER", stopwords=["Skip me"], locale="C"),
            h.make_node("LabelEncoder", ["a"], ["label"], domain="ai.onnx.ml", keys_strings=["x y", "é", "a.b"], values_int64s=[7, 8, 9], default_int64=-5),
        ],
        [_vi("a", T.STRING, [4]), _vi("b", T.STRING, [1])],
        [
            _vi("c", T.STRING, [4]), _vi("eq", T.BOOL, [4]), _vi("parts", T.STRING, [4, 3]), _vi("count", T.INT64, [4]),
            _vi("words", T.STRING, [4, 2]), _vi("nwords", T.INT64, [4]), _vi("norm", T.STRING, [3]), _vi("label", T.INT64, [4]),
        ],
        ml=True,
    )  # fmt: skip
    out = d / "native"
    emit.export(path, "native", out)
    return path, emit.load(out)


A = np.array(["a.b", "  x y  z ", "é", "skip ME"], dtype=object)
B = np.array(["."], dtype=object)


def test_string_ops_match_onnxruntime(text_model):
    path, model = text_model
    got = model(A, B)
    ref = ort.InferenceSession(path).run(None, {"a": A, "b": B})
    names = ["c", "eq", "parts", "count", "words", "nwords", "norm", "label"]
    for name, r in zip(names, ref):
        g = got[name]
        assert g.shape == r.shape, name
        assert g.ravel().tolist() == r.ravel().tolist(), name
    assert got["label"].tolist() == [9, -5, 8, -5]
    assert got["norm"].tolist() == ["A.B", "  X Y  Z ", "é"]


def test_string_inputs_are_checked(text_model):
    _, model = text_model
    with pytest.raises(ValueError, match=r"input 'a': expected strings"):
        model(np.zeros(4, np.float32), B)
    with pytest.raises(ValueError, match=r"input 'a': string 1 is 70 bytes long; at most 63 fit"):
        model(np.array(["x", "y" * 70, "z", "w"], dtype=object), B)
    with pytest.raises(ValueError, match=r"input 'b': expected shape \[1\], got \[2\]"):
        model(A, np.array(["a", "b"], dtype=object))
    # data the compiled shapes cannot hold: the model returns an error instead of writing past a slot
    with pytest.raises(RuntimeError, match="string too long for its slot"):
        model(np.array(["x" * 63, "a", "b", "c"], dtype=object), B)  # the concatenation needs 64 bytes
    with pytest.raises(RuntimeError, match="error code 1"):
        model(np.array(["a.b.c.d", "a", "b", "c"], dtype=object), B)  # 5 parts, 3 compiled
    assert model(A, B)["label"].tolist() == [9, -5, 8, -5]  # still works afterwards


def test_string_models_are_refused_for_wasm(tmp_path, text_model):
    path, _ = text_model
    with pytest.raises(EmitError, match="string tensor 'a' is an input or output; strings cross the native runner only"):
        emit.export(path, "wasm", tmp_path / "w")


def test_other_ops_refuse_strings(tmp_path):
    path = _model(tmp_path / "m.onnx", [h.make_node("Transpose", ["a"], ["t"])], [_vi("a", T.STRING, [2, 3])], [_vi("t", T.STRING, [3, 2])])
    with pytest.raises(EmitError, match=r"node Transpose .*string tensors are supported only by"):
        emit.export(path, "c", tmp_path / "c")
