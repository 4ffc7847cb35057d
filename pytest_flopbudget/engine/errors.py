"""The errors of a count and the checks that raise them. Plain data: importing this never imports torch,
so the pytest side can recognise them."""

from __future__ import annotations

from pytest_flopbudget.engine.options import OPTIONS
from pytest_flopbudget.results import conventions

UNPRICED = OPTIONS["unpriced"]

# What a model's error says when it needs real values (a data-dependent branch, ``.item()`` on meta).
NEEDS_VALUES = (
    "cannot be called on meta tensors",
    "data-dependent",
    "data dependent",
    "cannot copy out of meta tensor",  # .tolist(), .numpy()
    "meta_nonzero_assume_all_nonzero",  # torch.nonzero (masks, boxes): its output shape is its values
)


def needs_values(exc: BaseException) -> bool:
    """Whether ``exc`` says the code needs real values, which meta tensors do not have."""
    text = str(exc).lower()
    return any(words in text for words in NEEDS_VALUES)


class MetaCountError(RuntimeError):
    """The model could not be counted on the meta device (and no fallback was allowed or possible)."""


class NeedsValuesError(MetaCountError):
    """The model and its inputs are all on meta and the forward needs real values: nothing can count it."""

    explains_itself = True  # its message names the fix: the pytest side adds no hint


class UnpricedOperatorError(RuntimeError):
    """A matmul-, convolution-, attention- or recurrent-class operator ran that no rule prices."""


def check_unpriced(unpriced: dict[str, int], policy: str, notes: list[str]) -> None:
    """Costly (matmul/conv/attention/recurrent class) operators without a rule: fail, or note under ``"warn"``."""
    costly = {op: n for op, n in sorted(unpriced.items()) if conventions.is_costly(op)}
    if not costly:
        return
    listed = ", ".join(f"{op} ({conventions.category(op)}, {n} call{'s' if n != 1 else ''})" for op, n in costly.items())
    first = next(iter(costly))
    text = (
        f"no rule prices {listed}: the count would miss their MACs. Register a rule (conftest.py): "
        f"from pytest_flopbudget import register_rule; register_rule({first!r}, lambda node: ...) returning MACs "
        "from node.inputs[i].shape and node.outputs[0].shape, or count without them: --flop-unpriced=warn "
        "(ini flopbudget_unpriced = warn, measure.using(unpriced='warn'))"
    )
    if policy == "fail":
        raise UnpricedOperatorError(text)
    notes.append(text)
