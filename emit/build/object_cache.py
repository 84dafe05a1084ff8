"""Compiled runtime kernels kept between builds.

Every export copies the same runtime_c kernels (gemm.c, conv.c, ...) into its folder, and compiling them at -O3
is most of a native or wasm build (gcc: ~7 s for gemm.c, ~3 s for conv.c). Their object depends only on the
kernel's text, the headers beside it (emit_runtime.h carries the model's feature macros), the compiler and its
flags, and, for -march=native, the CPU: that is the key. Objects live under <cache>/objects
($ONNX_EMIT_CACHE, else ~/.cache/onnx-emit); ONNX_EMIT_OBJECT_CACHE=0 turns the cache off.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from ..errors import EmitError
from ..models_zoo import default_cache_dir
from ..resources import runtime_c

_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
KEEP_OBJECTS = 256  # the newest this many stay; older ones are deleted when a new one is written

Compile = Callable[[list[str]], None]  # runs one compiler command, raising EmitError if it fails


def run_compiler(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    """Run one compiler command; on failure an EmitError "<what> failed: <its first error line>"."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        out = proc.stderr + proc.stdout
        lines = [ln for ln in out.splitlines() if "error" in ln.lower()] or out.splitlines()[-1:]
        raise EmitError(f"{what} failed: {(lines[0] if lines else Path(cmd[0]).name + ' exited ' + str(proc.returncode))[:400]}")


def is_runtime_kernel(source: str) -> bool:
    """A kernel copied from runtime_c (cached); not model.c, the glue or a custom operator's C (compiled each time)."""
    return (runtime_c() / source).is_file()


def enabled() -> bool:
    return os.environ.get("ONNX_EMIT_OBJECT_CACHE", "1") != "0"


@cache
def _compiler_identity(compiler: str) -> str:
    """The compiler's resolved file with its size and time: a package upgrade changes them."""
    found = shutil.which(compiler) or compiler
    real = os.path.realpath(found)
    try:
        st = os.stat(real)
    except OSError:
        return real
    return f"{real}:{st.st_size}:{st.st_mtime_ns}"


@cache
def _cpu_identity() -> str:
    """What -march=native / -mcpu=native tune for: the CPU model and its feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return f"{platform.machine()}:{platform.processor()}"
    wanted = ("model name", "flags", "Features", "CPU part", "CPU implementer")
    picked = {ln.split(":")[0].strip(): ln for ln in lines if ln.split(":")[0].strip() in wanted}
    return "\n".join(sorted(picked.values())) or platform.machine()


def object_key(argv: list[str], source: Path) -> str:
    """sha256 of the command (without the source and the output), the source, and its folder's headers."""
    h = hashlib.sha256()
    h.update(_compiler_identity(argv[0]).encode())
    h.update("\0".join(argv[1:]).encode())
    if any(a.endswith("=native") for a in argv):
        h.update(_cpu_identity().encode())
    for f, data in _quoted_includes(source).items():
        h.update(f"\0{f.name}\0".encode())
        h.update(data)
    return h.hexdigest()


def _quoted_includes(source: Path) -> dict[Path, bytes]:
    """source and the files beside it that it includes by `#include "name"`, transitively, with their bytes."""
    seen: dict[Path, bytes] = {}
    todo = [source]
    while todo:
        f = todo.pop()
        if f in seen or not f.is_file():
            continue
        seen[f] = f.read_bytes()
        todo += [f.parent / name for name in _INCLUDE.findall(seen[f].decode(errors="replace"))]
    return seen


def compiled(argv: list[str], source: Path, out_dir: Path, compile: Compile) -> Path:
    """An object of `argv + [-c source -o obj]`, from the cache when one was built before.

    argv must not name the export's folder (it is the same kernel in every folder): the caller runs the
    compiler with the folder as its working directory or include path. Without a writable cache the object
    is compiled into out_dir.
    """
    root = default_cache_dir() / "objects"
    if enabled():
        target = root / f"{object_key(argv, source)}-{source.stem}.o"
        if target.is_file():
            os.utime(target)  # recently used: kept by _prune
            return target
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".o", dir=root)
            os.close(fd)
        except OSError:
            pass
        else:
            try:
                compile([*argv, "-c", str(source), "-o", tmp])
                os.replace(tmp, target)  # atomic: a concurrent build sees the whole object or none
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            _prune(root)
            return target
    obj = out_dir / f"{source.stem}.o"
    compile([*argv, "-c", str(source), "-o", str(obj)])
    return obj


def _prune(root: Path) -> None:
    def mtime(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:  # deleted by a concurrent build
            return 0.0

    objects = sorted(root.glob("*.o"), key=mtime, reverse=True)
    for old in objects[KEEP_OBJECTS:]:
        try:
            old.unlink()
        except OSError:
            pass
