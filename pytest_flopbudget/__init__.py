"""pytest-flopbudget: FLOP budgets and baselines for PyTorch models' forward passes and training steps.

Importing this package does not import torch; ``measure`` and ``measure_train_step`` import it on first use.
"""

from __future__ import annotations

from typing import Any

from pytest_flopbudget.deploy.devices import register_device
from pytest_flopbudget.deploy.roofline import estimate, mfu
from pytest_flopbudget.engine.options import OPTIONS as OPTIONS
from pytest_flopbudget.engine.options import check_options as check_options
from pytest_flopbudget.engine.scaling import Scaling, assert_scaling
from pytest_flopbudget.results.result import FlopResult, Record

__version__ = "0.1.0"
__all__ = [
    "FlopResult", "Measure", "Record", "Scaling", "assert_scaling", "estimate", "fast_meta", "measure", "measure_train_step",
    "meta_init", "mfu", "on_meta", "register_device", "register_rule", "__version__",
]

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

    def using(self, **options: Any) -> Measure:
        """A ``measure`` with these options (``counter``, ``mode``, ``unpriced``) over the current ones."""
        return Measure(**{**self.options, **options})

    def __call__(self, model: Any, *args: Any, **kwargs: Any) -> FlopResult:
        from pytest_flopbudget.engine.count import count

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
    from pytest_flopbudget.engine.capture.training import count_train_step

    return count_train_step(model, args, kwargs, loss=loss, optimizer=optimizer)


def __getattr__(name: str) -> Any:
    # meta_init, fast_meta and register_rule live in torch-importing modules; load them on first access.
    if name == "meta_init":  # the fast path on: weight init on meta without torch's Python kernels
        from pytest_flopbudget.engine.fastmeta import meta_init

        return meta_init
    if name == "on_meta":
        from pytest_flopbudget.engine.fastmeta import on_meta

        return on_meta
    if name == "fast_meta":
        from pytest_flopbudget.engine.fastmeta import building

        return building
    if name == "register_rule":
        from pytest_flopbudget.engine.rules import register_rule

        return register_rule
    raise AttributeError(name)
