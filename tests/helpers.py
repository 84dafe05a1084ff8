"""Small model builders and runners shared by the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emit.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def make_model(nodes, inputs, outputs, initializers=(), opset: int = 17, **kw) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **kw)


def tensor(name: str, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def init(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def ort_run(model: onnx.ModelProto | str | Path, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)


def check_strict_c99(model: onnx.ModelProto, out: Path, cc: str, name: str) -> None:
    """Export `model` as C to `out` and compile every .c file with `cc` in strict C99, warnings as errors."""
    import emit

    if shutil.which(cc) is None:
        pytest.fail(f"{cc} is missing")
    emit.export(model, target="c", out=out, name=name)
    for src in sorted(out.glob("*.c")):
        proc = subprocess.run(
            [cc, "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O1", "-c", src.name, "-o", "/dev/null"],
            cwd=out,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
