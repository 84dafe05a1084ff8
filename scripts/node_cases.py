"""Quick per-case runner of ONNX backend node cases (one library per case; for op development).
Usage: python scripts/node_cases.py REGEX [-v]"""

from __future__ import annotations

import re
import sys
import tempfile
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def main() -> None:
    from onnx.backend.test.case.node import collect_testcases

    import emit
    from emit.errors import EmitError
    from emit.verify import compare

    pat = re.compile(sys.argv[1])
    verbose = "-v" in sys.argv
    cases = [c for c in collect_testcases() if pat.search(c.name)]
    passed = 0
    for c in cases:
        why = ""
        try:
            inputs, expected = c.data_sets[0]
            names = [i.name for i in c.model.graph.input]
            shapes = {n: tuple(np.asarray(v).shape) for n, v in zip(names, inputs)}
            with tempfile.TemporaryDirectory() as tmp:
                emit.export(c.model, target="native", out=tmp, shapes=shapes, name="m")
                m = emit.load(tmp)
                got = m.run(dict(zip(names, inputs)))
                outs = [o.name for o in c.model.graph.output]
                for name, ref in zip(outs, expected):
                    r = compare(name, got[name], np.asarray(ref), 1e-3, 1e-5)
                    if not r.ok:
                        why = f"mismatch on {name}: max abs {r.max_abs:.3g}"
                        break
        except EmitError as exc:
            why = str(exc)
        except Exception as exc:  # noqa: BLE001
            why = f"{type(exc).__name__}: {str(exc)[:200]}"
        passed += not why
        if why and verbose or not why and verbose:
            print(f"{'PASS' if not why else 'FAIL'} {c.name} {why}")
        elif why:
            print(f"FAIL {c.name}: {why}")
    print(f"{passed}/{len(cases)} passed")


if __name__ == "__main__":
    main()
