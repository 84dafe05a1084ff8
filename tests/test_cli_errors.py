"""Bad input: one line naming the problem (and the node), exit code 2, no traceback."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .helpers import init, make_model, run_cli, tensor


def assert_one_line_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    errors = [ln for ln in lines if "error" in ln.lower()]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr  # progress lines may precede it
    assert "Traceback" not in proc.stderr
    assert errors[0].startswith("onnx-emit: error:")
    for n in needles:
        assert n in errors[0], errors[0]


def _relu_model():
    return make_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [tensor("x", ["N", 4])], [tensor("y", ["N", 4])])


def test_not_onnx(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not a model\n" * 10)
    assert_one_line_error(run_cli("inspect", bad), "not a valid ONNX model")


def test_truncated(tmp_path):
    model = make_model(
        [helper.make_node("Add", ["x", "w"], ["y"], name="add")],
        [tensor("x", [1, 256])],
        [tensor("y", [1, 256])],
        [init("w", np.ones((1, 256), np.float32))],
    )
    data = model.SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_cli("export", path, "-o", tmp_path / "out"), "cut.onnx")


def test_missing_file(tmp_path):
    assert_one_line_error(run_cli("verify", tmp_path / "nope.onnx"), "no such file")


def test_missing_external_data(tmp_path):
    model = make_model(
        [helper.make_node("Add", ["x", "w"], ["y"], name="add")],
        [tensor("x", [1, 4096])],
        [tensor("y", [1, 4096])],
        [init("w", np.ones((1, 4096), np.float32))],
    )
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext.weights", size_threshold=0)
    (tmp_path / "ext.weights").unlink()
    assert_one_line_error(run_cli("export", path, "-o", tmp_path / "out"), "ext.weights")


def test_unsupported_ops_all_named(tmp_path):
    model = make_model(
        [
            helper.make_node("Relu", ["x"], ["a"], name="ok"),
            helper.make_node("RegexFullMatch", ["s"], ["t"], name="regex", pattern="a+"),
            helper.make_node("MyOp", ["a"], ["y"], name="custom1", domain="my.domain"),
        ],
        [tensor("x", [2]), tensor("s", [2], onnx.TensorProto.STRING)],
        [tensor("y", [2]), tensor("t", [2], onnx.TensorProto.BOOL)],
    )
    model.opset_import[0].version = 20  # RegexFullMatch
    model.opset_import.append(helper.make_opsetid("my.domain", 1))
    path = tmp_path / "u.onnx"
    onnx.save(model, str(path))
    assert_one_line_error(run_cli("export", path, "-o", tmp_path / "out"), "regex")


def test_unsupported_op_lists_nodes(tmp_path):
    model = make_model(
        [helper.make_node("Relu", ["x"], ["a"], name="ok"), helper.make_node("MyOp", ["a"], ["y"], name="custom1", domain="my.domain")],
        [tensor("x", [2])],
        [tensor("y", [2])],
    )
    model.opset_import.append(helper.make_opsetid("my.domain", 1))
    path = tmp_path / "u.onnx"
    onnx.save(model, str(path))
    assert_one_line_error(run_cli("export", path, "-o", tmp_path / "out"), "MyOp", "custom1")
    proc = run_cli("inspect", path)
    assert proc.returncode == 0 and "UNSUPPORTED" in proc.stdout and "custom1" in proc.stdout


def test_unbound_symbolic_dim(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_relu_model(), str(path))
    assert_one_line_error(run_cli("export", path, "-o", tmp_path / "out"), "'N'", "--dim N=1", "--shape x=1x4")


def test_malformed_shape(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_relu_model(), str(path))
    for bad in ("x=1xAx4", "x", "=3", "x=0x4"):
        assert_one_line_error(run_cli("inspect", path, "--shape", bad), "--shape")
    assert_one_line_error(run_cli("inspect", path, "--shape", "nothere=1x4"), "'nothere'")
    assert_one_line_error(run_cli("inspect", path, "--shape", "x=2x5"), "axis 1")
    assert_one_line_error(run_cli("inspect", path, "--dim", "N=zero"), "--dim")


def test_bound_dims_work(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_relu_model(), str(path))
    for opt in (["--dim", "N=3"], ["--shape", "x=3x4"]):
        proc = run_cli("verify", path, *opt)
        assert proc.returncode == 0, proc.stderr
        assert "PASS" in proc.stdout


def test_bad_option(tmp_path):
    proc = run_cli("export", "--target", "nope", "x.onnx", "-o", tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_verify_with_inputs_file(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_relu_model(), str(path))
    feeds = tmp_path / "in.npz"
    np.savez(feeds, x=np.array([[-1, 2, -3, 4]], np.float32))
    proc = run_cli("verify", path, "--dim", "N=1", "--inputs", feeds)
    assert proc.returncode == 0 and "max abs err 0" in proc.stdout, proc.stdout + proc.stderr
    np.savez(feeds, x=np.zeros((1, 4), np.float64))
    assert_one_line_error(run_cli("verify", path, "--dim", "N=1", "--inputs", feeds), "expected dtype float32")
    (tmp_path / "bad.npz").write_text("nope")
    assert_one_line_error(run_cli("verify", path, "--dim", "N=1", "--inputs", tmp_path / "bad.npz"), "--inputs")


def test_inspect_reports_arena_and_ops(tmp_path):
    import json

    path = tmp_path / "m.onnx"
    onnx.save(_relu_model(), str(path))
    proc = run_cli("inspect", path, "--dim", "N=8", "--json")
    rep = json.loads(proc.stdout)
    assert rep["ops"] == {"Relu": 1} and rep["inputs"][0]["shape"] == [8, 4] and not rep["unsupported"]
    text = run_cli("inspect", path, "--dim", "N=8").stdout
    assert "arena" in text and "all ops supported" in text
