"""emit.checkpoints: read torch.save / safetensors files exactly as torch wrote them, refuse anything else in one line."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from collections import OrderedDict

import ml_dtypes
import numpy as np
import pytest
import torch  # the test extras pin torch==2.13.0 (make test installs it); missing, this module fails, never skips

from emit.checkpoints import CheckpointError, parse_remap_rule, read_checkpoint, remap_keys
from emit.errors import EmitError

nn = torch.nn


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(8, 5)


def _trained_net() -> _Net:
    """A net whose BatchNorm buffers moved away from their initial values (num_batches_tracked = 2)."""
    torch.manual_seed(0)
    net = _Net()
    net.train()
    for _ in range(2):
        net.bn(net.conv(torch.randn(2, 3, 6, 6)))
    return net


def _assert_same(ours: dict[str, np.ndarray], theirs: dict) -> None:
    assert list(ours) == list(theirs)
    for name, tensor in theirs.items():
        tensor = tensor.detach()
        if tensor.dtype == torch.bfloat16:
            assert ours[name].dtype == ml_dtypes.bfloat16, name
            assert np.array_equal(ours[name].view(np.int16), tensor.view(torch.int16).numpy()), name
        else:
            expected = tensor.numpy()
            assert ours[name].dtype == expected.dtype and ours[name].shape == expected.shape, name
            assert np.array_equal(ours[name], expected), name
        assert ours[name].flags.c_contiguous, name


def _message(path, **kwargs) -> str:
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path, **kwargs)
    text = str(caught.value)
    assert "\n" not in text
    return text


def _torch_like_zip(path, obj, storages: dict[str, bytes], persistent_id=None, protocol: int = 2) -> None:
    """A zip laid out like torch.save writes it (archive/data.pkl + archive/data/<key>), pickled without torch."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=protocol)
    if persistent_id is not None:
        pickler.persistent_id = persistent_id
    pickler.dump(obj)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            archive.writestr(f"archive/data/{key}", raw)


class _StorageRef:
    """Pickled as the persistent id torch uses for a float32 storage of `numel` elements."""

    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


def _storage_id(obj):
    return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel) if isinstance(obj, _StorageRef) else None


class _ForgedTensor:
    def __init__(self, storage: _StorageRef, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


# ---- torch.save files


def test_state_dict_float32_and_int64_buffer(tmp_path):
    state = _trained_net().state_dict()
    torch.save(state, tmp_path / "net.pt")
    ours = read_checkpoint(tmp_path / "net.pt")
    _assert_same(ours, state)
    assert ours["bn.num_batches_tracked"].dtype == np.int64 and int(ours["bn.num_batches_tracked"]) == 2
    assert ours["conv.weight"].shape == (4, 3, 3, 3)


def test_dtypes_views_and_shared_storage(tmp_path):
    big = torch.arange(12, dtype=torch.float32) * 1.5
    tensors = {
        "big": big,
        "window": big[3:7],  # shares big's storage at offset 3
        "strided": big[1::4],
        "transposed": torch.arange(6, dtype=torch.float32).reshape(2, 3).t(),
        "half": torch.tensor([0.1, -2.5, 65504.0], dtype=torch.float16),
        "bf16": torch.tensor([[1.0, -3.140625], [1e30, 0.0]], dtype=torch.bfloat16),
        "flags": torch.tensor([True, False, True]),
        "int8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "int16": torch.tensor([-32768, 7], dtype=torch.int16),
        "int32": torch.tensor([2**31 - 1], dtype=torch.int32),
        "float64": torch.tensor([1 / 3], dtype=torch.float64),
        "scalar": torch.tensor(7, dtype=torch.int64),
        "empty": torch.zeros(0, 3),
        "param": nn.Parameter(torch.tensor([1.0, 2.0])),
    }
    torch.save(tensors, tmp_path / "mixed.pt")
    ours = read_checkpoint(tmp_path / "mixed.pt")
    _assert_same(ours, tensors)
    assert ours["window"].tolist() == [4.5, 6.0, 7.5, 9.0]
    assert ours["transposed"].tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    ours["window"][0] = -1.0  # a copy: writing to a view must not change its neighbour
    assert ours["big"][3] == 4.5


def test_parameters_kept_as_vars(tmp_path):
    state = _trained_net().state_dict(keep_vars=True)  # pickled through torch._utils._rebuild_parameter
    torch.save(state, tmp_path / "vars.pt")
    _assert_same(read_checkpoint(tmp_path / "vars.pt"), state)


def test_nested_checkpoint_is_flattened_and_non_tensors_skipped(tmp_path):
    state = _trained_net().state_dict()
    torch.save({"epoch": 3, "note": "best", "lr": [0.1], "state_dict": state}, tmp_path / "ckpt.pt")
    flat = read_checkpoint(tmp_path / "ckpt.pt")
    _assert_same(flat, {f"state_dict.{name}": tensor for name, tensor in state.items()})
    _assert_same(read_checkpoint(tmp_path / "ckpt.pt", top_level_key="state_dict"), state)


def test_top_level_key_missing(tmp_path):
    torch.save({"epoch": 3, "model": {"w": torch.ones(1)}}, tmp_path / "ckpt.pt")
    assert _message(tmp_path / "ckpt.pt", top_level_key="state_dict") == (
        "ckpt.pt: no top-level key 'state_dict'; the checkpoint has: 'epoch', 'model'"
    )
    assert _message(tmp_path / "ckpt.pt", top_level_key="epoch") == "ckpt.pt: entry 'epoch' is an int, not a dict of named tensors"


def test_big_endian_archive(tmp_path):
    tensors = {"f": torch.tensor([1.5, -2.0]), "bf": torch.tensor([3.0, -0.5], dtype=torch.bfloat16), "i": torch.tensor([1, -2])}
    torch.save(tensors, tmp_path / "le.pt")
    with zipfile.ZipFile(tmp_path / "le.pt") as little, zipfile.ZipFile(tmp_path / "be.pt", "w") as big:
        for entry in little.namelist():
            data = little.read(entry)
            if entry == "le/byteorder":
                data = b"big"
            elif entry.startswith("le/data/"):
                itemsize = {"0": 4, "1": 2, "2": 8}[entry.removeprefix("le/data/")]  # storages f, bf, i in save order
                data = np.frombuffer(data, f"<u{itemsize}").astype(f">u{itemsize}").tobytes()
            big.writestr(entry, data)
    _assert_same(read_checkpoint(tmp_path / "be.pt"), tensors)


# ---- safetensors files


def test_safetensors_all_dtypes(tmp_path):
    from safetensors.torch import save_file

    tensors = {
        "f64": torch.tensor([1 / 3, -2.0], dtype=torch.float64),
        "f32": torch.randn(3, 4),
        "f16": torch.tensor([[0.5, 65504.0]], dtype=torch.float16),
        "bf16": torch.tensor([1.0, -3.140625, 1e30], dtype=torch.bfloat16),
        "i64": torch.tensor([-(2**63), 2**63 - 1]),
        "i32": torch.tensor([-5, 6], dtype=torch.int32),
        "i16": torch.tensor([-32768], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "mask": torch.tensor([[True, False], [False, True]]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(2, 0),
    }
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    ours = read_checkpoint(tmp_path / "model.safetensors")
    _assert_same({name: ours[name] for name in tensors}, tensors)  # the file sorts names; compare in our order
    assert sorted(ours) == sorted(tensors)


def test_safetensors_found_by_content_and_top_level_key(tmp_path):
    from safetensors.numpy import save_file

    save_file({"model.fc.weight": np.eye(2, dtype=np.float32), "head.bias": np.ones(3, np.float32)}, str(tmp_path / "w.bin"))
    assert sorted(read_checkpoint(tmp_path / "w.bin")) == ["head.bias", "model.fc.weight"]
    picked = read_checkpoint(tmp_path / "w.bin", top_level_key="model")
    assert list(picked) == ["fc.weight"] and np.array_equal(picked["fc.weight"], np.eye(2))
    assert _message(tmp_path / "w.bin", top_level_key="state_dict") == (
        "w.bin: no top-level key 'state_dict'; the checkpoint has: 'head.bias', 'model.fc.weight'"
    )


def _safetensors_bytes(header: dict, data: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def test_safetensors_truncated(tmp_path):
    from safetensors.numpy import save_file

    save_file({"w": np.arange(64, dtype=np.float32)}, str(tmp_path / "full.safetensors"))
    whole = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(whole[:-10])
    assert _message(tmp_path / "cut.safetensors") == (
        "cut.safetensors: tensor 'w' ends at data byte 256 but the file holds 246 data bytes (truncated?)"
    )
    (tmp_path / "head.safetensors").write_bytes(whole[:20])
    header_size = struct.unpack("<Q", whole[:8])[0]
    assert _message(tmp_path / "head.safetensors") == (
        f"head.safetensors: safetensors header of {header_size} bytes runs past the end of the 20-byte file (truncated?)"
    )
    (tmp_path / "tiny.safetensors").write_bytes(b"\x01\x02")
    assert _message(tmp_path / "tiny.safetensors") == "tiny.safetensors: 2 bytes is too short for a safetensors file (no header length)"


def test_safetensors_bad_headers(tmp_path):
    cases = {
        "dtype": ({"x": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8,
                  "tensor 'x' has dtype 'C64'; supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL"),
        "size": ({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8,
                 "tensor 'x' has 8 bytes, shape [3] of F32 needs 12"),
        "offsets": ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 8,
                    "safetensors header entry 'x' has a bad shape or data_offsets: "
                    "{'dtype': 'F32', 'shape': [1], 'data_offsets': [4, 0]}"),
        "json": (None, b"", "safetensors header is not valid JSON: JSONDecodeError: Expecting ',' delimiter: line 1 column 8 (char 7)"),
    }  # fmt: skip
    for name, (header, data, expected) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(_safetensors_bytes(header, data) if header is not None else struct.pack("<Q", 8) + b'{"a":1 2')
        assert _message(path) == f"{name}.safetensors: {expected}"


# ---- refusals


def test_pickle_calling_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"echo pwned > {marker}",)

    path = tmp_path / "ckpt.pt"
    _torch_like_zip(path, {"w": Exploit()}, {})
    assert _message(path) == (
        f"ckpt.pt: refusing to load '{os.system.__module__}.system' from the pickle: only tensor rebuild calls are allowed"
    )
    assert not marker.exists()


@pytest.mark.parametrize("protocol, name", [(2, "__builtin__.eval"), (4, "builtins.eval")])  # protocol 2 uses Python 2 names
def test_other_globals_are_refused(tmp_path, protocol, name):
    class CallsEval:
        def __reduce__(self):
            return eval, ("1 + 1",)

    _torch_like_zip(tmp_path / "e.pt", [CallsEval()], {}, protocol=protocol)
    assert _message(tmp_path / "e.pt") == (
        f"e.pt: refusing to load '{name}' from the pickle: only tensor rebuild calls are allowed"
    )


def test_stride_past_storage_is_an_error(tmp_path):
    storage = _StorageRef("0", 4)
    raw = np.arange(4, dtype="<f4").tobytes()
    _torch_like_zip(tmp_path / "ok.pt", {"t": _ForgedTensor(storage, 1, (2,), (2,))}, {"0": raw}, _storage_id)
    assert read_checkpoint(tmp_path / "ok.pt")["t"].tolist() == [1.0, 3.0]
    _torch_like_zip(tmp_path / "far.pt", {"t": _ForgedTensor(storage, 1, (2, 2), (2, 1))}, {"0": raw}, _storage_id)
    assert _message(tmp_path / "far.pt") == (
        "far.pt: tensor of size [2, 2] with stride [2, 1] at offset 1 reaches element 4 of a storage of 4 elements"
    )
    _torch_like_zip(tmp_path / "neg.pt", {"t": _ForgedTensor(storage, 0, (2,), (-1,))}, {"0": raw}, _storage_id)
    assert _message(tmp_path / "neg.pt") == "neg.pt: tensor with a bad offset, size or stride: [0, 2, -1]"
    _torch_like_zip(tmp_path / "short.pt", {"t": _ForgedTensor(_StorageRef("0", 8), 0, (2,), (1,))}, {"0": raw}, _storage_id)
    assert _message(tmp_path / "short.pt") == (
        "short.pt: storage 'archive/data/0' holds 16 bytes, the pickle expects 8 x FloatStorage (32 bytes)"
    )
    _torch_like_zip(tmp_path / "gone.pt", {"t": _ForgedTensor(_StorageRef("7", 1), 0, (1,), (1,))}, {"0": raw}, _storage_id)
    assert _message(tmp_path / "gone.pt") == "gone.pt: storage 'archive/data/7' named by the pickle is missing from the archive"


def _raw_pickle_zip(path, pickled: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)


def test_pickle_cannot_patch_the_rebuild_functions(tmp_path):
    # GLOBAL torch._utils._rebuild_tensor_v2, then BUILD {'function': 1} on it
    _raw_pickle_zip(tmp_path / "patch.pt", b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x08\x00\x00\x00functionK\x01sb.")
    assert _message(tmp_path / "patch.pt") == "patch.pt: the pickle tries to modify a tensor-rebuild object (BUILD)"
    _raw_pickle_zip(tmp_path / "junk.pt", b"\x80\x02not a pickle")
    assert _message(tmp_path / "junk.pt") == (
        "junk.pt: archive/data.pkl is not a valid torch.save pickle: UnpicklingError: invalid load key, 'n'."
    )


def test_corrupt_storage_bytes(tmp_path):
    torch.save({"w": torch.arange(16, dtype=torch.float32)}, tmp_path / "crc.pt")
    data = bytearray((tmp_path / "crc.pt").read_bytes())
    with zipfile.ZipFile(tmp_path / "crc.pt") as archive:
        info = archive.getinfo("crc/data/0")
    name_size, extra_size = struct.unpack_from("<HH", data, info.header_offset + 26)  # from the local header
    data[info.header_offset + 30 + name_size + extra_size + 5] ^= 0xFF  # a byte of the stored floats
    (tmp_path / "crc.pt").write_bytes(data)
    assert _message(tmp_path / "crc.pt") == "crc.pt: corrupt or truncated zip archive: BadZipFile: Bad CRC-32 for file 'crc/data/0'"


def test_damaged_files_only_raise_checkpoint_errors(tmp_path):
    torch.save({"epoch": 1, "model": _trained_net().state_dict()}, tmp_path / "good.pt")
    from safetensors.torch import save_file

    save_file(_trained_net().state_dict(), str(tmp_path / "good.safetensors"))
    rng = np.random.default_rng(0)
    failures = 0
    for source in ("good.pt", "good.safetensors"):
        whole = (tmp_path / source).read_bytes()
        damaged = tmp_path / f"bad{os.path.splitext(source)[1]}"
        for trial in range(300):
            data = bytearray(whole[: rng.integers(0, len(whole))] if trial % 3 == 0 else whole)
            if trial % 3:
                for position in rng.integers(0, min(len(data), 4000 if trial % 3 == 1 else len(data)), 3):
                    data[position] = rng.integers(0, 256)
            damaged.write_bytes(bytes(data))
            try:
                read_checkpoint(damaged)
            except CheckpointError as error:
                assert str(error).startswith(f"{damaged.name}: ") and "\n" not in str(error)
                failures += 1
    assert failures >= 300  # every truncation fails, most flipped bytes do


def test_truncated_torch_file(tmp_path):
    torch.save(_trained_net().state_dict(), tmp_path / "full.pt")
    whole = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    assert _message(tmp_path / "cut.pt") == (
        "cut.pt: not a readable zip archive (truncated or corrupt?): BadZipFile: File is not a zip file"
    )


def test_random_bytes_empty_and_missing(tmp_path):
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert _message(tmp_path / "noise.pt") == (
        "noise.pt: not a PyTorch checkpoint: neither a torch.save zip archive nor a safetensors file"
    )
    (tmp_path / "empty.pt").write_bytes(b"")
    assert _message(tmp_path / "empty.pt") == "empty.pt: empty file"
    assert _message(tmp_path / "nope.pt") == "nope.pt: no such file"
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hi")
    assert _message(tmp_path / "other.zip") == (
        "other.zip: zip archive without a single '<archive>/data.pkl' entry: not a torch.save checkpoint"
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated in favour of torch.export
def test_torchscript_archive(tmp_path):
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(tmp_path / "scripted.pt"))
    assert _message(tmp_path / "scripted.pt") == (
        "scripted.pt: this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; "
        "load it in PyTorch and re-save the weights with torch.save(model.state_dict(), path)"
    )


def test_legacy_torch_format(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert _message(tmp_path / "old.pt") == (
        "old.pt: this is the legacy (non-zip, PyTorch < 1.6) torch.save format, which is not supported; "
        "load it in PyTorch and re-save the weights with torch.save(model.state_dict(), path)"
    )


def test_error_is_an_emit_error():
    assert issubclass(CheckpointError, EmitError)


# ---- key remapping


def test_remap_rules_apply_in_order():
    names = ["module.encoder.fc.weight", "module.encoder.fc.bias", "head.weight"]
    renamed = remap_keys(names, [r"^module\.=", r"encoder\.(\w+)=enc_\1", r"(?<=head)\.weight=.w"])
    assert renamed == {"module.encoder.fc.weight": "enc_fc.weight", "module.encoder.fc.bias": "enc_fc.bias", "head.weight": "head.w"}
    assert remap_keys(names, []) == {name: name for name in names}


def test_remap_rule_splits_at_last_equals():
    pattern, replacement = parse_remap_rule(r"a(?=b)=X")
    assert (pattern.pattern, replacement) == ("a(?=b)", "X")
    assert remap_keys(["ab", "ac"], [r"a(?=b)=X"]) == {"ab": "Xb", "ac": "ac"}


def test_remap_rule_errors():
    with pytest.raises(CheckpointError) as caught:
        remap_keys(["a"], ["fc(=x"])
    assert str(caught.value) == "remap rule 'fc(=x': bad regular expression: missing ), unterminated subpattern at position 2"
    with pytest.raises(CheckpointError) as caught:
        parse_remap_rule("no-equals-sign")
    assert str(caught.value) == "remap rule 'no-equals-sign': expected 'REGEX=REPLACEMENT'"
    with pytest.raises(CheckpointError) as caught:
        remap_keys(["fc.weight"], [r"(fc)=\2"])
    assert str(caught.value) == r"remap rule '(fc)=\2': bad replacement: invalid group reference 2 at position 1"
    with pytest.raises(CheckpointError) as caught:
        remap_keys(["a.weight", "b.weight"], [r"^\w+\.=x."])
    assert str(caught.value) == "remap rules rename both 'a.weight' and 'b.weight' to 'x.weight'"
