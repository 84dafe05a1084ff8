"""The runtime kernels' objects kept between builds (emit/build/object_cache.py): a second export with the same
kernels, headers and flags reuses them, another feature set in emit_runtime.h compiles its own, and every build's
results still match onnxruntime."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import emit
from emit.build.object_cache import is_runtime_kernel
from emit.models_zoo import default_cache_dir

from .helpers import ort_run
from .test_winograd import LAYERS, LAYERS4, _model

RNG = np.random.default_rng(5)


def _objects(cache: Path) -> set[str]:
    return {p.name for p in (cache / "objects").glob("*.o")}


def _kernels(folder: Path) -> set[str]:
    return {s for s in json.loads((folder / "manifest.json").read_text())["sources"] if is_runtime_kernel(s)}


def _matches_onnxruntime(model, folder: Path, shape: tuple[int, ...]) -> None:
    x = RNG.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(emit.load(folder).run(x=x)["y"], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_wasm_kernels_compiled_once_per_feature_set(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ONNX_EMIT_CACHE", str(cache))
    first = _model(LAYERS[:1], (9, 12))
    emit.export(first, target="wasm", out=tmp_path / "a")
    built = _objects(cache)
    assert {n.split("-", 1)[1] for n in built} == {k.replace(".c", ".o") for k in _kernels(tmp_path / "a")}
    _matches_onnxruntime(first, tmp_path / "a", (1, 64, 9, 12))

    second = _model(LAYERS[1:], (7, 11))  # another model, the same kernels and features: nothing compiled again
    emit.export(second, target="wasm", out=tmp_path / "b")
    assert _objects(cache) == built
    _matches_onnxruntime(second, tmp_path / "b", (1, 130, 7, 11))

    # F(4x4) defined in emit_runtime.h: its own conv.o (the cached one would write NaN for its convolutions)
    f4 = _model(LAYERS4, (15, 17))
    emit.export(f4, target="wasm", out=tmp_path / "c")
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["features"] == ["EK_WINO_F4"]
    assert "conv.o" in {n.split("-", 1)[1] for n in _objects(cache) - built}
    _matches_onnxruntime(f4, tmp_path / "c", (1, 32, 15, 17))


def test_cache_off_compiles_in_the_build(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNX_EMIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ONNX_EMIT_OBJECT_CACHE", "0")
    model = _model(LAYERS[:1], (9, 12))
    emit.export(model, target="wasm", out=tmp_path / "a")
    assert not (tmp_path / "cache").exists()
    _matches_onnxruntime(model, tmp_path / "a", (1, 64, 9, 12))


def _used_since(cache: Path, t0: float) -> set[str]:
    """The kernels whose objects a build since t0 wrote or took (a hit touches its object)."""
    return {p.name.split("-", 1)[1] for p in (cache / "objects").glob("*.o") if p.stat().st_mtime >= t0}


@pytest.mark.parametrize("threads", [1, 2])
def test_native_kernels_reused(tmp_path, monkeypatch, threads):
    """Natively in the user's cache (the suite's builds share it): the second model compiles only its model.c."""
    monkeypatch.delenv("ONNX_EMIT_OBJECT_CACHE", raising=False)
    first, second = _model(LAYERS[:1], (9, 12)), _model(LAYERS[1:], (7, 11))
    t0 = time.time() - 1  # file times may be coarser than time.time()
    emit.export(first, target="native", out=tmp_path / "a", threads=threads)
    kernels = {k.replace(".c", ".o") for k in _kernels(tmp_path / "a")}
    assert kernels <= _used_since(default_cache_dir(), t0) and ("threads.o" in kernels) == (threads > 1)
    before = _objects(default_cache_dir())
    emit.export(second, target="native", out=tmp_path / "b", threads=threads)
    assert _objects(default_cache_dir()) == before
    _matches_onnxruntime(first, tmp_path / "a", (1, 64, 9, 12))
    _matches_onnxruntime(second, tmp_path / "b", (1, 130, 7, 11))
