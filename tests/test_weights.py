"""Weight storage: embedded or a separate model.weights, stored as f32, f16 or per-channel int8; the blob's checks
(another model, truncated, corrupt, another dtype) natively, through wasmtime and through model.mjs in Node; a blob
swapped without rebuilding; strict C99 of every storage variant under gcc, clang and emcc."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import emit
from emit.errors import EmitError

from .helpers import REPO, ort_run, run_cli
from .test_c_folder import STRICT, need
from .wasm_node import require_node

DIGITS = REPO / "examples" / "digits" / "digits_cnn.onnx"
X = np.load(REPO / "examples" / "digits" / "samples.npz")["x"][:2]
# max |error| of the probabilities against onnxruntime, per storage dtype (measured: f16 ~5e-4, int8 ~5e-3)
TOLERANCE = {"f32": 1e-5, "f16": 3e-3, "int8": 3e-2}


def _export(tmp_path_factory, target: str, weights: str, dtype: str, model=DIGITS):
    out = tmp_path_factory.mktemp(f"{target}-{weights}-{dtype}")
    emit.export(model, target=target, out=out, dims={"N": 2}, name="digits", weights=weights, weight_dtype=dtype)
    return out


def _retrained_digits(tmp_path) -> tuple:
    """The digits model with other weights (same graph): what a retrained checkpoint gives."""
    m = onnx.load(DIGITS)
    rng = np.random.default_rng(7)
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32 and a.size > 1:
            t.CopyFrom(numpy_helper.from_array((a * rng.uniform(0.5, 1.5, a.shape)).astype(np.float32), t.name))
    path = tmp_path / "digits_retrained.onnx"
    onnx.save(m, path)
    return path, ort_run(path, {"x": X})[0]


@pytest.fixture(scope="module")
def ref():
    return ort_run(DIGITS, {"x": X})[0]


@pytest.mark.parametrize("weights", ["embed", "file"])
@pytest.mark.parametrize("dtype", ["f32", "f16", "int8"])
def test_native_storage_matches_onnxruntime(tmp_path_factory, ref, weights, dtype):
    out = _export(tmp_path_factory, "native", weights, dtype)
    info = json.loads((out / "manifest.json").read_text())
    got = emit.load(out).run(x=X)["probs"]
    err = float(np.abs(got - ref).max())
    assert err <= TOLERANCE[dtype], err
    assert (got.argmax(1) == ref.argmax(1)).all()
    f32_bytes = 14632 + 40 + 10 * 4  # the digits model's referenced weights stored as float32
    w = info["weights"]
    assert w["mode"] == weights and w["dtype"] == dtype
    if dtype == "f32":
        assert info["weight_bytes"] >= 14632 and w["narrowed"] == 0
    elif dtype == "f16":
        assert w["narrowed"] >= 2 and info["weight_bytes"] <= 0.55 * f32_bytes
    else:
        assert w["narrowed"] >= 2 and info["weight_bytes"] <= 0.35 * f32_bytes
    blob = out / "model.weights"
    if weights == "file":
        assert blob.stat().st_size == w["blob_bytes"] >= info["weight_bytes"] + 64
        assert (out / "model.c").stat().st_size < 20_000  # no literals: the weights are only in the blob
    else:
        assert not blob.exists()


def test_blob_swapped_without_rebuild(tmp_path_factory, tmp_path):
    """Another model.weights of the same graph loads into the built module and gives that model's outputs."""
    out = _export(tmp_path_factory, "native", "file", "f32")
    so = next(out.glob("*.so"))
    mtime = so.stat().st_mtime_ns
    retrained, ref2 = _retrained_digits(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    # the native target packs Conv weights for its GEMM: a blob for it is compiled the same way
    blob, layout = emit.api.weights_file(retrained, dims={"N": 2}, name="digits", pack_weights=True)
    assert layout == json.loads((out / "manifest.json").read_text())["weights"]["layout_hash"]
    (other / "model.weights").write_bytes(blob)
    m = emit.load(out, weights=other / "model.weights")
    np.testing.assert_allclose(m.run(x=X)["probs"], ref2, atol=1e-5)
    m.load_weights(out / "model.weights")
    np.testing.assert_allclose(m.run(x=X)["probs"], ort_run(DIGITS, {"x": X})[0], atol=1e-5)
    assert so.stat().st_mtime_ns == mtime


def _bad_blobs(out, tmp_path) -> dict[str, tuple[bytes, str]]:
    good = (out / "model.weights").read_bytes()
    corrupt = bytearray(good)
    corrupt[200] ^= 0x40
    other_dtype = tmp_path / "f16"
    emit.export(DIGITS, target="c", out=other_dtype, dims={"N": 2}, name="digits", weights="file", weight_dtype="f16")
    other_model = tmp_path / "mlp"
    g = onnx.helper
    mlp = g.make_model(g.make_graph(
        [g.make_node("MatMul", ["x", "w"], ["y"])], "digits",
        [g.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])], [g.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(np.ones((64, 10), np.float32), "w")]), opset_imports=[g.make_opsetid("", 17)])
    emit.export(mlp, target="c", out=other_model, name="digits", weights="file")
    return {
        "another model": ((other_model / "model.weights").read_bytes(), "for another model"),
        "another dtype": ((other_dtype / "model.weights").read_bytes(), "stores another dtype"),
        "truncated": (good[:-100], "truncated"),
        "header only": (good[:64], "truncated"),
        "too long": (good + b"\0" * 16, "wrong size"),
        "corrupt": (bytes(corrupt), "corrupt (checksum mismatch)"),
        "not a blob": (b"PK\3\4 this is a zip" * 10, "not an onnx-emit weights file"),
        "empty": (b"", "not an onnx-emit weights file"),
    }


@pytest.mark.parametrize("target", ["native", "wasm"])
def test_bad_blobs_are_refused_by_name(tmp_path_factory, tmp_path, ref, target):
    out = _export(tmp_path_factory, target, "file", "f32")
    m = emit.load(out)
    for label, (data, message) in _bad_blobs(out, tmp_path).items():
        with pytest.raises(EmitError, match=re.escape(message)):
            m.load_weights(data)
        with pytest.raises(RuntimeError, match="weights not loaded"):  # never runs on a rejected blob
            m.run(x=X)
        assert label
    m.load_weights(out / "model.weights")
    np.testing.assert_allclose(m.run(x=X)["probs"], ref, atol=1e-5)
    (tmp_path / "moved").mkdir()
    shutil.copy(out / "manifest.json", tmp_path / "moved")
    for f in out.iterdir():
        if f.suffix in (".so", ".wasm"):
            shutil.copy(f, tmp_path / "moved")
    with pytest.raises(EmitError, match="no such weights file"):
        emit.load(tmp_path / "moved")


@pytest.mark.parametrize("dtype", ["f16", "int8"])
def test_wasm_narrow_storage_matches_onnxruntime(tmp_path_factory, ref, dtype):
    out = _export(tmp_path_factory, "wasm", "embed", dtype)
    info = json.loads((out / "manifest.json").read_text())
    got = emit.load(out).run(x=X)["probs"]
    assert float(np.abs(got - ref).max()) <= TOLERANCE[dtype]
    f32 = _export(tmp_path_factory, "wasm", "embed", "f32")
    f32_data = json.loads((f32 / "manifest.json").read_text())["wasm"]["data_bytes"]
    assert info["wasm"]["data_bytes"] < (0.6 if dtype == "f16" else 0.4) * f32_data  # the .wasm shrinks


JS_SCRIPT = r"""
import { load } from "./model.mjs";
import { readFile } from "node:fs/promises";
const x = new Float32Array(JSON.parse(await readFile("x.json", "utf8")));
const r = {};
const m = await load();                                   // model.weights beside model.mjs
r.beside = Array.from(m.run({ x }).probs);
r.explicit = Array.from((await load({ wasm: "model.wasm", weights: "other.weights" })).run({ x }).probs);
for (const [label, file] of [["another model", "mlp.weights"], ["truncated", "truncated.weights"]]) {
  try { m.loadWeights(await readFile(file)); r[label] = "no error"; } catch (e) { r[label] = e.message; }
}
try { m.run({ x }); r.afterBad = "no error"; } catch (e) { r.afterBad = e.message; }
m.loadWeights(await readFile("model.weights"));
r.reloaded = Array.from(m.run({ x }).probs);
try { await load({ weights: "nothing-here.weights" }); r.missing = "no error"; } catch (e) { r.missing = e.message; }
console.log(JSON.stringify(r));
"""


def test_js_loader_fetches_and_swaps_weights(tmp_path_factory, tmp_path, ref):
    node = require_node()
    out = _export(tmp_path_factory, "wasm", "file", "int8")
    retrained, ref2 = _retrained_digits(tmp_path)
    other = tmp_path / "other"
    emit.export(retrained, target="c", out=other, dims={"N": 2}, name="digits", weights="file", weight_dtype="int8")
    shutil.copy(other / "model.weights", out / "other.weights")
    blobs = _bad_blobs(out, tmp_path)
    (out / "mlp.weights").write_bytes(blobs["another model"][0])
    (out / "truncated.weights").write_bytes(blobs["truncated"][0])
    (out / "x.json").write_text(json.dumps(X.ravel().tolist()))
    (out / "check.mjs").write_text(JS_SCRIPT)
    proc = subprocess.run([node, "check.mjs"], cwd=out, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert np.abs(np.array(r["beside"]).reshape(2, 10) - ref).max() <= TOLERANCE["int8"]
    assert np.abs(np.array(r["explicit"]).reshape(2, 10) - ref2).max() <= TOLERANCE["int8"]
    np.testing.assert_array_equal(r["reloaded"], r["beside"])
    assert r["another model"] == "loadWeights(): weights file stores another dtype than this build expects"  # an f32 blob
    assert r["truncated"] == "loadWeights(): weights file is truncated or has the wrong size"
    assert r["afterBad"] == "run(): weights not loaded: call loadWeights first"
    assert "nothing-here.weights" in r["missing"]


@pytest.mark.parametrize("weights,dtype", [("file", "int8"), ("embed", "f16"), ("file", "f16"), ("embed", "int8")])
@pytest.mark.parametrize("cc", ["gcc", "clang", "emcc"])
def test_storage_variants_are_strict_c99(tmp_path, weights, dtype, cc):
    need(cc, {"emcc": "emscripten"}.get(cc, cc))
    emit.export(DIGITS, target="c", out=tmp_path, dims={"N": 1}, name="digits", weights=weights, weight_dtype=dtype)
    srcs = sorted(p.name for p in tmp_path.glob("*.c"))
    assert "weights.c" in srcs
    extra = ["-msimd128"] if cc == "emcc" else []
    proc = subprocess.run([cc, *STRICT, *extra, "-c", *srcs], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_cli_storage_options_and_errors(tmp_path):
    proc = run_cli("export", DIGITS, "--dim", "N=1", "--weights", "file", "--weight-dtype", "f16", "-o", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert "in model.weights" in proc.stdout and "as f16" in proc.stdout
    proc = run_cli("export", DIGITS, "--dim", "N=1", "--weights", "file", "--target", "cortex-m4", "-o", tmp_path / "fw")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--weights file" in proc.stderr
    proc = run_cli("export", DIGITS, "--weight-dtype", "int4", "-o", tmp_path / "x")
    assert proc.returncode == 2 and "invalid choice: 'int4'" in proc.stderr
    proc = run_cli("inspect", DIGITS, "--dim", "N=1")
    assert proc.returncode == 0
    line = next(ln for ln in proc.stdout.splitlines() if "weight storage" in ln)
    sizes = {k: int(v.replace(",", "")) for k, v in re.findall(r"(f32|f16|int8) ([0-9,]+) bytes", line)}
    assert sizes["f16"] < 0.55 * sizes["f32"] and sizes["int8"] < 0.35 * sizes["f32"], line


@pytest.mark.parametrize("target", ["native", "wasm"])
def test_verify_reports_the_cost_of_narrow_storage(target):
    proc = run_cli("verify", DIGITS, "--dim", "N=4", "--weight-dtype", "int8", "--rtol", "0.05", "--target", target)
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"int8 weights cost: max abs err ([0-9.e+-]+) vs ([0-9.e+-]+) with f32 weights", proc.stdout)
    assert m, proc.stdout
    narrow, f32 = float(m.group(1)), float(m.group(2))
    assert f32 <= 1e-5 < narrow <= TOLERANCE["int8"]
    assert proc.stdout.strip().endswith("PASS")
