"""pytest-flopbudget: forward-pass FLOP budgets and baselines for PyTorch models.

Importing this package does not import torch; ``measure`` imports it on first use.
"""

from __future__ import annotations

from typing import Any

from .result import FlopResult, Record

__version__ = "0.1.0"
__all__ = ["FlopResult", "Record", "fast_meta", "measure", "meta_init", "register_rule", "__version__"]


def measure(model: Any, *args: Any, **kwargs: Any) -> FlopResult:
    """Profile one forward pass ``model(*args, **kwargs)`` and return its cost.

    Runs on the ``meta`` device where it can (no real arithmetic, no copy of
    the weights), and falls back to a real forward pass, with a note in
    ``FlopResult.notes``, when the model needs real values.
    """
    from .counting import count

    return count(model, args, kwargs)


def __getattr__(name: str) -> Any:
    # meta_init, fast_meta and register_rule live in torch-importing modules; load them on first access.
    if name == "meta_init":
        from .counting import meta_init

        return meta_init
    if name == "fast_meta":
        from .fastmeta import building

        return building
    if name == "register_rule":
        from .rules import register_rule

        return register_rule
    raise AttributeError(name)
