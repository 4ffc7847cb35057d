"""Running a model on the ``meta`` device without touching or copying its weights."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
import torch.utils._pytree as pytree
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined]  # torch's stubs omit it

from pytest_flopbudget.engine.context import CONSTANT_TYPES, PlainMode, module_tensors, named_modules

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
    if _flat_meta(tree):
        return tree  # a call's (args, kwargs) of meta tensors and constants: as tree_map would give it back
    return pytree.tree_map(lambda x: _empty_meta(x) if isinstance(x, torch.Tensor) else x, tree)


def _flat_meta(tree: Any) -> bool:
    """``tree`` is ``(args, kwargs)`` (a tuple and a dict) holding meta tensors and constants only: no
    container a model could change inside, so the same objects can be passed on."""
    if type(tree) is not tuple or len(tree) != 2 or type(tree[0]) is not tuple or type(tree[1]) is not dict:
        return False
    for value in (*tree[0], *tree[1].values()):
        kind = type(value)
        if kind is torch.Tensor or kind is nn.Parameter:
            if not value.is_meta:
                return False
        elif kind not in CONSTANT_TYPES:
            return False
    return True


def input_tensors_of(tree: Any) -> list[torch.Tensor]:
    """The tensors in nested containers of inputs (pytree's leaves)."""
    tensors = _plain_tensors(tree)
    return tensors if tensors is not None else [x for x in pytree.tree_leaves(tree) if isinstance(x, torch.Tensor)]


def _plain_tensors(tree: Any) -> list[torch.Tensor] | None:
    """The tensors in ``tree`` where it is made of plain tuples, lists and dicts, tensors and constants
    only (a call's ``(args, kwargs)``, most often); None for anything else, which pytree walks."""
    found: list[torch.Tensor] = []
    items = [tree]
    while items:
        item = items.pop()
        kind = type(item)
        if kind is torch.Tensor or kind is nn.Parameter:
            found.append(item)
        elif kind is tuple or kind is list:
            items.extend(item)
        elif kind is dict:
            items.extend(item.values())
        elif kind not in CONSTANT_TYPES:
            return None
    return found


def all_meta(module: nn.Module | None, tree: Any) -> bool:
    """True when every parameter, buffer and input tensor already lives on meta."""
    tensors = input_tensors_of(tree)
    if module is not None:
        tensors += module_tensors(module)
    return all(t.is_meta for t in tensors)


@contextmanager
def weights_on_meta(module: nn.Module | None) -> Iterator[None]:
    """Swap every parameter and buffer of ``module`` for a meta tensor, restoring them on exit.

    Nothing is copied: the originals are only held and put back, even on error.
    Tied weights stay tied. Uninitialized (lazy) parameters are left alone.
    """
    saved: list[tuple[dict[str, Any], str, torch.Tensor]] = []
    swapped: dict[int, torch.Tensor] = {}
    try:
        if module is not None:
            for _, mod in named_modules(module):
                for store in (mod._parameters, mod._buffers):
                    for name, t in list(store.items()):
                        if t is None or t.is_meta or isinstance(t, UninitializedTensorMixin):
                            continue
                        if id(t) not in swapped:
                            swapped[id(t)] = _meta_tensor(t)
                        saved.append((store, name, t))
                        store[name] = swapped[id(t)]  # type: ignore[assignment]  # a meta stand-in of the same kind
        yield
    finally:
        for store, name, t in reversed(saved):
            store[name] = t


def _tracer_bit() -> int:
    for bit in range(64):
        if repr(torch._C.DispatchKeySet.from_raw_repr(1 << bit)) == "DispatchKeySet(Tracer)":
            return 1 << bit
    raise RuntimeError("cannot find the Tracer dispatch key")


def traced_convolution(args: tuple[Any, ...]) -> torch.Tensor:
    """``aten::convolution`` re-issued as ``aten::_convolution`` with the tracer re-enabled, so it is recorded."""
    global _TRACER_BIT
    if _TRACER_BIT is None:
        _TRACER_BIT = _tracer_bit()
    exclude = torch._C._dispatch_tls_local_exclude_set()
    keep = torch._C.DispatchKeySet.from_raw_repr(exclude.raw_repr() & ~_TRACER_BIT)
    with torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), keep):
        # benchmark, deterministic, cudnn_enabled, allow_tf32
        out: torch.Tensor = _aten._convolution.default(*args, False, False, True, True)
        return out


_TRACER_BIT: int | None = None


def _grouped_mm_meta(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor | None = None, bias: Any = None, out_dtype: Any = None) -> torch.Tensor:
    """``torch._grouped_mm``'s output from shapes (its meta kernel takes bfloat16 only; the CPU one float32 too)."""
    if a.dim() == 2 and b.dim() == 3:
        shape = [a.shape[0], b.shape[-1]]
    elif a.dim() == 3 and b.dim() == 3:
        shape = [a.shape[0], a.shape[1], b.shape[-1]]
    elif a.dim() == 2 and b.dim() == 2:
        if offs is None:
            raise ValueError("_grouped_mm of two 2-D inputs needs offs")
        shape = [offs.shape[0], a.shape[0], b.shape[-1]]
    else:
        shape = [a.shape[1], b.shape[-1]]
    return torch.empty(shape, dtype=out_dtype or a.dtype, device="meta")


_GROUPED_MM = getattr(getattr(_aten, "_grouped_mm", None), "default", None)


# torch 2.9 has no meta kernel for aten::_convolution (its CompositeExplicitAutograd kernel ends in
# convolution_overrideable, which raises on meta); later versions register one.
_CONVOLUTION_HAS_META = torch._C._dispatch_has_kernel_for_dispatch_key("aten::_convolution", "Meta")


def meta_output(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    """The meta output of an operator whose meta kernel refuses inputs its CPU kernel accepts, or
    that has no meta kernel in the installed torch, else None."""
    if not (args and isinstance(args[0], torch.Tensor) and args[0].is_meta):
        return None
    if func is _GROUPED_MM:
        return _grouped_mm_meta(*args, **kwargs)
    if func is _aten._convolution.default and not _CONVOLUTION_HAS_META:
        # the same output as aten::convolution's meta kernel (the flags after groups only pick a backend),
        # and the CPU kernel's error for a parameter list of the wrong length (the meta kernel's is an IndexError)
        spatial = args[0].dim() - 2
        for name, value in zip(("stride", "padding", "dilation"), args[3:6]):
            if len(value) not in (1, spatial):
                raise RuntimeError(f"expected {name} to be a single integer value or a list of {spatial} values to match "
                                   f"the convolution dimensions, but got {name}={list(value)}")
        out: torch.Tensor = _aten.convolution.default(*args[:9])
        return out
    return None


class MetaTraceFix(PlainMode):
    """Make TorchScript tracing record convolutions on every device.

    The tracer does not record ``aten::convolution`` and expects it to reach
    ``aten::_convolution``; on meta its Python kernel returns early (and fails
    on traced sizes), and under any dispatch mode (a Python mode takes the call
    below the tracer) the CPU kernel's ``_convolution`` is not recorded either. Here it is
    re-issued as ``aten::_convolution`` with the tracer re-enabled (:func:`traced_convolution`),
    so it is recorded and shaped like on CPU. Operators whose meta kernel refuses valid inputs
    get their output from shapes (:func:`meta_output`).
    """

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func is _aten.convolution.default and torch._C._get_tracing_state() is not None:
            with self:  # the re-issued aten::_convolution comes back here (for torch without its meta kernel)
                return traced_convolution(args)
        out = meta_output(func, args, kwargs)
        return func(*args, **kwargs) if out is None else out


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

    def meta_parameter(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register_parameter(self, name, param)
        if param is not None and not param.is_meta and not isinstance(param, UninitializedTensorMixin):
            self._parameters[name] = _meta_parameter(param)

    def meta_buffer(self: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
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
