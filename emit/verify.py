"""Compare an exported model with onnxruntime on the same inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import EmitError


@dataclass
class OutputReport:
    name: str
    max_abs: float
    max_rel: float
    ref_max: float
    ok: bool


def sample_inputs(specs, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs: normal floats, 0/1 ints (valid indices for any table; ones for masks), random bools."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in specs:
        dt = np.dtype(s.dtype)
        if is_float_dtype(dt):
            feeds[s.name] = rng.standard_normal(s.shape).astype(dt)
        elif dt == np.bool_:
            feeds[s.name] = rng.random(s.shape) < 0.5
        elif "mask" in s.name.lower():
            feeds[s.name] = np.ones(s.shape, dtype=dt)
        else:
            feeds[s.name] = rng.integers(0, 2, size=s.shape).astype(dt)
    return feeds


def run_onnxruntime(model_path: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise EmitError("verify needs onnxruntime: pip install onnxruntime") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def is_float_dtype(dtype) -> bool:
    """numpy's floats and ml_dtypes' (bfloat16, float8_*, float4_*: numpy kind 'V')."""
    dt = np.dtype(dtype)
    return dt.kind in "fc" or (dt.kind == "V" and dt.name.startswith(("float", "bfloat")))


def compare(name: str, got: np.ndarray, ref: np.ndarray, rtol: float, atol: float, elementwise: bool = False) -> OutputReport:
    """Pass when |got-ref| <= atol + rtol*max(1, max|ref|) everywhere (NaN equals NaN; integers exact; rtol at least
    two ulps of a float16/bfloat16/float8 output).
    elementwise=True uses the ONNX backend-test convention instead: |got-ref| <= atol + rtol*|ref| per element."""
    ref = np.asarray(ref)
    if got.shape != ref.shape:
        return OutputReport(name, float("inf"), float("inf"), 0.0, False)
    if not is_float_dtype(ref.dtype):
        bad = int(np.count_nonzero(got != ref))
        diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if got.size else 0.0
        return OutputReport(name, diff, diff, 0.0, bad == 0)
    if not elementwise and ref.dtype.itemsize <= 2:
        # float16, bfloat16, float8 outputs: onnxruntime rounds its own way (float16 kernels, float32 accumulation),
        # so allow two units in the last place of the output's type
        import ml_dtypes

        rtol = max(rtol, 2 * float(ml_dtypes.finfo(ref.dtype).eps))
    g, r = got.astype(np.float64), ref.astype(np.float64)
    both_nan = np.isnan(g) & np.isnan(r)
    same_inf = np.isinf(r) & (g == r)
    with np.errstate(invalid="ignore"):  # inf - inf: masked just below
        d = np.where(both_nan | same_inf, 0.0, np.abs(g - r))
    d = np.where(np.isnan(d), np.inf, d)
    finite = np.isfinite(r)
    ref_max = float(np.max(np.abs(r[finite]))) if finite.any() else 0.0
    max_abs = float(d.max()) if d.size else 0.0
    if elementwise:
        # per-element bound, so small reference values are not hidden behind the largest one
        bound = atol + rtol * np.where(np.isfinite(r), np.abs(r), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(d > 0, d / np.abs(r), 0.0)  # inf where ref is 0
        max_rel = float(np.nanmax(rel)) if d.size else 0.0
        return OutputReport(name, max_abs, max_rel, ref_max, bool(np.all(d <= bound)))
    scale = max(1.0, ref_max)
    max_rel = max_abs / scale
    return OutputReport(name, max_abs, max_rel, ref_max, bool(max_abs <= atol + rtol * scale))
