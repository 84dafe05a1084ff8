"""The wasm target in Node: every model of the verify set (tests/test_models.py, If included), exported to wasm and run through its
own model.mjs, gives onnxruntime's numbers at verify's tolerance (max abs err <= 1e-4 * max(1, max|ref|))."""

from __future__ import annotations

import pytest

import emit
from emit.models_zoo import fetch
from emit.runner import TensorSpec
from emit.verify import compare, run_onnxruntime, sample_inputs

from .test_models import MODELS
from .wasm_node import run_in_node


@pytest.mark.parametrize("entry", MODELS, ids=[e.id for e in MODELS])
def test_real_model_in_node_matches_onnxruntime(entry, tmp_path):
    path = fetch(entry.id)
    shapes = {k: v[0] for k, v in entry.input_shapes.items()}
    info = emit.export(path, target="wasm", out=tmp_path, shapes=shapes)
    specs = [TensorSpec(t["name"], t["dtype"], tuple(t["shape"])) for t in info["inputs"]]
    feeds = sample_inputs(specs, seed=0)
    got, timing = run_in_node(tmp_path, feeds)
    ref = run_onnxruntime(str(path), feeds)
    for t in info["outputs"]:
        r = compare(t["name"], got[t["name"]], ref[t["name"]], rtol=1e-4, atol=0.0)
        assert r.ok, f"{entry.id} output {t['name']}: max abs err {r.max_abs:.3g}, max |ref| {r.ref_max:.3g}"
    w = info["wasm"]
    print(f"{entry.id}: wasm {w['wasm_bytes']:,} B (code {w['code_bytes']:,}, data {w['data_bytes']:,}), "
          f"build {w['build_seconds']} s, load {timing['load_ms']:.0f} ms")
