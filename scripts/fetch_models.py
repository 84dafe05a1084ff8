"""Fetch the real ONNX models of tests/models.tsv into the cache (emit/models_zoo.py).

    python scripts/fetch_models.py --list
    python scripts/fetch_models.py ppocrv4_det mtcnn_pnet
    python scripts/fetch_models.py --all [--cache DIR] [--tsv FILE]

Exit status: 0 when every model is in the cache with the right sha256, 2 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
from types import ModuleType

ZOO_PY = pathlib.Path(__file__).resolve().parent.parent / "emit" / "models_zoo.py"


def _load_zoo() -> ModuleType:
    # Loaded by path, not `import emit.models_zoo`: the module is stdlib-only, and
    # `import emit` would pull in the whole compiler (onnx, numpy) just to fetch files.
    spec = importlib.util.spec_from_file_location("emit_models_zoo", ZOO_PY)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # @dataclass looks its module up while executing
    spec.loader.exec_module(mod)
    return mod


models_zoo = _load_zoo()


def _list(table: list[models_zoo.ModelEntry]) -> None:
    width = max(len(e.id) for e in table)
    tier_w = max(len(e.tier) for e in table)
    for e in table:
        head = f"{e.id:<{width}}  {e.tier:<{tier_w}}  opset {e.opset:>2}"
        print(f"{head}  {e.input_shapes_used}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fetch the models listed in models.tsv.")
    ap.add_argument("ids", nargs="*", metavar="ID", help="model ids to fetch")
    ap.add_argument("--all", action="store_true", help="fetch every model in the table")
    ap.add_argument("--list", action="store_true", help="print id, tier, opset, shapes")
    ap.add_argument(
        "--cache",
        metavar="DIR",
        help="cache root (default: $ONNX_EMIT_CACHE or ~/.cache/onnx-emit)",
    )
    ap.add_argument("--tsv", metavar="FILE", help="model table (default: tests/models.tsv)")
    args = ap.parse_args(argv)
    prog = ap.prog

    try:
        table = models_zoo.load_table(args.tsv)
    except models_zoo.FetchError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if args.list:
        _list(table)
        if not (args.ids or args.all):
            return 0
    if not (args.ids or args.all):
        ap.error("give model ids, --all or --list")  # exits 2

    known = {e.id for e in table}
    unknown = [i for i in args.ids if i not in known]
    if unknown:
        print(
            f"{prog}: error: unknown model id(s) {', '.join(unknown)} (see --list)",
            file=sys.stderr,
        )
        return 2
    ids = [e.id for e in table] if args.all else list(dict.fromkeys(args.ids))

    failed = 0
    for model_id in ids:
        print(f"fetching {model_id} ... ", end="", flush=True)
        try:
            path = models_zoo.fetch(model_id, cache_dir=args.cache, tsv=args.tsv)
        except models_zoo.FetchError as e:
            print("FAILED", flush=True)
            print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
            failed += 1
            continue
        print(f"ok ({path.stat().st_size} bytes)", flush=True)
    if failed:
        print(f"{prog}: error: {failed} of {len(ids)} model(s) failed", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(2)
