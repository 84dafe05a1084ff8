"""The pyodide target's wheel in CPython: pip installs it (a valid py3-none-any wheel, RECORD hashes checked by pip),
the installed package runs model.wasm through wasmtime with lists, array.array, memoryviews and numpy, and matches
onnxruntime at verify's tolerance; bad input is a clear error naming the input. `emit.load(OUT)` on a wasm folder and
on a pyodide folder runs the same way with the native runner's checks."""

from __future__ import annotations

import array
import asyncio
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import emit
from emit import wasm_runner
from emit.build.pyodide import build_wheel
from emit.errors import EmitError

from .helpers import REPO, init, make_model, ort_run, tensor
from .wheel_models import (
    CASES,
    DIGITS,
    DTYPES_EXTRA_BAD,
    check_bad_messages,
    check_dtypes_bad,
    check_runs,
    digits,
    dtypes_expected,
    dtypes_feeds,
    dtypes_model,
    export_wheel,
    model_job,
    real_model,
    write_job,
)

MODES = ["list", "nested", "tuple", "array", "memoryview", "numpy", "async"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheels")
    d = digits(root / "digits", n=16)
    r = real_model("mtcnn_onet", root / "onet")
    t_feeds = dtypes_feeds()
    t_info = export_wheel(dtypes_model(), root / "dtypes", name="dtypes")
    return {"root": root, "digits": d, "onet": r, "dtypes": (t_info, t_feeds, dtypes_expected(t_feeds))}


@pytest.fixture(scope="module")
def cpython_run(built):
    """pip install --no-deps --target the three wheels, then run tests/wheel_cases.py on them in a fresh interpreter."""
    root = built["root"]
    site = root / "site"
    wheels = [str(root / sub / built[key][0]["pyodide"]["wheel"]) for key, sub in
              (("digits", "digits"), ("onet", "onet"), ("dtypes", "dtypes"))]
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                           *wheels], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip refused the wheel:\n{proc.stderr[-3000:]}"
    (d_info, d_feeds, _), (r_info, r_feeds, _), (t_info, t_feeds, _) = built["digits"], built["onet"], built["dtypes"]
    job = write_job(root / "job.json", [model_job(d_info, d_feeds, MODES, bad=True), model_job(r_info, r_feeds, ["list", "numpy"]),
                                        model_job(t_info, t_feeds, ["list", "array", "memoryview", "numpy"],
                                                  extra_bad=DTYPES_EXTRA_BAD)])
    proc = subprocess.run([sys.executable, str(CASES), str(job)], capture_output=True, text=True, timeout=600, cwd=root,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, f"wheel cases failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), site


def test_wheel_is_valid_and_records_itself(built):
    info = built["digits"][0]
    folder = built["root"] / "digits"
    assert info["pyodide"] == {"wheel": "digits_cnn-1.0.0-py3-none-any.whl", "package": "digits_cnn", "version": "1.0.0",
                               "wheel_bytes": (folder / "digits_cnn-1.0.0-py3-none-any.whl").stat().st_size}
    assert json.loads((folder / "manifest.json").read_text())["pyodide"] == info["pyodide"]
    with zipfile.ZipFile(folder / info["pyodide"]["wheel"]) as zf:
        names = set(zf.namelist())
        assert {"digits_cnn/__init__.py", "digits_cnn/_runner.py", "digits_cnn/model.wasm", "digits_cnn/manifest.json",
                "digits_cnn-1.0.0.dist-info/METADATA", "digits_cnn-1.0.0.dist-info/WHEEL",
                "digits_cnn-1.0.0.dist-info/RECORD"} <= names
        meta = zf.read("digits_cnn-1.0.0.dist-info/METADATA").decode()
        assert 'Requires-Dist: wasmtime; sys_platform != "emscripten"' in meta.splitlines()
        assert "Tag: py3-none-any" in zf.read("digits_cnn-1.0.0.dist-info/WHEEL").decode().splitlines()
        # the runner in the wheel is emit/wasm_runner.py itself, and imports nothing from emit
        runner = zf.read("digits_cnn/_runner.py")
        assert runner == (REPO / "emit" / "wasm_runner.py").read_bytes()
        assert b"import emit" not in runner and b"from emit" not in runner and b"from ." not in runner
        assert zf.read("digits_cnn/model.wasm") == (folder / "model.wasm").read_bytes()
        for line in zf.read("digits_cnn-1.0.0.dist-info/RECORD").decode().splitlines():
            path, digest, size = line.split(",")
            if path.endswith("RECORD"):
                continue
            data = zf.read(path)
            assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert int(size) == len(data)


def test_installed_wheel_runs_in_cpython_through_wasmtime(cpython_run, built):
    r, site = cpython_run
    assert (site / "digits_cnn" / "model.wasm").is_file()
    assert r["numpy"] is True and {m["backend"] for m in r["models"].values()} == {"wasmtime"}
    assert r["emit_imported"] is False
    d_info, _, d_ref = built["digits"]
    res = r["models"]["digits_cnn"]
    assert sorted(res["runs"]) == sorted(MODES)
    assert res["runs"]["numpy"]["probs"]["type"] == "ndarray"  # numpy in, numpy out, shaped per the manifest
    assert res["runs"]["list"]["probs"]["type"] == "Tensor"
    check_runs(res, d_info, d_ref)
    r_info, _, r_ref = built["onet"]
    check_runs(r["models"]["mtcnn_onet"], r_info, r_ref)
    t_info, _, t_expected = built["dtypes"]
    check_runs(r["models"]["dtypes"], t_info, t_expected, exact=True)
    print(", ".join(f"{k}: load {v['load_s'] * 1e3:.1f} ms, run {v['run_s'] * 1e3:.2f} ms" for k, v in r["models"].items()))


def test_bad_input_through_the_wheel_in_cpython(cpython_run):
    r, _ = cpython_run
    check_bad_messages(r["models"]["digits_cnn"]["bad"], 1024, [16, 1, 8, 8])
    check_dtypes_bad(r["models"]["dtypes"]["bad"])


def test_wasm_runner_numpy_inputs_are_checked(built):
    """numpy inputs follow the native runner's rule: exact dtype and shape."""
    info, feeds, ref = built["digits"]
    m = wasm_runner.load(built["root"] / "digits")
    x = feeds["x"]
    np.testing.assert_array_equal(m.run(x)["probs"], m.run(x=x.ravel().tolist())["probs"].numpy())
    with pytest.raises(ValueError, match=r"^input 'x': expected dtype float32, got float64$"):
        m.run(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"^input 'x': expected shape \[16, 1, 8, 8\], got \[1024\]$"):
        m.run(x.ravel())
    # big-endian data is converted, not misread
    np.testing.assert_array_equal(m.run(x.astype(">f4"))["probs"], m.run(x)["probs"])
    assert asyncio.run(wasm_runner.load_async(built["root"] / "digits")).run(x)["probs"].shape == (16, 10)
    t = m.run(array.array("f", x.tobytes()))["probs"]
    assert isinstance(t, wasm_runner.Tensor) and isinstance(t, array.array) and t.shape == (16, 10) and len(t) == 160
    assert len(t.tolist()) == 16 and len(t.tolist()[0]) == 10


def test_emit_load_on_a_pyodide_folder_uses_wasmtime(built):
    info, feeds, ref = built["digits"]
    m = emit.load(built["root"] / "digits")
    assert type(m).__name__ == "WasmModel" and [s.name for s in m.inputs] == ["x"] and m.outputs[0].shape == (16, 10)
    out = m(feeds["x"])["probs"]
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (16, 10)
    np.testing.assert_allclose(out, ref["probs"], rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match=r"input 'x': expected shape \[16, 1, 8, 8\], got \[1, 1, 8, 8\]"):
        m(feeds["x"][:1])
    with pytest.raises(ValueError, match=r"input 'x': expected dtype float32, got float64"):
        m(feeds["x"].astype(np.float64))
    with pytest.raises(ValueError, match=r"unknown input 'y' \(inputs: x\)"):
        m.run({"x": feeds["x"], "y": feeds["x"]})
    t_info, t_feeds, t_expected = built["dtypes"]
    got = emit.load(built["root"] / "dtypes").run(t_feeds)
    for name, want in t_expected.items():
        assert got[name].dtype == want.dtype
        np.testing.assert_array_equal(got[name], want)


def test_emit_load_on_a_wasm_folder_and_runtime_error(tmp_path):
    x = np.load(REPO / "examples" / "digits" / "samples.npz")["x"][:1]
    emit.export(DIGITS, target="wasm", out=tmp_path / "digits", dims={"N": 1})
    m = emit.load(tmp_path / "digits")
    np.testing.assert_allclose(m.run(x=x)["probs"], ort_run(DIGITS, {"x": x})[0], rtol=0, atol=1e-4)

    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    model = make_model([onnx.helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)],
                       [tensor("idx", [2], TensorProto.INT64)], [tensor("y", [2, 3])], [init("table", table)])
    emit.export(model, target="wasm", out=tmp_path / "gather", name="gather")
    g = emit.load(tmp_path / "gather")
    with pytest.raises(RuntimeError, match="model returned error code 1: an input value was out of range"):
        g(np.array([1, 4], np.int64))
    np.testing.assert_array_equal(g(np.array([3, -4], np.int64))["y"], table[[3, 0]])


def test_emit_load_on_a_c_only_folder_is_a_clear_error(tmp_path):
    emit.export(DIGITS, target="c", out=tmp_path, dims={"N": 1})
    with pytest.raises(EmitError, match="not built for native or wasm; export with --target native, wasm or pyodide"):
        emit.load(tmp_path)


@pytest.mark.parametrize("name, message", [("json", "model name 'json' would shadow the module 'json'"),
                                           ("class", "model name 'class' is not a Python identifier")])
def test_bad_package_name_is_refused(built, tmp_path, name, message):
    folder = tmp_path / "m"
    shutil.copytree(built["root"] / "digits", folder)
    info = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**info, "prefix": name}))
    with pytest.raises(EmitError, match=message):
        build_wheel(folder)
