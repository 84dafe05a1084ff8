"""The pyodide target inside real Pyodide: npm `pyodide` run by node with no CDN (indexURL = the local package) installs
the generated wheels from local files and runs them without numpy (plain lists flat and nested, tuples, array.array,
N-D memoryviews, load_async), against onnxruntime at verify's tolerance; bad input is a clear ValueError/TypeError
naming the input, a runtime index out of range a RuntimeError, never a trap. Pyodide starts once for the module."""

from __future__ import annotations

import json
import subprocess
import zipfile

import pytest

from .helpers import REPO
from .wasm_node import require_node
from .wheel_models import (
    CASES,
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

PYODIDE_DIR = REPO / "node_modules" / "pyodide"
RUNNER = REPO / "tests" / "pyodide_run.mjs"
MODES = ["list", "nested", "tuple", "array", "memoryview", "async"]


def require_pyodide() -> str:
    node = require_node()
    if not (PYODIDE_DIR / "pyodide.mjs").is_file():
        pytest.fail(f"npm package pyodide is missing at {PYODIDE_DIR}: run make test (or npm ci / npm install in {REPO})")
    return node


@pytest.fixture(scope="module")
def pyodide_run(tmp_path_factory):
    """Build the three wheels, run every case in one Pyodide; (results, {package: (manifest, reference outputs)})."""
    node = require_pyodide()
    root = tmp_path_factory.mktemp("pyodide")
    d_info, d_feeds, d_ref = digits(root / "digits", n=16)
    # the real model keeps its weights in model.weights inside the wheel (--weights file), loaded by the runner
    r_info, r_feeds, r_ref = real_model("silero_vad_openvino_16k", root / "silero", weights="file")
    r_info["wheel_path"] = root / "silero" / r_info["pyodide"]["wheel"]
    t_feeds = dtypes_feeds()
    t_info = export_wheel(dtypes_model(), root / "dtypes", name="dtypes")
    jobs = [model_job(d_info, d_feeds, MODES, bad=True), model_job(r_info, r_feeds, ["list", "array"]),
            model_job(t_info, t_feeds, ["list", "nested", "array", "memoryview"], extra_bad=DTYPES_EXTRA_BAD)]
    job = write_job(root / "job.json", jobs)
    wheels = [str(folder / info["pyodide"]["wheel"]) for folder, info in
              ((root / "digits", d_info), (root / "silero", r_info), (root / "dtypes", t_info))]
    proc = subprocess.run([node, str(RUNNER), str(PYODIDE_DIR), str(CASES), str(job), *wheels],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"pyodide run failed:\n{proc.stderr[-4000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    r = out["results"]
    print(f"pyodide start {out['pyodide_load_ms']:.0f} ms, 3 wheels installed in {out['install_ms']:.0f} ms; "
          + ", ".join(f"{k}: load {v['load_s'] * 1e3:.1f} ms, run {v['run_s'] * 1e3:.2f} ms" for k, v in r["models"].items()))
    refs = {"digits_cnn": (d_info, d_ref), r_info["prefix"]: (r_info, r_ref), "dtypes": (t_info, dtypes_expected(t_feeds))}
    return r, refs


def test_runs_inside_pyodide_without_numpy(pyodide_run):
    r, _ = pyodide_run
    assert r["platform"] == "emscripten"
    assert r["numpy"] is False and r["numpy_in_sys_modules"] is False and r["emit_imported"] is False
    assert {m["backend"] for m in r["models"].values()} == {"pyodide"}


def test_digits_in_pyodide_matches_onnxruntime(pyodide_run):
    r, refs = pyodide_run
    info, ref = refs["digits_cnn"]
    res = r["models"]["digits_cnn"]
    assert res["inputs"] == [["x", "float32", [16, 1, 8, 8]]] and res["outputs"] == [["probs", "float32", [16, 10]]]
    assert sorted(res["runs"]) == sorted(MODES)
    check_runs(res, info, ref)


def test_real_model_in_pyodide_matches_onnxruntime(pyodide_run):
    r, refs = pyodide_run
    info, ref = refs["silero_vad_openvino_16k"]
    assert info["weights"]["mode"] == "file"
    with zipfile.ZipFile(info["wheel_path"]) as z:
        assert z.getinfo(f"{info['prefix']}/model.weights").file_size == info["weights"]["blob_bytes"]
    check_runs(r["models"]["silero_vad_openvino_16k"], info, ref)


def test_every_dtype_in_pyodide(pyodide_run):
    r, refs = pyodide_run
    info, expected = refs["dtypes"]
    check_runs(r["models"]["dtypes"], info, expected, exact=True)


def test_bad_input_in_pyodide_is_a_clear_error(pyodide_run):
    r, _ = pyodide_run
    check_bad_messages(r["models"]["digits_cnn"]["bad"], 1024, [16, 1, 8, 8])
    check_dtypes_bad(r["models"]["dtypes"]["bad"])
