"""The demo: compile the bundled digits CNN to C, build it natively, and classify a few held-out
digits beside onnxruntime."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import emit

HERE = Path(__file__).resolve().parent
MODEL = HERE / "digits" / "digits_cnn.onnx"
OUT = HERE.parent / "build" / "demo"


def ascii_digit(img: np.ndarray) -> list[str]:
    shades = " .:-=+*#%@"
    return ["".join(shades[min(9, int(v * 9.99))] * 2 for v in row) for row in img]


def main() -> int:
    samples = np.load(HERE / "digits" / "samples.npz")
    x, labels = samples["x"], samples["y"]
    n = x.shape[0]
    t0 = time.perf_counter()
    info = emit.export(MODEL, target="native", out=OUT, dims={"N": n})
    print(f"exported {MODEL.name} -> {OUT}/ in {time.perf_counter() - t0:.1f}s: "
          f"{', '.join(info['sources'])}, weights {info['weight_bytes']:,} B, arena {info['arena_bytes']:,} B")
    model = emit.load(OUT)
    probs = model.run({"x": x})["probs"]

    import onnxruntime as ort

    ref = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for row in ascii_digit(x[0, 0]):
        print("    " + row)
    print(f"\n{'#':>3} {'label':>5} {'onnx-emit':>10} {'p':>6} {'onnxruntime':>12} {'p':>6}")
    for i in range(n):
        a, b = int(probs[i].argmax()), int(ref[i].argmax())
        print(f"{i:>3} {labels[i]:>5} {a:>10} {probs[i, a]:6.3f} {b:>12} {ref[i, b]:6.3f}")
    err = float(np.abs(probs - ref).max())
    agree = int((probs.argmax(1) == ref.argmax(1)).sum())
    acc = float((probs.argmax(1) == labels).mean())
    print(f"\npredictions agree with onnxruntime on {agree}/{n}; max |prob difference| {err:.2e}; accuracy {acc:.0%}")
    return 0 if agree == n and err < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
