"""Per-operator MAC formulas for traced graphs.

The registry maps a lower-case operator name as it appears in a TorchScript
trace (``"aten::linear"``, ``"mylib::fused_mlp"``) to a *rule*: a function
that takes a :class:`torchprofile.ir.Node` and returns the multiply-accumulate
count (MACs, 1 MAC = 2 FLOPs) of that one call, or ``None`` for an operator
known to cost nothing (views, reshapes, activations, ...).

It starts from torchprofile's ``HANDLER_MAP``; the modules beside this one override
or add the rules of each category. An operator with no entry is *unpriced*: the counter reports it in
``FlopResult.unpriced`` instead of silently counting it as zero.

A ``Node`` has ``operator`` (str), ``inputs`` and ``outputs`` (lists of
``Variable``). A tensor ``Variable`` has ``shape`` (list of ints, or ``None``
when unknown); a constant argument has ``value`` (a scalar, a string, or for
a list argument a list whose tensor items are shapes and other items values).
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import Any

from torchprofile.handlers import HANDLER_MAP
from torchprofile.ir import Node, Variable

Rule = Callable[[Node], int]

class _Rules(dict[str, "Rule | None"]):
    """The registry: a dict that counts the changes made to it in ``version`` (a count remembered while
    one set of rules stood is not given again once another rule is set; see engine/recall.py)."""

    version = 0

    def _changed(self) -> None:
        self.version += 1

    def __setitem__(self, key: str, value: Rule | None) -> None:
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._changed()

    def pop(self, key: str, *default: Any) -> Any:
        self._changed()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Rule | None]:
        self._changed()
        return super().popitem()

    def clear(self) -> None:
        super().clear()
        self._changed()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._changed()

    def setdefault(self, key: str, default: Rule | None = None) -> Rule | None:
        self._changed()
        return super().setdefault(key, default)

    def __ior__(self, other: Any) -> _Rules:  # type: ignore[override,misc]
        self.update(other)
        return self


# operator -> rule; None means "known and free".
RULES: _Rules = _Rules(HANDLER_MAP)


def _key(operator: str) -> str:
    return operator.lower()


def register_rule(operator: str, fn: Rule | None = None) -> Callable[..., Any]:
    """Price ``operator`` with ``fn(node) -> int`` (MACs), replacing any earlier rule.

    Use it as a call, ``register_rule("mylib::gemm", my_fn)``, or as a
    decorator, ``@register_rule("mylib::gemm")``. It returns ``fn``. The
    operator name is the trace's (e.g. ``"aten::mm"``, ``"torchvision::roi_align"``)
    and is matched case-insensitively. For an operator that costs nothing,
    use :func:`zero_cost`.
    """

    def add(rule_fn: Rule) -> Rule:
        if not callable(rule_fn):
            raise TypeError(f"a rule must be callable (node -> int), got {rule_fn!r}")
        RULES[_key(operator)] = rule_fn
        return rule_fn

    return add if fn is None else add(fn)


def rule(*operators: str) -> Callable[[Rule], Rule]:
    """Decorator: register one function as the rule of several operators."""

    def add(fn: Rule) -> Rule:
        for op in operators:
            register_rule(op, fn)
        return fn

    return add


def zero_cost(*operators: str) -> None:
    """Mark ``operators`` as known and free (priced at 0 MACs, never unpriced)."""
    for op in operators:
        RULES[_key(op)] = None


def unregister_rule(operator: str) -> None:
    """Forget ``operator``: later traces report it as unpriced."""
    RULES.pop(_key(operator), None)


def resolve(operator: str) -> str | None:
    """The registry key that prices ``operator``: its own, else (for an in-place ``aten::leaky_relu_``)
    that of its out-of-place form, which computes the same; ``None`` when no rule applies."""
    key = _key(operator)
    if key in RULES:
        return key
    if key.endswith("_") and not key.endswith("__") and key[:-1] in RULES:
        return key[:-1]
    return None


def has_rule(operator: str) -> bool:
    """Whether ``operator`` is priced (including known-free operators and in-place forms of priced ones)."""
    return resolve(operator) is not None


def is_free(operator: str) -> bool:
    """Whether ``operator`` is known to cost nothing (so no node needs to be built to price it)."""
    key = resolve(operator)
    return key is not None and RULES[key] is None


def price(node: Node) -> int | None:
    """MACs of ``node``, or ``None`` when no rule applies or the rule fails."""
    key = resolve(node.operator)
    if key is None:
        return None
    fn = RULES[key]
    if fn is None:
        return 0
    try:
        return int(fn(node))
    except Exception:
        return None


# ---- helpers ---------------------------------------------------------------


def _shape(v: Variable) -> list[int]:
    if v.shape is None:
        raise ValueError(f"unknown shape for {v!r}")
    return list(v.shape)


def _numel(v: Variable) -> int:
    return prod(_shape(v))
