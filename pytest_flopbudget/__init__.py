"""pytest-flopbudget: forward-pass FLOP budgets and baselines for PyTorch models.

Importing this package does not import torch; ``measure`` imports it on first use.
"""

from __future__ import annotations

from typing import Any

from .result import FlopResult, Record

__version__ = "0.1.0"
__all__ = ["FlopResult", "Measure", "Record", "fast_meta", "measure", "meta_init", "register_rule", "__version__"]

# The options of a measurement and their choices (validated here, so no torch import is needed to check them).
OPTIONS = {
    "counter": ("torchprofile", "flop_counter"),
    "mode": ("auto", "meta", "real"),
    "unpriced": ("fail", "warn"),
}


def check_options(options: dict) -> None:
    """Raise ValueError naming the option and its choices when ``options`` holds an unknown name or value."""
    for name, value in options.items():
        if name not in OPTIONS:
            raise ValueError(f"unknown option {name!r}; the options are {', '.join(OPTIONS)}")
        if value not in OPTIONS[name]:
            raise ValueError(f"{name}={value!r} is not one of {', '.join(OPTIONS[name])}")


class Measure:
    """``measure(model, *args, **kwargs)``: the cost of one call of a model (or any callable over modules).

    Every positional and keyword argument goes to the model. Counting options
    never share that namespace: choose them first, ``measure.using(counter=
    "flop_counter", mode="meta", unpriced="warn")(model, x, attention_mask=m)``.
    Runs on the ``meta`` device where it can (no real arithmetic, no copy of
    the weights), and falls back to a real pass, with a note in
    ``FlopResult.notes``, when the model needs real values.
    """

    def __init__(self, **options: Any) -> None:
        check_options(options)
        self.options = options

    def using(self, **options: Any) -> "Measure":
        """A ``measure`` with these options (``counter``, ``mode``, ``unpriced``) over the current ones."""
        return Measure(**{**self.options, **options})

    def __call__(self, model: Any, *args: Any, **kwargs: Any) -> FlopResult:
        from .counting import count

        return count(model, args, kwargs, **self.options)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"measure.using({shown})" if shown else "measure"


measure = Measure()


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
