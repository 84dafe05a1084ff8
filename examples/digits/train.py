#!/usr/bin/env python3
"""Train a small CNN on scikit-learn's 8x8 digits with numpy only; export it to ONNX.

The network is written out by hand (im2col convolutions, hand-derived backward
passes, Adam) so the demo needs neither torch nor a download. The result is
``digits_cnn.onnx`` (opset 17), a few test samples in ``samples.npz`` and a
short ``README.md``, all written to ``--out``.

Architecture (input ``x``: float32 [N,1,8,8], pixels in 0..1):

    Conv(1->8, 3x3, pad 1) -> BatchNormalization -> Relu -> MaxPool 2x2
    -> Conv(8->16, 3x3, pad 1) -> Relu -> MaxPool 2x2 -> Flatten
    -> Gemm(64->32) -> Relu -> Gemm(32->10) -> Softmax   (output ``probs``: [N,10])
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

Params = dict[str, np.ndarray]
Cache = dict[str, Any]

# Same as the ONNX BatchNormalization default, so export needs no conversion.
BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # weight of the newest batch in the running statistics
OPSET = 17
# IR version that introduced opset 17; keeps the file loadable by older runtimes.
IR_VERSION = 8
N_SAMPLES = 16


# --------------------------------------------------------------------------- data


def load_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, y_train, x_test, y_test); x is float32 [N,1,8,8] in 0..1."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=seed
    )
    return x_tr, y_tr, x_te, y_te


# --------------------------------------------------------------------------- layers


def im2col(x: np.ndarray) -> np.ndarray:
    """(N,C,H,W) -> (N*H*W, C*9) patches of a 3x3, stride 1, pad 1 convolution.

    Column order is (c, ky, kx), matching ``weight.reshape(O, C*9)`` of an OIHW weight.
    """
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.empty((n, h, w, c, 3, 3), dtype=x.dtype)
    for i in range(3):
        for j in range(3):
            cols[..., i, j] = xp[:, :, i : i + h, j : j + w].transpose(0, 2, 3, 1)
    return cols.reshape(n * h * w, c * 9)


def col2im(dcols: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add patch gradients back onto the input."""
    n, c, h, w = shape
    d = dcols.reshape(n, h, w, c, 3, 3)
    dxp = np.zeros((n, c, h + 2, w + 2), dtype=dcols.dtype)
    for i in range(3):
        for j in range(3):
            dxp[:, :, i : i + h, j : j + w] += d[..., i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, 1:-1, 1:-1]


def conv_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """3x3 same-padding convolution; returns (output, cols), cols kept for backward."""
    n, _, h, wd = x.shape
    o = w.shape[0]
    cols = im2col(x)
    out = cols @ w.reshape(o, -1).T
    if b is not None:
        out += b
    return out.reshape(n, h, wd, o).transpose(0, 3, 1, 2), cols


def conv_backward(
    dout: np.ndarray, x_shape: tuple[int, ...], cols: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (dx, dw, db) of :func:`conv_forward`."""
    o = w.shape[0]
    dflat = dout.transpose(0, 2, 3, 1).reshape(-1, o)
    dw = (dflat.T @ cols).reshape(w.shape)
    db = dflat.sum(axis=0)
    dx = col2im(dflat @ w.reshape(o, -1), x_shape)
    return dx, dw, db


def bn_forward_train(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray
) -> tuple[np.ndarray, Cache]:
    """Batch-statistics normalisation per channel (training mode)."""
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    inv_std = 1.0 / np.sqrt(var + BN_EPS)
    xhat = (x - mean[None, :, None, None]) * inv_std[None, :, None, None]
    y = gamma[None, :, None, None] * xhat + beta[None, :, None, None]
    return y, {"xhat": xhat, "inv_std": inv_std, "mean": mean, "var": var}


def bn_forward_eval(x: np.ndarray, p: Params) -> np.ndarray:
    """Inference mode, exactly the formula of ONNX BatchNormalization."""
    scale = p["bn1.scale"] / np.sqrt(p["bn1.running_var"] + np.float32(BN_EPS))
    mean = p["bn1.running_mean"][None, :, None, None]
    return (x - mean) * scale[None, :, None, None] + p["bn1.bias"][None, :, None, None]


def bn_backward(
    dy: np.ndarray, gamma: np.ndarray, c: Cache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (dx, dgamma, dbeta); batch mean/var depend on x, hence the extra terms."""
    xhat, inv_std = c["xhat"], c["inv_std"]
    m = dy.shape[0] * dy.shape[2] * dy.shape[3]
    dgamma = (dy * xhat).sum(axis=(0, 2, 3))
    dbeta = dy.sum(axis=(0, 2, 3))
    dxhat = dy * gamma[None, :, None, None]
    dx = (
        inv_std[None, :, None, None]
        / m
        * (
            m * dxhat
            - dxhat.sum(axis=(0, 2, 3))[None, :, None, None]
            - xhat * (dxhat * xhat).sum(axis=(0, 2, 3))[None, :, None, None]
        )
    )
    return dx, dgamma, dbeta


def _pool_windows(x: np.ndarray) -> np.ndarray:
    """(N,C,H,W) -> (N,C,H/2,W/2,4): each 2x2 window flattened on the last axis."""
    n, c, h, w = x.shape
    return (
        x.reshape(n, c, h // 2, 2, w // 2, 2)
        .transpose(0, 1, 2, 4, 3, 5)
        .reshape(n, c, h // 2, w // 2, 4)
    )


def maxpool_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 stride-2 max pool; returns (output, argmax), argmax routes the gradient."""
    win = _pool_windows(x)
    idx = win.argmax(axis=-1)
    return np.take_along_axis(win, idx[..., None], axis=-1)[..., 0], idx


def maxpool_backward(
    dout: np.ndarray, idx: np.ndarray, x_shape: tuple[int, ...]
) -> np.ndarray:
    """Send each output gradient to the input that won the max (first on ties)."""
    n, c, h, w = x_shape
    dwin = np.zeros((n, c, h // 2, w // 2, 4), dtype=dout.dtype)
    np.put_along_axis(dwin, idx[..., None], dout[..., None], axis=-1)
    return (
        dwin.reshape(n, c, h // 2, w // 2, 2, 2)
        .transpose(0, 1, 2, 4, 3, 5)
        .reshape(n, c, h, w)
    )


def softmax(z: np.ndarray) -> np.ndarray:
    # Shifting by the row max avoids overflow and leaves the result unchanged.
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- model


def init_params(rng: np.random.Generator) -> Params:
    """He-normal weights (suits the ReLUs), zero biases, identity BatchNorm."""

    def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    f32 = np.float32
    return {
        # No conv1 bias: BatchNormalization's shift would cancel it anyway.
        "conv1.weight": he((8, 1, 3, 3), 1 * 9),
        "bn1.scale": np.ones(8, f32),
        "bn1.bias": np.zeros(8, f32),
        "conv2.weight": he((16, 8, 3, 3), 8 * 9),
        "conv2.bias": np.zeros(16, f32),
        "fc1.weight": he((32, 64), 64),  # (out, in) layout = Gemm with transB=1
        "fc1.bias": np.zeros(32, f32),
        "fc2.weight": he((10, 32), 32),
        "fc2.bias": np.zeros(10, f32),
    }


def init_bn_stats() -> Params:
    return {
        "bn1.running_mean": np.zeros(8, np.float32),
        "bn1.running_var": np.ones(8, np.float32),
    }


def forward_train(x: np.ndarray, p: Params) -> tuple[np.ndarray, Cache]:
    """Training-mode forward pass; returns (logits, cache for backward)."""
    c: Cache = {"x": x}
    z1, c["cols1"] = conv_forward(x, p["conv1.weight"], None)
    b1, c["bn1"] = bn_forward_train(z1, p["bn1.scale"], p["bn1.bias"])
    r1 = np.maximum(b1, 0)
    c["z1_shape"], c["b1"] = z1.shape, b1
    p1, c["idx1"] = maxpool_forward(r1)
    z2, c["cols2"] = conv_forward(p1, p["conv2.weight"], p["conv2.bias"])
    r2 = np.maximum(z2, 0)
    c["p1_shape"], c["z2"] = p1.shape, z2
    p2, c["idx2"] = maxpool_forward(r2)
    f = p2.reshape(p2.shape[0], -1)  # C-order flatten, same as ONNX Flatten(axis=1)
    h = f @ p["fc1.weight"].T + p["fc1.bias"]
    r3 = np.maximum(h, 0)
    c["p2_shape"], c["f"], c["h"], c["r3"] = p2.shape, f, h, r3
    logits = r3 @ p["fc2.weight"].T + p["fc2.bias"]
    return logits, c


def backward(dlogits: np.ndarray, p: Params, c: Cache) -> Params:
    """Gradients of the loss w.r.t. every trainable parameter, given dL/dlogits."""
    g: Params = {}
    g["fc2.weight"] = dlogits.T @ c["r3"]
    g["fc2.bias"] = dlogits.sum(axis=0)
    dh = (dlogits @ p["fc2.weight"]) * (c["h"] > 0)
    g["fc1.weight"] = dh.T @ c["f"]
    g["fc1.bias"] = dh.sum(axis=0)
    dp2 = (dh @ p["fc1.weight"]).reshape(c["p2_shape"])
    dr2 = maxpool_backward(dp2, c["idx2"], c["z2"].shape)
    dz2 = dr2 * (c["z2"] > 0)
    dp1, g["conv2.weight"], g["conv2.bias"] = conv_backward(
        dz2, c["p1_shape"], c["cols2"], p["conv2.weight"]
    )
    dr1 = maxpool_backward(dp1, c["idx1"], c["z1_shape"])
    db1 = dr1 * (c["b1"] > 0)
    dz1, g["bn1.scale"], g["bn1.bias"] = bn_backward(db1, p["bn1.scale"], c["bn1"])
    _, g["conv1.weight"], _ = conv_backward(
        dz1, c["x"].shape, c["cols1"], p["conv1.weight"]
    )
    return g


def forward_eval(x: np.ndarray, p: Params) -> np.ndarray:
    """Inference forward pass (running BatchNorm stats); returns probs [N,10]."""
    z1, _ = conv_forward(x, p["conv1.weight"], None)
    r1 = np.maximum(bn_forward_eval(z1, p), 0)
    p1, _ = maxpool_forward(r1)
    z2, _ = conv_forward(p1, p["conv2.weight"], p["conv2.bias"])
    p2, _ = maxpool_forward(np.maximum(z2, 0))
    f = p2.reshape(p2.shape[0], -1)
    r3 = np.maximum(f @ p["fc1.weight"].T + p["fc1.bias"], 0)
    return softmax(r3 @ p["fc2.weight"].T + p["fc2.bias"])


# --------------------------------------------------------------------------- training


class Adam:
    def __init__(
        self,
        params: Params,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = 0

    def step(self, params: Params, grads: Params, lr: float) -> None:
        self.t += 1
        # Bias correction folded into the step size (the m/v estimates start at zero).
        a = lr * np.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        for k, g in grads.items():
            self.m[k] = self.beta1 * self.m[k] + (1 - self.beta1) * g
            self.v[k] = self.beta2 * self.v[k] + (1 - self.beta2) * g * g
            params[k] -= (a * self.m[k] / (np.sqrt(self.v[k]) + self.eps)).astype(
                np.float32
            )


def train(
    x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int, lr: float, seed: int
) -> tuple[Params, Params]:
    """Adam with cosine learning-rate decay; returns (weights, BN running stats)."""
    rng = np.random.default_rng(seed)
    p = init_params(rng)
    stats = init_bn_stats()
    opt = Adam(p)
    n = len(x)
    steps_per_epoch = -(-n // batch_size)
    total = epochs * steps_per_epoch
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(n)
        loss_sum, correct = 0.0, 0
        for s in range(0, n, batch_size):
            bi = order[s : s + batch_size]
            xb, yb = x[bi], y[bi]
            logits, cache = forward_train(xb, p)
            probs = softmax(logits)
            loss_sum += float(-np.log(probs[np.arange(len(yb)), yb] + 1e-12).sum())
            correct += int((probs.argmax(axis=1) == yb).sum())
            # d(mean cross-entropy)/d(logits) = (softmax - onehot) / batch
            dlogits = probs
            dlogits[np.arange(len(yb)), yb] -= 1
            dlogits /= len(yb)
            grads = backward(dlogits, p, cache)
            # Cosine decay: large steps early, fine convergence at the end.
            step_lr = 0.5 * lr * (1 + np.cos(np.pi * step / total))
            opt.step(p, grads, step_lr)
            step += 1
            # Running stats use the unbiased batch variance, like common frameworks.
            m = xb.shape[0] * 64
            bn = cache["bn1"]
            for key, batch in (("mean", bn["mean"]), ("var", bn["var"] * m / (m - 1))):
                name = f"bn1.running_{key}"
                stats[name] = (1 - BN_MOMENTUM) * stats[name] + BN_MOMENTUM * batch
        if epoch == 0 or (epoch + 1) % 5 == 0 or epoch + 1 == epochs:
            print(
                f"epoch {epoch + 1:3d}/{epochs}  "
                f"loss {loss_sum / n:.4f}  train acc {correct / n:.4f}"
            )
    stats = {k: v.astype(np.float32) for k, v in stats.items()}
    return p, stats


# --------------------------------------------------------------------------- export


def build_onnx(p: Params) -> onnx.ModelProto:
    """Build the inference graph; `p` holds the weights and BN running stats."""
    initializers = [
        numpy_helper.from_array(v.astype(np.float32), name=k) for k, v in p.items()
    ]
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "conv1.weight"],
            ["conv1_out"],
            name="conv1",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node(
            "BatchNormalization",
            [
                "conv1_out",
                "bn1.scale",
                "bn1.bias",
                "bn1.running_mean",
                "bn1.running_var",
            ],
            ["bn1_out"],
            name="bn1",
            epsilon=BN_EPS,
        ),
        helper.make_node("Relu", ["bn1_out"], ["relu1_out"], name="relu1"),
        helper.make_node(
            "MaxPool",
            ["relu1_out"],
            ["pool1_out"],
            name="pool1",
            kernel_shape=[2, 2],
            strides=[2, 2],
        ),
        helper.make_node(
            "Conv",
            ["pool1_out", "conv2.weight", "conv2.bias"],
            ["conv2_out"],
            name="conv2",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["conv2_out"], ["relu2_out"], name="relu2"),
        helper.make_node(
            "MaxPool",
            ["relu2_out"],
            ["pool2_out"],
            name="pool2",
            kernel_shape=[2, 2],
            strides=[2, 2],
        ),
        helper.make_node(
            "Flatten", ["pool2_out"], ["flatten_out"], name="flatten", axis=1
        ),
        helper.make_node(
            "Gemm",
            ["flatten_out", "fc1.weight", "fc1.bias"],
            ["fc1_out"],
            name="fc1",
            transB=1,
        ),
        helper.make_node("Relu", ["fc1_out"], ["relu3_out"], name="relu3"),
        helper.make_node(
            "Gemm",
            ["relu3_out", "fc2.weight", "fc2.bias"],
            ["logits"],
            name="fc2",
            transB=1,
        ),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_cnn",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        outputs=[helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="onnx-emit examples/digits/train.py",
        doc_string="Small CNN for scikit-learn's 8x8 digits; input pixels in 0..1.",
    )
    model.ir_version = IR_VERSION
    return model


def write_readme(path: Path, acc: float, n_test: int, epochs: int, size: int) -> None:
    path.write_text(
        f"""# digits CNN example

`digits_cnn.onnx` is a small CNN (opset 17, {size / 1024:.1f} KB) trained with
plain numpy on scikit-learn's bundled 8x8 handwritten digits
(`sklearn.datasets.load_digits`).

- input `x`: float32 `[N,1,8,8]`, pixel values divided by 16 (range 0..1)
- output `probs`: float32 `[N,10]`, softmax class probabilities
- layers: Conv(1→8,3x3) → BatchNormalization → Relu → MaxPool → Conv(8→16,3x3) → Relu
  → MaxPool → Flatten → Gemm(64→32) → Relu → Gemm(32→10) → Softmax
- test accuracy: **{acc * 100:.2f}%** on a stratified 20% hold-out ({n_test} images),
  after {epochs} epochs

`samples.npz` holds {N_SAMPLES} test images (`x`, float32 `[{N_SAMPLES},1,8,8]`),
their labels (`y`, int64) and the onnxruntime probabilities (`probs`)
for checking generated C code.

Retrain (deterministic, numpy + scikit-learn + onnx + onnxruntime only):

    python examples/digits/train.py [--epochs N] [--out DIR]
"""
    )


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(
        description="Train a small CNN on scikit-learn's 8x8 digits with numpy only, "
        "export it to ONNX (opset 17), check it against onnxruntime, and write "
        "digits_cnn.onnx, samples.npz and README.md to --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="output directory",
    )
    ap.add_argument("--epochs", type=int, default=40, help="training epochs")
    ap.add_argument("--batch-size", type=int, default=32, help="mini-batch size")
    ap.add_argument(
        "--lr",
        type=float,
        default=3e-3,
        help="peak Adam learning rate (cosine-decayed to 0)",
    )
    ap.add_argument(
        "--seed", type=int, default=0, help="seed for the split, init and shuffling"
    )
    args = ap.parse_args()
    if args.epochs < 1:
        ap.error("--epochs must be >= 1")

    x_tr, y_tr, x_te, y_te = load_data(args.seed)
    print(f"train {len(x_tr)}  test {len(x_te)}")

    t0 = time.perf_counter()
    weights, stats = train(x_tr, y_tr, args.epochs, args.batch_size, args.lr, args.seed)
    seconds = time.perf_counter() - t0
    params = {**weights, **stats}

    probs_np = forward_eval(x_te, params)
    acc = float((probs_np.argmax(axis=1) == y_te).mean())

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "digits_cnn.onnx"
    onnx.save(build_onnx(params), onnx_path)
    onnx.checker.check_model(str(onnx_path), full_check=True)

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probs_ort = sess.run(["probs"], {"x": x_te})[0]
    diff = float(np.abs(probs_ort - probs_np).max())
    if diff >= 1e-5:
        raise SystemExit(f"onnxruntime and numpy disagree: max abs diff {diff:.3g}")
    acc_ort = float((probs_ort.argmax(axis=1) == y_te).mean())

    np.savez(
        args.out / "samples.npz",
        x=x_te[:N_SAMPLES].astype(np.float32),
        y=y_te[:N_SAMPLES].astype(np.int64),
        probs=probs_ort[:N_SAMPLES].astype(np.float32),
    )
    size = onnx_path.stat().st_size
    write_readme(args.out / "README.md", acc_ort, len(y_te), args.epochs, size)

    print(f"training time {seconds:.1f} s")
    print(f"onnxruntime vs numpy max abs diff {diff:.2e}")
    print(f"test accuracy {acc_ort * 100:.2f}% (numpy {acc * 100:.2f}%)")
    print(f"wrote {onnx_path} ({size} bytes), samples.npz, README.md")


if __name__ == "__main__":
    main()
