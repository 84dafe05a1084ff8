"""Maps runtime_c/, wasm/ and targets/ into the package as emit/_assets/ when a wheel is built,
so an installed onnx-emit works outside the repo (emit/resources.py finds them either way)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ASSETS = ("runtime_c", "wasm", "targets")


class BuildWithAssets(build_py):
    def run(self) -> None:
        super().run()
        root = Path(__file__).resolve().parent
        for name in ASSETS:
            src = root / name
            if src.is_dir():
                dst = Path(self.build_lib) / "emit" / "_assets" / name
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.o", "*.so", "__pycache__"))


setup(cmdclass={"build_py": BuildWithAssets})
