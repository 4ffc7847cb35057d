"""pytest-flopbudget: FLOP budgets and baselines for PyTorch models' forward passes and training steps.

Importing this package does not import torch; ``measure`` and ``measure_train_step`` import it on first use.
"""

from __future__ import annotations

from typing import Any

from .result import FlopResult, Record

__version__ = "0.1.0"
__all__ = ["FlopResult", "Record", "measure", "measure_train_step", "meta_init", "register_rule", "__version__"]


def measure(model: Any, *args: Any, **kwargs: Any) -> FlopResult:
    """Profile one forward pass ``model(*args, **kwargs)`` and return its cost.

    Runs on the ``meta`` device where it can (no real arithmetic, no copy of
    the weights), and falls back to a real forward pass, with a note in
    ``FlopResult.notes``, when the model needs real values.
    """
    from .counting import count

    return count(model, args, kwargs)


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
    # meta_init and register_rule live in torch-importing modules; load them on first access.
    if name == "meta_init":
        from .counting import meta_init

        return meta_init
    if name == "register_rule":
        from .rules import register_rule

        return register_rule
    raise AttributeError(name)
