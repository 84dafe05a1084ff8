"""--threads N (native builds only): big GEMMs, and the convolutions built on them, split across a pool of POSIX
threads. Each output element keeps its summation order, so the results equal the single-threaded build's bit for
bit; concurrent callers and nested kernels run safely; other targets refuse the option in one line."""

from __future__ import annotations

import subprocess
import threading

import numpy as np
import pytest

import emit

from .helpers import init, make_model, ort_run, run_cli, tensor
from .test_c_folder import STRICT, need

RNG = np.random.default_rng(0)


def _model():
    """A 3x3 Conv (M=64, K=288, N=3136) with bias and Relu, then a MatMul (128x256 @ 256x512): both split."""
    nodes = [
        ("Conv", ["x", "w", "b"], ["c"], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
        ("Relu", ["c"], ["r"], {}),
        ("MatMul", ["a", "m"], ["y"], {}),
    ]
    from onnx import helper

    return make_model(
        [helper.make_node(op, i, o, **kw) for op, i, o, kw in nodes],
        [tensor("x", [1, 32, 56, 56]), tensor("a", [128, 256])],
        [tensor("r", [1, 64, 56, 56]), tensor("y", [128, 512])],
        [init("w", RNG.standard_normal((64, 32, 3, 3)).astype(np.float32) * 0.1),
         init("b", RNG.standard_normal(64).astype(np.float32)),
         init("m", RNG.standard_normal((256, 512)).astype(np.float32) * 0.1)],
    )


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    model = _model()
    out = {}
    for t in (1, 3):
        out[t] = tmp_path_factory.mktemp(f"threads{t}")
        emit.export(model, target="native", out=out[t], name="threaded", threads=t)
    feeds = {"x": RNG.standard_normal((1, 32, 56, 56)).astype(np.float32), "a": RNG.standard_normal((128, 256)).astype(np.float32)}
    return model, out, feeds


def test_threaded_build_equals_single_threaded_and_onnxruntime(builds):
    model, out, feeds = builds
    one, three = emit.load(out[1]).run(feeds), emit.load(out[3]).run(feeds)
    for name in ("r", "y"):
        np.testing.assert_array_equal(three[name], one[name])
    for name, ref in zip(("r", "y"), ort_run(model, feeds)):
        np.testing.assert_allclose(three[name], ref, rtol=1e-4, atol=1e-4)
    info = emit.load(out[3]).info
    assert info["threads"] == 3 and "threads.c" in info["sources"] and "-DEK_THREADS=3" in info["cflags"]
    assert "threads.c" not in emit.load(out[1]).info["sources"]


def test_concurrent_callers_get_their_own_results(builds):
    """Four Python threads call the same threaded model at once (cffi releases the GIL): one runs on the pool, the
    others serially on their own threads; every result is right."""
    _, out, feeds = builds
    m = emit.load(out[3])
    want = m.run(feeds)["y"]
    inputs = [{**feeds, "a": feeds["a"] * (k + 1)} for k in range(4)]
    got: dict[int, np.ndarray] = {}

    def call(k: int) -> None:
        for _ in range(3):
            got[k] = m.run(inputs[k])["y"]

    threads = [threading.Thread(target=call, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        np.testing.assert_allclose(got[k], want * (k + 1), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_threaded_c_is_strict_c99(builds, cc):
    _, out, _ = builds
    need(cc, cc)
    for src in sorted(p.name for p in out[3].glob("*.c")):
        proc = subprocess.run([cc, *STRICT, "-DEK_THREADS=3", "-pthread", "-c", src, "-o", "/dev/null"], cwd=out[3],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]


def test_threads_refused_where_they_cannot_run(tmp_path):
    """Checked before the model is even read."""
    for target in ("wasm", "pyodide", "cortex-m4"):
        proc = run_cli("export", "x.onnx", "--target", target, "--threads", "2", "-o", tmp_path / target)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--threads is for native builds" in proc.stderr
    proc = run_cli("export", "x.onnx", "--threads", "0", "-o", tmp_path / "z")
    assert proc.returncode == 2 and "expected a whole number from 1 to 256" in proc.stderr
