"""Target settings are data: one TOML file per target in targets/ (a user adds a board by adding a file)."""

from __future__ import annotations

import tomllib
from functools import cache

from .errors import EmitError
from .resources import asset_dir


def available() -> list[str]:
    return sorted(p.stem for p in asset_dir("targets").glob("*.toml"))


@cache
def target_config(name: str) -> dict:
    path = asset_dir("targets") / f"{name}.toml"
    if not path.is_file():
        raise EmitError(f"unknown target '{name}' (targets: {', '.join(available())})")
    with path.open("rb") as f:
        return tomllib.load(f)
