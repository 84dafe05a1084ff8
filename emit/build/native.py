"""Native builder: the C folder → a cffi extension module loaded by `emit.load`."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import EmitError
from ..targets import target_config


def prototypes(info: dict) -> str:
    p = info["prefix"]
    extra = f"int {p}_load_weights(const void *blob, size_t nbytes);\n" if "load_weights" in info["functions"] else ""
    return f"int {p}_run({info['signature']});\n" + extra


def module_name(prefix: str) -> str:
    return f"_emit_{prefix}"


def build_extension(folders: list[Path], module: str, out_dir: Path, quiet: bool = True) -> Path:
    """Compile one or more C folders into one cffi extension module `module` in out_dir."""
    import cffi

    ffi = cffi.FFI()
    decls, sources, kernels, cflags, ldflags = [], [], {}, [], []
    for folder in folders:
        info = json.loads((folder / "manifest.json").read_text())
        cflags += [f for f in info.get("cflags", []) if f not in cflags]  # --threads N
        ldflags += [f for f in info.get("ldflags", []) if f not in ldflags]
        decls.append(prototypes(info))
        for src in info["sources"]:
            if src == "model.c":
                sources.append(str((folder / src).resolve()))
            else:
                kernels.setdefault(src, str((folder / src).resolve()))  # identical across folders: once
    sources += sorted(kernels.values())
    cdef = "".join(decls)
    ffi.cdef(cdef)
    ffi.set_source(
        module,
        "#include <stdint.h>\n#include <stdbool.h>\n" + cdef,
        sources=sources,
        include_dirs=[str(folders[0].resolve())],
        extra_compile_args=list(target_config("native").get("cflags", [])) + cflags,
        extra_link_args=ldflags,
        libraries=["m"],
    )
    with tempfile.TemporaryDirectory(prefix="emit-build-") as tmp:
        try:
            if quiet:
                built = _quietly(lambda: ffi.compile(tmpdir=tmp, verbose=False))
            else:
                built = ffi.compile(tmpdir=tmp, verbose=True)
        except Exception as exc:
            raise EmitError(f"native build failed: {str(exc).strip().splitlines()[-1][:400]}") from None
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / Path(built).name
        shutil.move(built, target)
    return target


def _quietly(fn):
    """Run fn with the compiler's stdout/stderr captured; show them only if it fails."""
    with tempfile.TemporaryFile(mode="w+") as log:
        saved = os.dup(1), os.dup(2)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            return fn()
        except Exception as exc:
            log.seek(0)
            errors = [ln for ln in log.read().splitlines() if "error" in ln]
            raise RuntimeError(errors[0] if errors else str(exc)) from None
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def build_native(folder: Path, quiet: bool = True) -> Path:
    info = json.loads((folder / "manifest.json").read_text())
    path = build_extension([folder], module_name(info["prefix"]), folder, quiet)
    info["native"] = {"module": module_name(info["prefix"]), "file": path.name}
    (folder / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
    return path
