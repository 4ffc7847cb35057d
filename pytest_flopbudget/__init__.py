"""pytest-flopbudget: FLOP budgets and baselines for PyTorch models' forward passes and training steps.

Importing this package does not import torch; ``measure`` and ``measure_train_step`` import it on first use.
"""

from __future__ import annotations

from typing import Any

from .result import FlopResult, Record
from .scaling import Scaling, assert_scaling

__version__ = "0.1.0"
__all__ = [
    "FlopResult", "Measure", "Record", "Scaling", "assert_scaling", "fast_meta", "measure", "measure_train_step",
    "meta_init", "register_rule", "__version__",
]

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


def measure_train_step(
    model: Any, *args: Any, loss: Any = None, optimizer: Any = None, **kwargs: Any
) -> FlopResult:
    """Count one training step of ``model`` on ``model(*args, **kwargs)``: forward and loss, backward,
    and (with ``optimizer``) one steady-state optimizer step, all on the ``meta`` device.

    ``loss(output) -> scalar`` defaults to the output's ``loss`` (a transformers
    ModelOutput given labels), else the sum of the output. ``optimizer`` is a
    ``torch.optim.Optimizer`` over the model's parameters (copied, never stepped)
    or a factory ``params -> Optimizer``. ``FlopResult.phases`` maps "forward",
    "backward" and "optimizer" to MACs. The model's parameters, gradients and
    ``requires_grad`` flags and the optimizer's state are as before afterwards.
    """
    from .training import count_train_step

    return count_train_step(model, args, kwargs, loss=loss, optimizer=optimizer)


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
