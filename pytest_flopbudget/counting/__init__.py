"""Counting the MACs of one call: the mode and fallback policy over two captures priced by one registry.

``trace`` is the TorchScript capture torchprofile uses (the default counter,
``"torchprofile"``); ``dispatch`` sees every aten operator that runs (the
``"flop_counter"`` counter, and ``dispatch.capture`` around any code). Both
price with :mod:`pytest_flopbudget.rules`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Optional

import torch
import torch.nn as nn
from torch.nn.parameter import UninitializedTensorMixin

from .. import fastmeta
from ..metadevice import all_meta, meta_init, to_meta, weights_on_meta
from ..result import FlopResult
from . import dispatch
from .state import guard
from .tally import Tally
from .trace import NoTensorOutput, trace

__all__ = ["COUNTERS", "MODES", "MetaCountError", "Tally", "count", "meta_init", "warm_up"]

COUNTERS = ("torchprofile", "flop_counter")
MODES = ("auto", "meta", "real")


class MetaCountError(RuntimeError):
    """The model could not be counted on the meta device (and no fallback was allowed or possible)."""


# ---- model, inputs and outputs ----------------------------------------------


def _resolve(model: Any) -> tuple[Callable[..., Any], Optional[nn.Module]]:
    """The callable to run and the module owning its weights (a bound method's module counts)."""
    if isinstance(model, nn.Module):
        return model, model
    if callable(model):
        owner = getattr(model, "__self__", None)
        return model, owner if isinstance(owner, nn.Module) else None
    raise TypeError(f"cannot count {type(model).__name__!r}: expected a torch.nn.Module or a callable")


# ---- shared context -----------------------------------------------------------


@contextmanager
def _no_mha_fastpath() -> Iterator[None]:
    """nn.MultiheadAttention/TransformerEncoderLayer: take the regular path (the fused one hides the matmuls)."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


_BACKENDS: dict[str, Callable[..., Tally]] = {"torchprofile": trace, "flop_counter": dispatch.run}


# ---- entry point ----------------------------------------------------------------


def _state(module: nn.Module) -> Iterator[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _meta_first(
    backend: Callable[..., Tally],
    fn: Callable[..., Any],
    module: Optional[nn.Module],
    args: tuple,
    kwargs: dict,
    fall_back: bool,
    notes: list[str],
) -> tuple[Tally, str]:
    """Count on meta (weights swapped, inputs converted); on failure run for real if allowed and possible."""
    nothing_real = all_meta(module, (args, kwargs)) or (module is not None and any(t.is_meta for t in _state(module)))
    try:
        with guard(module) as lost, weights_on_meta(module):
            margs, mkwargs = to_meta((args, kwargs))
            tally = backend(fn, module, margs, mkwargs, True)
        notes.extend(lost)
        return tally, "meta"
    except Exception as exc:
        if nothing_real or isinstance(exc, NoTensorOutput):  # the model's own error: a real pass fails alike
            raise
        if not fall_back:
            hint = "use mode='auto' or mode='real' to allow a real forward pass"
            raise MetaCountError(f"cannot count on the meta device ({_first_line(exc)}); {hint}") from exc
        notes.append(f"counted with a real forward pass: the meta-device pass failed ({_first_line(exc)})")
    return _real(backend, fn, module, args, kwargs, False, notes), "real"


def _real(backend: Callable[..., Tally], fn: Callable[..., Any], module: Optional[nn.Module], args: tuple, kwargs: dict, meta: bool, notes: list[str]) -> Tally:
    """A pass on the model's own tensors; buffers and cached tensors are copied first and put back after."""
    with guard(module, copy_values=not meta) as lost:
        tally = backend(fn, module, args, kwargs, meta)
    notes.extend(lost)
    return tally


def count(
    model: Any,
    args: tuple = (),
    kwargs: Optional[dict] = None,
    *,
    counter: str = "torchprofile",
    mode: str = "auto",
) -> FlopResult:
    """MACs of one forward pass ``model(*args, **kwargs)``.

    ``counter``: ``"torchprofile"`` (the TorchScript trace torchprofile
    uses) or ``"flop_counter"`` (dispatch-level capture, every aten operator
    that runs, as ``torch.utils.flop_counter.FlopCounterMode`` sees them);
    both priced by :mod:`pytest_flopbudget.rules`.
    ``mode``: ``"auto"`` counts on the meta device and falls back to a real
    forward pass (with a note) when the model needs real values; ``"meta"``
    never falls back (raises :class:`MetaCountError`); ``"real"`` runs on the
    model's own device and tensors. The model's weights are never copied:
    on meta they are swapped for meta tensors and restored afterwards.
    Counting runs under ``torch.no_grad()`` and leaves train/eval state alone.
    """
    if counter not in _BACKENDS:
        raise ValueError(f"unknown counter {counter!r}; choose one of {', '.join(COUNTERS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if not isinstance(args, tuple):
        args = tuple(args) if isinstance(args, list) else (args,)
    kwargs = dict(kwargs or {})
    fn, module = _resolve(model)
    backend = _BACKENDS[counter]
    notes: list[str] = []

    with torch.no_grad(), _no_mha_fastpath(), fastmeta.collector_paused():
        if mode == "real":
            on_meta = all_meta(module, (args, kwargs))
            tally = _real(backend, fn, module, args, kwargs, on_meta, notes)
            used = "meta" if on_meta else "real"
        else:
            tally, used = _meta_first(backend, fn, module, args, kwargs, mode == "auto", notes)

    params = 0
    if module is not None:  # after the pass, so lazy modules are materialized
        params = sum(p.numel() for p in module.parameters() if not isinstance(p, UninitializedTensorMixin))
    return FlopResult(
        macs=tally.macs,
        params=params,
        by_module=tally.by_module,
        by_operator=tally.by_operator,
        unpriced=tally.unpriced,
        counter=counter,
        mode=used,
        notes=tuple(notes),
    )


class _WarmUp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 1)
        self.norm = nn.LayerNorm(2)
        self.lin = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(self.norm(self.conv(x).transpose(1, 2)))
        return torch.nn.functional.scaled_dot_product_attention(y[None], y[None], y[None])


def warm_up() -> None:
    """Count a tiny model once with each counter, on meta and for real.

    torch imports a lot lazily on the first meta or dispatch-mode call
    (torch._dynamo, sympy, the dispatch-mode machinery, ...). Call this once
    where that must not happen later, e.g. in a conftest before pytester's
    in-process runs, which drop modules first imported inside them (and
    re-importing those crashes the process).
    """
    model, x = _WarmUp(), torch.zeros(1, 2, 3)
    for counter in COUNTERS:
        for mode in ("meta", "real"):
            count(model, (x,), {}, counter=counter, mode=mode)
