"""The wasm target's JS side in Node: loading from a path, bytes and a URL; bad input through the JS API gives a
TypeError naming the input (never a trap); a runtime index out of range is a RangeError; --no-simd builds run; the
generated C is warning-free under emcc in strict C99."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import emit

from .helpers import REPO, init, make_model, ort_run, tensor
from .wasm_node import require_node, run_in_node

DIGITS = REPO / "examples" / "digits" / "digits_cnn.onnx"

BAD_INPUT_SCRIPT = r"""
import { load } from "./model.mjs";
import { readFile } from "node:fs/promises";
const results = {};
const m = await load();
const tryRun = (label, feeds) => {
  try { m.run(feeds); results[label] = "no error"; }
  catch (e) { results[label] = `${e.name}: ${e.message}`; }
};
tryRun("short", { x: new Float32Array(63) });
tryRun("long", { x: new Float32Array(65) });
tryRun("float64", { x: new Float64Array(64) });
tryRun("int32", { x: new Int32Array(64) });
tryRun("strings", { x: Array(64).fill("a") });
tryRun("number", { x: 3 });
tryRun("missing", {});
tryRun("unknown", { x: new Float32Array(64), y: new Float32Array(1) });
tryRun("not-object", null);
// the module is still usable after all of that
const ok = m.run({ x: new Float32Array(64).fill(0.5) }).probs;
results.after = Array.from(ok);
results.fromPath = Array.from((await load("model.wasm")).run({ x: Array(64).fill(0.5) }).probs);
results.fromBytes = Array.from((await load(await readFile("model.wasm"))).run({ x: new Float32Array(64).fill(0.5) }).probs);
results.fromUrl = Array.from((await load(new URL("./model.wasm", import.meta.url))).run({ x: new Float32Array(64).fill(0.5) }).probs);
results.inputs = m.inputs; results.outputs = m.outputs;
console.log(JSON.stringify(results));
"""


def _node_script(folder, text: str) -> dict:
    node = require_node()
    (folder / "check.mjs").write_text(text)
    proc = subprocess.run([node, "check.mjs"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def digits_wasm(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits-wasm")
    emit.export(DIGITS, target="wasm", out=out, dims={"N": 1})
    return out


def test_bad_input_is_a_type_error_naming_the_input(digits_wasm):
    r = _node_script(digits_wasm, BAD_INPUT_SCRIPT)
    assert r["short"] == "TypeError: input 'x': expected 64 elements (shape [1,1,8,8]), got 63"
    assert r["long"] == "TypeError: input 'x': expected 64 elements (shape [1,1,8,8]), got 65"
    assert r["float64"] == "TypeError: input 'x': expected Float32Array (float32), got Float64Array"
    assert r["int32"] == "TypeError: input 'x': expected Float32Array (float32), got Int32Array"
    assert r["strings"] == "TypeError: input 'x': expected numbers for float32"
    assert r["number"] == "TypeError: input 'x': expected Float32Array (float32), got Number"
    assert r["missing"] == "TypeError: run(): missing input 'x'"
    assert r["unknown"] == "TypeError: run(): unknown input 'y' (inputs: x)"
    assert r["not-object"].startswith("TypeError: run(): expected an object {x}")
    ref = ort_run(DIGITS, {"x": np.full((1, 1, 8, 8), 0.5, np.float32)})[0][0]
    for key in ("after", "fromPath", "fromBytes", "fromUrl"):
        np.testing.assert_allclose(np.array(r[key], np.float32), ref, rtol=0, atol=1e-5)
    assert r["inputs"] == [{"name": "x", "dtype": "float32", "shape": [1, 1, 8, 8]}]
    assert r["outputs"] == [{"name": "probs", "dtype": "float32", "shape": [1, 10]}]


def test_runtime_index_out_of_range_is_a_range_error(tmp_path):
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    model = make_model(
        [onnx.helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)],
        [tensor("idx", [2], TensorProto.INT64)],
        [tensor("y", [2, 3])],
        [init("table", table)],
    )
    emit.export(model, target="wasm", out=tmp_path, name="gather")
    got, _ = run_in_node(tmp_path, {"idx": np.array([3, -4], np.int64)})
    np.testing.assert_array_equal(got["y"], table[[3, 0]])
    r = _node_script(tmp_path, """
import { load } from "./model.mjs";
const m = await load();
let msg = "no error";
try { m.run({ idx: new BigInt64Array([1n, 4n]) }); } catch (e) { msg = `${e.name}: ${e.message}`; }
console.log(JSON.stringify({ msg, after: Array.from(m.run({ idx: [2n, 0n] }).y) }));
""")
    assert r["msg"].startswith("RangeError: run(): the model returned error 1: an input value was out of range")
    assert r["after"] == [6, 7, 8, 0, 1, 2]


def test_no_simd_build_runs_and_matches(tmp_path):
    x = np.load(REPO / "examples" / "digits" / "samples.npz")["x"]
    info = emit.export(DIGITS, target="wasm", out=tmp_path, dims={"N": len(x)}, simd=False)
    assert info["wasm"]["simd"] is False
    got, _ = run_in_node(tmp_path, {"x": x})
    np.testing.assert_allclose(got["probs"], ort_run(DIGITS, {"x": x})[0], rtol=0, atol=1e-5)
    # no SIMD opcode prefix (0xfd) in the code section would be the strict check; the module must at least differ
    simd_out = tmp_path.parent / (tmp_path.name + "-simd")
    emit.export(DIGITS, target="wasm", out=simd_out, dims={"N": len(x)})
    assert (simd_out / "model.wasm").read_bytes() != (tmp_path / "model.wasm").read_bytes()


def test_generated_files(digits_wasm):
    names = {p.name for p in digits_wasm.iterdir()}
    assert {"model.wasm", "model.mjs", "model.d.ts", "index.html", "manifest.json"} <= names
    dts = (digits_wasm / "model.d.ts").read_text()
    assert '"x": Float32Array | number[];' in dts and '"probs": Float32Array;' in dts
    w = json.loads((digits_wasm / "manifest.json").read_text())["wasm"]
    assert w["code_bytes"] + w["data_bytes"] == w["wasm_bytes"] == (digits_wasm / "model.wasm").stat().st_size
    assert w["data_bytes"] >= 14632  # the weights are in the data section


@pytest.mark.parametrize("model_id", ["digits", "mtcnn_onet", "silero_vad_openvino_16k"])
def test_generated_c_is_strict_c99_under_emcc(model_id, tmp_path):
    from emit.models_zoo import fetch, get_entry

    emcc = shutil.which("emcc")
    if emcc is None:
        pytest.fail("emcc is missing: apt-get install emscripten")
    if model_id == "digits":
        emit.export(DIGITS, target="wasm", out=tmp_path, dims={"N": 1})
    else:
        shapes = {k: v[0] for k, v in get_entry(model_id).input_shapes.items()}
        emit.export(fetch(model_id), target="wasm", out=tmp_path, shapes=shapes)
    for src in sorted(tmp_path.glob("*.c")):
        proc = subprocess.run([emcc, "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O1", "-msimd128", "-c", src.name,
                               "-o", "/dev/null"], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, f"{src.name}: {proc.stderr[-2000:]}"


def test_verify_runs_the_wasm_build(tmp_path):
    from .helpers import run_cli

    proc = run_cli("verify", DIGITS, "--dim", "N=4", "--target", "wasm", "--rtol", "1e-4", "--atol", "0")
    assert proc.returncode == 0, proc.stderr
    assert "for wasm" in proc.stderr and proc.stdout.strip().endswith("PASS")
