"""PyTorch round trip: export a torch model to ONNX, build it with --weights file (native and wasm), change the
weights in PyTorch, save the state_dict (.pt, nested, prefixed, .safetensors), and `onnx-emit weights` writes a
model.weights that reproduces PyTorch's new outputs in the unchanged builds. Key matching errors are one line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch  # the test extras pin torch==2.13.0 (make test installs it); missing, this module fails, never skips

import emit

from .helpers import run_cli


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def _randomize(net: Net, seed: int) -> Net:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(net.parameters()) + [net.bn.running_mean, net.bn.running_var]:
            t.copy_(torch.rand(t.shape, generator=g) * 0.8 + 0.1 if t is net.bn.running_var else torch.randn(t.shape, generator=g) * 0.3)
    return net.eval()


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torch")
    net = _randomize(Net(), 0)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    onnx_path = tmp / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # no constant folding: the initializers keep the state_dict's names (folding would fold BatchNorm into onnx::Conv_*)
        torch.onnx.export(net, (x,), str(onnx_path), dynamo=False, do_constant_folding=False, input_names=["x"], output_names=["y"])
    builds = {}
    for target in ("native", "wasm"):
        builds[target] = tmp / target
        emit.export(onnx_path, target=target, out=builds[target], weights="file")
    retrained = _randomize(Net(), 5)  # as if trained further: every value differs
    with torch.no_grad():
        want = retrained(x).numpy()
    sd = retrained.state_dict()
    torch.save(sd, tmp / "plain.pt")
    torch.save({"epoch": 3, "model": {f"module.{k}": v for k, v in sd.items()}}, tmp / "nested.pt")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp / "ckpt.safetensors"))
    return {"tmp": tmp, "onnx": onnx_path, "builds": builds, "x": x.numpy(), "want": want, "old": net(x).detach().numpy()}


@pytest.mark.parametrize("ckpt,extra", [("plain.pt", []), ("nested.pt", ["--top-level-key", "model", "--key-remap", r"^module\.="]),
                                         ("ckpt.safetensors", [])])
@pytest.mark.parametrize("target", ["native", "wasm"])
def test_new_weights_reproduce_pytorch(case, ckpt, extra, target):
    out = case["builds"][target]
    np.testing.assert_allclose(emit.load(out).run(x=case["x"])["y"], case["old"], atol=1e-5)
    blob = out / f"from-{ckpt}.weights"
    proc = run_cli("weights", case["onnx"], "--from", case["tmp"] / ckpt, "-o", blob, *extra)
    assert proc.returncode == 0, proc.stderr
    assert "ignored bn.num_batches_tracked" in proc.stdout
    got = emit.load(out, weights=blob).run(x=case["x"])["y"]
    np.testing.assert_allclose(got, case["want"], atol=1e-5)
    assert np.abs(case["want"] - case["old"]).max() > 0.1  # the new weights really changed the outputs


def test_list_keys_and_one_line_mismatch_report(case, tmp_path):
    nested = case["tmp"] / "nested.pt"
    proc = run_cli("weights", case["onnx"], "--from", nested, "--top-level-key", "model", "--key-remap", r"^module\.=", "--list-keys")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("module.conv.weight"))
    assert line.split()[:3] == ["module.conv.weight", "conv.weight", "[4,"] and line.split()[-1] == "ok"
    assert "ignored" in next(ln for ln in proc.stdout.splitlines() if ln.startswith("module.bn.num_batches_tracked"))
    # without the remap nothing matches: every key is reported, all at once, on one line
    proc = run_cli("weights", case["onnx"], "--from", nested, "--top-level-key", "model", "-o", tmp_path / "w")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "missing 8 (conv.weight, conv.bias, bn.weight" in proc.stderr and "unexpected 8 (module.conv.weight" in proc.stderr
    other = {k: v for k, v in torch.load(case["tmp"] / "plain.pt").items() if k != "fc.bias"}
    other["fc.weight"] = torch.zeros(3, 10)
    other["head.weight"] = torch.zeros(2)
    torch.save(other, tmp_path / "bad.pt")
    proc = run_cli("weights", case["onnx"], "--from", tmp_path / "bad.pt", "-o", tmp_path / "w")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "missing 1 (fc.bias); unexpected 1 (head.weight); shape mismatch 1 (fc.weight: checkpoint [3, 10], model [3, 144])" in proc.stderr


def test_evil_and_wrong_checkpoints_are_refused(case, tmp_path):
    import pickle
    import zipfile

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {tmp_path}/pwned",))

    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"conv.weight": Evil()}, protocol=2))
    proc = run_cli("weights", case["onnx"], "--from", tmp_path / "evil.pt", "-o", tmp_path / "w")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "only tensor rebuild calls are allowed" in proc.stderr
    assert not (tmp_path / "pwned").exists()
    embedded = tmp_path / "embedded"
    emit.export(case["onnx"], target="c", out=embedded)
    proc = run_cli("weights", case["onnx"], "--from", case["tmp"] / "plain.pt", "-o", embedded / "model.weights")
    assert proc.returncode == 2 and "embeds its weights" in proc.stderr
    info = json.loads((case["builds"]["native"] / "manifest.json").read_text())
    assert info["export"]["weight_dtype"] == "f32"
