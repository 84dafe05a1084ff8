"""Real models with control flow: oww_hey_jarvis (openWakeWord's 'hey jarvis' head; its If runs a verifier MLP
when the first score reaches 0.5) passes `onnx-emit verify` natively and matches onnxruntime in wasm under Node,
at verify's tolerance (max abs err <= 1e-4 * max(1, max|ref|)), on inputs that take each branch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import emit
from emit.models_zoo import fetch, get_entry
from emit.verify import compare, run_onnxruntime

from .helpers import run_cli
from .wasm_node import run_in_node

MODEL = "oww_hey_jarvis"
CONDITION_SOURCE = "p1.1"  # the first head's score; the If takes its then_branch when it is >= 0.5


def _branch_inputs(path) -> dict[str, dict[str, np.ndarray]]:
    """One seeded input per branch of the model's If, found by asking onnxruntime for the score it tests."""
    import onnxruntime as ort

    model = onnx.load(str(path))
    model.graph.output.append(onnx.helper.make_tensor_value_info(CONDITION_SOURCE, onnx.TensorProto.FLOAT, [1, 1]))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (name, (shape, dtype)), = get_entry(MODEL).input_shapes.items()
    found: dict[str, dict[str, np.ndarray]] = {}
    rng = np.random.default_rng(0)
    for _ in range(500):
        x = (rng.standard_normal(shape) * rng.uniform(0.1, 30.0)).astype(dtype)
        score = float(sess.run([CONDITION_SOURCE], {name: x})[0].reshape(-1)[0])
        found.setdefault("then" if score >= 0.5 else "else", {name: x})
        if len(found) == 2:
            return found
    pytest.fail(f"no seeded input reaches both branches of {MODEL}'s If")


@pytest.fixture(scope="module")
def model_path():
    return fetch(MODEL)


@pytest.mark.parametrize("branch", ["then", "else"])
def test_oww_hey_jarvis_verify_native(model_path, branch, tmp_path):
    feeds = _branch_inputs(model_path)[branch]
    np.savez(tmp_path / "in.npz", **feeds)
    shape_args = []
    for name, (shape, _dtype) in get_entry(MODEL).input_shapes.items():
        shape_args += ["--shape", f"{name}={'x'.join(map(str, shape))}"]
    proc = run_cli("verify", model_path, *shape_args, "--inputs", tmp_path / "in.npz", "--rtol", "1e-4", "--atol", "0")
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-2000:]}"
    assert "PASS" in proc.stdout


def test_oww_hey_jarvis_in_wasm_matches_onnxruntime(model_path, tmp_path):
    shapes = {k: v[0] for k, v in get_entry(MODEL).input_shapes.items()}
    info = emit.export(model_path, target="wasm", out=tmp_path, shapes=shapes)
    for branch, feeds in _branch_inputs(model_path).items():
        got, _timing = run_in_node(tmp_path, feeds)
        ref = run_onnxruntime(str(model_path), feeds)
        for t in info["outputs"]:
            r = compare(t["name"], got[t["name"]], ref[t["name"]], rtol=1e-4, atol=0.0)
            assert r.ok, f"{branch} branch, output {t['name']}: max abs err {r.max_abs:.3g}, max |ref| {r.ref_max:.3g}"
