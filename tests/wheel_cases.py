"""The cases run against an installed onnx-emit model wheel, the same script inside Pyodide (tests/pyodide_run.mjs)
and in CPython with wasmtime (tests/test_wasmtime.py). Standard library only, numpy used when it imports.

    python wheel_cases.py job.json          # prints the results as JSON
job: {"models": [{"package", "feeds": {name: flat values}, "modes": [...], "bad": bool, "extra_bad": {label: feeds}}]}
Each model runs once per input mode (list, nested, tuple, array, memoryview, numpy, async); results hold every output
flat with its type and shape, and `bad` holds "ExceptionType: message" for each bad input.
"""

from __future__ import annotations

import array
import importlib
import json
import sys
import time

try:
    import numpy as np
except ImportError:  # the case inside Pyodide here: numpy cannot be loaded offline
    np = None

CODES = {"float32": "f", "float64": "d", "int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i",
         "uint32": "I", "int64": "q", "uint64": "Q", "bool": "?"}


def nest(flat: list, shape) -> list:
    for d in reversed(list(shape)[1:]):
        flat = [flat[i:i + d] for i in range(0, len(flat), d)]
    return flat


def nested_shape(v) -> list:
    shape = []
    while isinstance(v, list):
        shape.append(len(v))
        v = v[0] if v else None
    return shape


def as_array(spec, flat):
    return array.array("B" if spec.dtype == "bool" else CODES[spec.dtype], [int(v) for v in flat] if spec.dtype == "bool" else flat)


def feed(spec, flat, mode):
    if mode in ("list", "async"):
        return list(flat)
    if mode == "nested":
        return nest(list(flat), spec.shape)
    if mode == "tuple":
        return tuple(flat)
    if mode == "array":
        return as_array(spec, flat)
    if mode == "memoryview":  # an N-D view, shaped like the input
        mv = memoryview(as_array(spec, flat)).cast("B")
        return mv.cast(CODES[spec.dtype], list(spec.shape)) if spec.shape else mv.cast(CODES[spec.dtype])
    if mode == "numpy":
        return np.array(flat, dtype=spec.dtype).reshape(spec.shape)
    raise ValueError(mode)


def describe(value) -> dict:
    if np is not None and isinstance(value, np.ndarray):
        return {"type": "ndarray", "dtype": value.dtype.name, "shape": list(value.shape), "values": value.ravel().tolist()}
    flat = array.array.tolist(value)
    if value.dtype == "bool":
        flat = [bool(v) for v in flat]
    nested = value.tolist()
    return {"type": type(value).__name__, "base": isinstance(value, array.array), "dtype": value.dtype,
            "shape": list(value.shape), "values": flat, "nested_shape": nested_shape(nested),
            "nested_ok": nest(flat, value.shape) == nested if value.shape else nested == flat}


def error_of(fn) -> str:
    try:
        fn()
    except Exception as exc:  # the point is to record what users see
        return f"{type(exc).__name__}: {exc}"
    return "no error"


async def run_model(job: dict) -> dict:
    pkg = importlib.import_module(job["package"])
    t0 = time.perf_counter()
    m = pkg.load()
    res: dict = {"load_s": time.perf_counter() - t0, "backend": m.backend,
                 "inputs": [[s.name, s.dtype, list(s.shape)] for s in m.inputs],
                 "outputs": [[s.name, s.dtype, list(s.shape)] for s in m.outputs], "runs": {}, "bad": {}}
    feeds = job["feeds"]
    for mode in job["modes"]:
        if mode == "numpy" and np is None:
            continue
        model = await pkg.load_async() if mode == "async" else m
        args = {s.name: feed(s, feeds[s.name], mode) for s in m.inputs}
        t0 = time.perf_counter()
        outs = model.run(args)
        res.setdefault("run_s", time.perf_counter() - t0)
        res["runs"][mode] = {k: describe(v) for k, v in outs.items()}
    if job.get("bad"):
        first = m.inputs[0]
        good = {s.name: list(feeds[s.name]) for s in m.inputs}

        def with_first(v):
            return lambda: m.run({**good, first.name: v})

        flat = good[first.name]
        wrong_code = "d" if first.dtype == "float32" else "f"
        res["bad"] = {
            "short": error_of(with_first(flat[:-1])),
            "long": error_of(with_first(flat + flat[:1])),
            "wrong_dtype_array": error_of(with_first(array.array(wrong_code, [float(v) for v in flat]))),
            "strings": error_of(with_first(["a"] * len(flat))),
            "nested_wrong_shape": error_of(with_first([flat])),
            "ragged": error_of(with_first([flat, flat[:1]])),
            "none": error_of(with_first(None)),
            "bytes": error_of(with_first(bytes(len(flat) * 8))),
            "unknown": error_of(lambda: m.run({**good, "nope": [0]})),
            "missing": error_of(lambda: m.run({k: v for k, v in good.items() if k != first.name})),
            "too_many_positional": error_of(lambda: m.run(*([flat] * (len(m.inputs) + 1)))),
        }
    for label, bad in job.get("extra_bad", {}).items():
        res["bad"][label] = error_of(lambda bad=bad: m.run({**feeds, **bad}))
    if job.get("bad") or job.get("extra_bad"):  # the instance is still usable after refused input and a runtime error
        res["after"] = {k: describe(v) for k, v in m.run({s.name: list(feeds[s.name]) for s in m.inputs}).items()}
    return res


async def main(job_path: str) -> dict:
    with open(job_path) as f:
        job = json.load(f)
    out = {"platform": sys.platform, "numpy": np is not None, "models": {}}
    for model_job in job["models"]:
        out["models"][model_job["package"]] = await run_model(model_job)
    out["numpy_in_sys_modules"] = "numpy" in sys.modules
    out["emit_imported"] = "emit" in sys.modules  # the wheel's runner must stand alone
    return out


if __name__ == "__main__" and sys.platform != "emscripten":  # inside Pyodide the node helper calls main()
    import asyncio

    print(json.dumps(asyncio.run(main(sys.argv[1]))))
