"""Count every zoo model three ways in one process and compare every field of the results.

    python -m zoo.compare_direct                 # the whole zoo
    python -m zoo.compare_direct timm/resnet*    # the entries that match (as zoo.run --only)

Per model (built as ``zoo.run`` builds it): a count with the dispatch capture's direct calls off (every
layer through the dispatcher), one with them on and their memory emptied (each layer made by its
handler), and one more with them on (the repeated layers made from what the first count remembered,
``engine/capture/direct.py``). The three results must be equal in MACs, parameters, MACs by module and by
operator, unpriced operators, bytes moved per call, notes, mode and capture. One line per model, a
summary at the end; the exit status is 1 where any model differs.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from . import registry

FIELDS = ("macs", "params", "by_module", "by_operator", "unpriced", "costs", "notes", "mode", "capture")


def _fields(result: Any) -> tuple[Any, ...]:
    return tuple(getattr(result, name) for name in FIELDS)


def main(patterns: list[str]) -> int:
    from pytest_flopbudget.engine.capture import direct, dispatch
    from pytest_flopbudget.engine.count import count

    same = differ = failed = 0
    start = time.perf_counter()
    for entry in registry.select(patterns or None):
        try:
            model, args, kwargs = entry.build()
            dispatch._DIRECT_ON[0] = False
            off = _fields(count(model, tuple(args), kwargs))
            dispatch._DIRECT_ON[0] = True
            direct._MEMO.clear()
            first = _fields(count(model, tuple(args), kwargs))
            remembered = len(direct._MEMO)
            again = _fields(count(model, tuple(args), kwargs))
        except Exception as exc:
            failed += 1
            print(f"error   {entry.name}: {type(exc).__name__}: {str(exc)[:160]}", flush=True)
            continue
        finally:
            dispatch._DIRECT_ON[0] = True
        if off == first == again:
            same += 1
            print(f"same    {entry.name} ({remembered} calls remembered)", flush=True)
        else:
            differ += 1
            fields = [name for name, a, b, c in zip(FIELDS, off, first, again) if not a == b == c]
            print(f"DIFFERS {entry.name}: {', '.join(fields)}", flush=True)
    print(f"{same} the same, {differ} different, {failed} not counted, in {time.perf_counter() - start:.0f} s")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
