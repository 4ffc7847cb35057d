"""The one registry of per-operator MAC formulas, priced over every capture.

:mod:`.registry` holds the registry and its functions (``register_rule``,
``zero_cost``, ``price``, ...); the modules beside it add the rules of one
category of compute each, in the categories of
:mod:`pytest_flopbudget.results.conventions`: matrix products, convolutions,
attention, recurrent layers, normalisation, elementwise (with the operators known
to cost nothing), and the backward and optimizer kernels of training steps.
Importing this package registers them all; a rule set later for the same operator
(``register_rule`` in a user's conftest) replaces the built-in one.
"""

from __future__ import annotations

from . import attention, conv, elementwise, fft, matmul, norm, recurrent, training  # noqa: F401  (registers the rules)
from .attention import BACKWARD_CONVENTIONS, attention_backward
from .registry import (
    RULES,
    Rule,
    has_rule,
    is_free,
    price,
    register_rule,
    resolve,
    rule,
    unregister_rule,
    zero_cost,
)

# The rules this package sets, held (a user's rule set later replaces one, never joins them): the dispatch
# capture remembers their answers per call signature, see capture/dispatch.py.
BUILT_IN: frozenset[Rule] = frozenset(fn for fn in RULES.values() if fn is not None)

__all__ = [
    "BACKWARD_CONVENTIONS", "BUILT_IN", "RULES", "Rule", "attention_backward", "has_rule", "is_free", "price", "register_rule",
    "resolve", "rule", "unregister_rule", "zero_cost",
]
