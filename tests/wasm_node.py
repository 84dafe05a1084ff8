"""Run an exported wasm folder in Node through its model.mjs (the user's path), from Python tests and scripts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

NODE_RUNNER = Path(__file__).resolve().parent / "node_run.mjs"


def require_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: apt-get install nodejs")
    return node


def run_in_node(folder: Path, feeds: dict[str, np.ndarray], repeat: int = 0, timeout: float = 600) -> tuple[dict, dict]:
    """Outputs by name (numpy, shaped per the manifest) and the timing report {load_ms, run_ms}."""
    node = require_node()
    info = json.loads((folder / "manifest.json").read_text())
    io = folder / "node-io"
    io.mkdir(exist_ok=True)
    job = {"inputs": {}, "outputs": {}, "repeat": repeat}
    for i, t in enumerate(info["inputs"]):
        path = io / f"in{i}.bin"
        np.ascontiguousarray(feeds[t["name"]], dtype=t["dtype"]).tofile(path)
        job["inputs"][t["name"]] = str(path)
    for i, t in enumerate(info["outputs"]):
        job["outputs"][t["name"]] = str(io / f"out{i}.bin")
    (io / "job.json").write_text(json.dumps(job))
    proc = subprocess.run([node, str(NODE_RUNNER), str(folder), str(io / "job.json")], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"node failed:\n{proc.stderr[-3000:]}"
    outs = {t["name"]: np.fromfile(job["outputs"][t["name"]], dtype=t["dtype"]).reshape(t["shape"]) for t in info["outputs"]}
    return outs, json.loads(proc.stdout.strip().splitlines()[-1])
