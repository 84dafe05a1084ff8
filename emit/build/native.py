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
from .object_cache import compiled, is_runtime_kernel, run_compiler


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
    infos = {folder: json.loads((folder / "manifest.json").read_text()) for folder in folders}
    # the kernels once, from the folder with the most runtime features (emit_runtime.h defines them): every
    # other folder's must be among them, or one module could not hold both builds of a kernel
    richest = max(folders, key=lambda f: len(infos[f].get("features", [])))
    features = set(infos[richest].get("features", []))
    for folder, info in infos.items():
        if not set(info.get("features", [])) <= features:
            raise EmitError(f"{folder} and {richest} need different runtime features; build them as separate modules")
        cflags += [f for f in info.get("cflags", []) if f not in cflags]  # --threads N
        ldflags += [f for f in info.get("ldflags", []) if f not in ldflags]
        decls.append(prototypes(info))
        for src in info["sources"]:
            if not is_runtime_kernel(src):  # model.c, a custom operator's kernel
                sources.append(str((folder / src).resolve()))
            else:
                home = richest if (richest / src).is_file() else folder
                kernels.setdefault(src, str((home / src).resolve()))
    cflags = list(target_config("native").get("cflags", [])) + cflags
    cdef = "".join(decls)
    ffi.cdef(cdef)
    with tempfile.TemporaryDirectory(prefix="emit-build-") as tmp:
        # the runtime kernels, the same in every export: compiled once per (text, flags, compiler, CPU)
        command, objects = _compiler_command(), []
        if command is None:
            sources += sorted(kernels.values())
        else:
            objects = [str(compiled([*command, *cflags], Path(src), Path(tmp),
                                    lambda cmd: run_compiler(cmd, "native build")))
                       for _, src in sorted(kernels.items())]
        ffi.set_source(
            module,
            "#include <stdint.h>\n#include <stdbool.h>\n" + cdef,
            sources=sources,
            include_dirs=[str(folders[0].resolve())],
            extra_compile_args=cflags,
            extra_objects=objects,
            extra_link_args=ldflags,
            libraries=["m"],
        )
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


def _compiler_command() -> list[str] | None:
    """The C compiler and flags setuptools compiles extensions with (Python's own, or $CC and $CFLAGS);
    None for a compiler that is not driven by one command line (MSVC): cffi then compiles the kernels."""
    import setuptools  # noqa: F401, I001  (first: it provides distutils on Python 3.12+)
    from distutils.ccompiler import new_compiler
    from distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    return list(compiler.compiler_so) if hasattr(compiler, "compiler_so") else None


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
