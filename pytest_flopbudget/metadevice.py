"""Running a model on the ``meta`` device without touching or copying its weights."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.utils._pytree as pytree
from torch.nn.parameter import UninitializedTensorMixin
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten


def _empty_meta(t: torch.Tensor) -> torch.Tensor:
    """An empty meta tensor with t's shape, strides and dtype (meta tensors are returned as they are)."""
    if t.is_meta:
        return t
    try:
        return torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, device="meta")
    except RuntimeError:  # sparse, nested, ...: fall back to the generic path
        return torch.empty_like(t, device="meta")


def _meta_tensor(t: torch.Tensor) -> torch.Tensor:
    """A meta copy of a parameter or buffer (no data); a Parameter stays a Parameter."""
    m = _empty_meta(t)
    if isinstance(t, nn.Parameter):
        return nn.Parameter(m, requires_grad=t.requires_grad)
    return m


def to_meta(tree: Any) -> Any:
    """Replace every tensor in nested tuples/lists/dicts with an empty meta tensor."""
    return pytree.tree_map(lambda x: _empty_meta(x) if isinstance(x, torch.Tensor) else x, tree)


def all_meta(module: Optional[nn.Module], tree: Any) -> bool:
    """True when every parameter, buffer and input tensor already lives on meta."""
    tensors = [x for x in pytree.tree_leaves(tree) if isinstance(x, torch.Tensor)]
    if module is not None:
        tensors += list(module.parameters()) + list(module.buffers())
    return all(t.is_meta for t in tensors)


@contextmanager
def weights_on_meta(module: Optional[nn.Module]) -> Iterator[None]:
    """Swap every parameter and buffer of ``module`` for a meta tensor, restoring them on exit.

    Nothing is copied: the originals are only held and put back, even on error.
    Tied weights stay tied. Uninitialized (lazy) parameters are left alone.
    """
    saved: list[tuple[dict, str, torch.Tensor]] = []
    swapped: dict[int, torch.Tensor] = {}
    try:
        if module is not None:
            for mod in module.modules():
                for store in (mod._parameters, mod._buffers):
                    for name, t in list(store.items()):
                        if t is None or t.is_meta or isinstance(t, UninitializedTensorMixin):
                            continue
                        if id(t) not in swapped:
                            swapped[id(t)] = _meta_tensor(t)
                        saved.append((store, name, t))
                        store[name] = swapped[id(t)]
        yield
    finally:
        for store, name, t in reversed(saved):
            store[name] = t


def _tracer_bit() -> int:
    for bit in range(64):
        if repr(torch._C.DispatchKeySet.from_raw_repr(1 << bit)) == "DispatchKeySet(Tracer)":
            return 1 << bit
    raise RuntimeError("cannot find the Tracer dispatch key")


def traced_convolution(args: tuple) -> torch.Tensor:
    """``aten::convolution`` re-issued as ``aten::_convolution`` with the tracer re-enabled, so it is recorded."""
    global _TRACER_BIT
    if _TRACER_BIT is None:
        _TRACER_BIT = _tracer_bit()
    exclude = torch._C._dispatch_tls_local_exclude_set()
    keep = torch._C.DispatchKeySet.from_raw_repr(exclude.raw_repr() & ~_TRACER_BIT)
    with torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), keep):
        # benchmark, deterministic, cudnn_enabled, allow_tf32
        return _aten._convolution.default(*args, False, False, True, True)


_TRACER_BIT: Optional[int] = None


class MetaTraceFix(TorchDispatchMode):
    """Make TorchScript tracing record convolutions on meta tensors.

    The tracer does not record ``aten::convolution`` and expects it to reach
    ``aten::_convolution``; on meta its Python kernel returns early (and fails
    on traced sizes). Here it is re-issued as ``aten::_convolution`` with the
    tracer re-enabled (:func:`traced_convolution`), so it is recorded and shaped like on CPU.
    """

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        if func is _aten.convolution.default and torch._C._get_tracing_state() is not None:
            return traced_convolution(args)
        return func(*args, **kwargs)


def _meta_parameter(param: nn.Parameter) -> nn.Parameter:
    data = param.detach().to("meta")
    try:
        return type(param)(data, requires_grad=param.requires_grad)
    except Exception:
        return nn.Parameter(data, requires_grad=param.requires_grad)


@contextmanager
def meta_init() -> Iterator[None]:
    """Build models with their parameters and buffers on the ``meta`` device.

    Inside the block, every parameter or buffer registered on an ``nn.Module``
    is moved to meta as it is registered (no memory, no real initialisation),
    while the constructor's other tensor work, e.g.
    ``torch.linspace(0, 0.1, depth)[i].item()``, runs normally on CPU.
    It patches ``nn.Module.register_parameter``/``register_buffer`` for the
    duration of the block (process-wide; not thread-safe) and always restores them.
    """
    register_parameter = nn.Module.register_parameter
    register_buffer = nn.Module.register_buffer

    def meta_parameter(self: nn.Module, name: str, param: Optional[nn.Parameter]) -> None:
        register_parameter(self, name, param)
        if param is not None and not param.is_meta and not isinstance(param, UninitializedTensorMixin):
            self._parameters[name] = _meta_parameter(param)

    def meta_buffer(self: nn.Module, name: str, tensor: Optional[torch.Tensor], persistent: bool = True) -> None:
        register_buffer(self, name, tensor, persistent)
        if tensor is not None and not tensor.is_meta and not isinstance(tensor, UninitializedTensorMixin):
            self._buffers[name] = tensor.detach().to("meta")

    nn.Module.register_parameter = meta_parameter  # type: ignore[method-assign]
    nn.Module.register_buffer = meta_buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]
