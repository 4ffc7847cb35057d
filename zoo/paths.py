"""Count every zoo model along the paths beside the default forward, warnings raised as errors.

    python -m zoo.paths                   # the whole zoo
    python -m zoo.paths timm/vit_* t5*    # the entries that match (as zoo.run --only)

Per model (built as ``zoo.run`` builds it), with ``warnings.simplefilter("error")`` as a pytest
``filterwarnings = error`` has it, so that a warning the count itself sets off fails the count:

- the default forward count;
- the forward with peak memory (``memory=True``): the same MACs, a peak;
- a training step with AdamW and peak memory (``measure_train_step``'s engine): an optimizer phase
  and a peak;

and after them a deep comparison of the model (``zoo/snapshot.py``, as ``zoo.run`` does): every
attribute, parameter, gradient and flag as before. A model whose plain meta forward raises under the
same filter is skipped (its own warning, not the count's); one whose forward needs real values fails
the training step by design (``TrainStepError``, listed apart). One line per model, a summary at the
end; the exit status is 1 where any other count fails or any model changes.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any

from . import registry, snapshot


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


def check(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    """What went wrong on the three paths (empty: nothing), warnings raised as errors."""
    import torch

    from pytest_flopbudget.engine.capture.training import TrainStepError, count_train_step
    from pytest_flopbudget.engine.count import count

    problems: list[str] = []
    before = snapshot.take(model, args, kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            plain = count(model, args, kwargs)
            watched = count(model, args, kwargs, memory=True)
            if watched.macs != plain.macs or not watched.peak_bytes:
                problems.append(f"memory: {watched.macs} MACs against {plain.macs}, peak {watched.peak_bytes}")
        except Exception as exc:
            problems.append(f"forward: {_first_line(exc)}")
        try:
            step = count_train_step(model, args, kwargs, optimizer=lambda params: torch.optim.AdamW(params), memory=True)
            if not step.phases["optimizer"] or not step.peak_bytes:
                problems.append(f"training step: optimizer {step.phases['optimizer']} MACs, peak {step.peak_bytes}")
        except TrainStepError as exc:
            if "needs real values" not in str(exc):
                problems.append(f"training step: {_first_line(exc)}")
        except Exception as exc:
            problems.append(f"training step: {_first_line(exc)}")
    problems += [f"changed: {line}" for line in snapshot.diff(before, snapshot.take(model, args, kwargs))]
    return problems


def _bare_warns(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            with torch.no_grad():
                model(*args, **kwargs)
        except Exception as exc:
            return _first_line(exc)
    return None


def main(patterns: list[str]) -> int:
    passed = failed = skipped = 0
    start = time.perf_counter()
    for entry in registry.select(patterns or None):
        try:
            model, args, kwargs = entry.build()
        except Exception as exc:
            skipped += 1
            print(f"skipped {entry.name}: not built ({_first_line(exc)})", flush=True)
            continue
        args = tuple(args)
        why = _bare_warns(model, args, kwargs)
        if why is not None:
            skipped += 1
            print(f"skipped {entry.name}: the plain meta forward raises ({why})", flush=True)
            continue
        problems = check(model, args, kwargs)
        if problems:
            failed += 1
            print(f"FAILED  {entry.name}: " + "; ".join(problems[:4]), flush=True)
        else:
            passed += 1
            print(f"ok      {entry.name}", flush=True)
    print(f"{passed} ok, {failed} failed, {skipped} skipped, in {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
