"""Output shapes of the common operators on the ``meta`` device, without torch's Python meta kernels.

On meta, torch computes the output of almost every operator with a Python kernel
(``torch._meta_registrations``, ``torch._refs``, decompositions): about 0.1-1 ms an
operator, and the first one imports ``torch._dynamo`` (about 1 s). A count only needs
each output's shape, strides and dtype. :class:`FastMeta` is a dispatch mode that makes
the outputs of the operators that dominate transformer and convolution traces (elementwise
arithmetic with broadcasting and type promotion, matrix products, norms, softmax,
reductions, concatenation, convolutions, resizing, and the factories ``randn``, ``randint``,
``arange``, ``linspace`` and ``eye``) directly with
``torch.empty_strided(..., device="meta")`` from a shape function here, and hands every
other operator, and every case a shape function does not cover exactly (unusual strides,
mixed dtypes, integer arithmetic, non-meta tensors, ``out=``), to torch's own kernel.

Each shape function reproduces torch's meta kernel exactly (shape, strides, dtype), or
returns ``None`` to fall back; ``tests/test_fastmeta.py`` compares them with torch's
kernels over many shapes, layouts and dtypes. Views and in-place operators always take
torch's path (their outputs alias their inputs), except the in-place fills that initialise
weights (``uniform_``, ``normal_``, ``fill_``, ``zero_``), which on meta change nothing.

:func:`building` is the same mode for user code: ``with building(), torch.device("meta"):``
builds a model on meta without torch's Python kernels for its initialisation.

Under the TorchScript tracer the mode also makes meta convolutions traceable (what
:class:`~pytest_flopbudget.metadevice.MetaTraceFix` does). ``FLOPBUDGET_FAST_META=0`` in
the environment, or :func:`plain`, turns the fast path off (counts must not change:
``tests/test_fastmeta.py`` checks both paths agree on the VAR models and the layer tests).
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .metadevice import MetaTraceFix, meta_output, traced_convolution

__all__ = ["FastMeta", "SHAPES", "building", "collector_paused", "enabled", "meta_mode", "plain"]

aten = torch.ops.aten

_FLOATS = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
_LOW = frozenset({torch.float16, torch.bfloat16})  # computed in float32 by torch's kernels
_NUMBERS = (bool, int, float)
_COMPARABLE = _FLOATS | {torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool}
_PLAIN = {torch.Tensor, torch.nn.Parameter}
_off = False

ShapeFn = Callable[..., Any]
SHAPES: dict[Any, ShapeFn] = {}


def enabled() -> bool:
    """Whether meta-device counts use the fast shape functions (``FLOPBUDGET_FAST_META=0`` turns them off)."""
    return not _off and os.environ.get("FLOPBUDGET_FAST_META", "1") != "0"


@contextmanager
def plain() -> Iterator[None]:
    """Count with torch's own meta kernels only, inside this block (for cross-checks)."""
    global _off
    before, _off = _off, True
    try:
        yield
    finally:
        _off = before


@contextmanager
def meta_mode(trace_fix: bool = True) -> Iterator[None]:
    """Run a meta-device count under :class:`FastMeta`; without the fast path, under
    :class:`MetaTraceFix` (``trace_fix``) or as is."""
    if not enabled():
        with MetaTraceFix() if trace_fix else nullcontext():
            yield
        return
    with FastMeta():
        yield


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for the block: a count allocates many small
    objects (graph nodes, their Python views), and each full collection walks torch's whole
    heap (5-7% of a count). Nothing is lost: collection resumes afterwards."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@contextmanager
def building() -> Iterator[None]:
    """Run a block (e.g. building a model on meta) under :class:`FastMeta`; a no-op when the fast path is off."""
    with FastMeta() if enabled() else nullcontext():
        yield


class FastMeta(TorchDispatchMode):
    """Dispatch mode: outputs of common operators on meta tensors from the shape functions in :data:`SHAPES`."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in torch._dynamo.disable by default, which
        # imports torch._dynamo on the first operator; nothing here is compiled.
        return False

    def __init__(self, budget: Any = None) -> None:
        super().__init__()
        self.budget = budget  # an OpBudget ticked for every operator (the trace's loop guard), or None

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        if self.budget is not None:
            self.budget.tick()
        shape_fn = SHAPES.get(func)
        if shape_fn is not None:
            out = shape_fn(*args, **kwargs) if kwargs else shape_fn(*args)
            if out is not None:
                return out
        if func is aten.convolution.default and torch._C._get_tracing_state() is not None:
            with self:  # the re-issued aten::_convolution comes back here for its shape
                return traced_convolution(args)
        kwargs = kwargs or {}
        out = meta_output(func, args, kwargs)  # operators whose meta kernel refuses valid inputs
        return func(*args, **kwargs) if out is None else out


def shape_fn(*ops: Any) -> Callable[[ShapeFn], ShapeFn]:
    def add(fn: ShapeFn) -> ShapeFn:
        for op in ops:
            SHAPES[op] = fn
        return fn

    return add


# ---- layouts ----------------------------------------------------------------------------


def _meta(t: Any) -> bool:
    """A plain (no subclass dispatch) strided meta tensor, not complex."""
    return type(t) in _PLAIN and t.is_meta and t.layout == torch.strided


def _contiguous_strides(shape: Any) -> list[int]:
    strides = [1] * len(shape)
    acc = 1
    for i in range(len(shape) - 1, -1, -1):
        strides[i] = acc
        acc *= max(shape[i], 1)
    return strides


def _new(shape: Any, strides: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty_strided(shape, strides, dtype=dtype, device="meta")


def _contiguous(shape: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty_strided(shape, _contiguous_strides(shape), dtype=dtype, device="meta")


def _is_contiguous(shape: Any, strides: Any) -> bool:
    """torch's definition: size-1 dimensions are ignored, an empty tensor is contiguous."""
    if 0 in shape:
        return True
    expected = 1
    for size, stride in zip(reversed(shape), reversed(strides)):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def _is_channels_last(shape: Any, strides: Any) -> bool:
    if len(shape) != 4:
        return False
    expected = 1
    for i in (1, 3, 2, 0):
        if shape[i] == 1:
            continue
        if strides[i] != expected:
            return False
        expected *= shape[i]
    return True


def _plain_contiguous(t: torch.Tensor) -> bool:
    """Contiguous, and not also channels-last (a 4-d tensor can be both; torch then picks by other rules)."""
    return t.is_contiguous() and not (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))


def _canonical(t: torch.Tensor) -> bool:
    """Strides exactly those of a new contiguous tensor (size-1 dimensions included), so that
    the rules "preserve the input's strides" and "return a contiguous tensor" agree."""
    return t.stride() == tuple(_contiguous_strides(t.shape))


def _dense(shape: Any, strides: Any) -> bool:
    """Non-overlapping and dense (torch's is_non_overlapping_and_dense)."""
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(strides, shape) if sz > 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _broadcast(shapes: list[Any]) -> Optional[list[int]]:
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for shape in shapes:
        offset = ndim - len(shape)
        for i, size in enumerate(shape):
            j = offset + i
            if size == out[j] or size == 1:
                continue
            if out[j] != 1:
                return None  # not broadcastable: torch raises
            out[j] = size
    return out


def _expanded_strides(shape: Any, strides: Any, out: list[int]) -> list[int]:
    """Strides of ``t.expand(out)`` (torch's inferExpandGeometry)."""
    ndim, offset = len(out), len(out) - len(shape)
    result = [0] * ndim
    for i in range(ndim - 1, -1, -1):
        dim = i - offset
        if dim >= 0:
            size, stride = shape[dim], strides[dim]
        else:
            size, stride = 1, out[i + 1] * result[i + 1] if i + 1 < ndim else 1
        result[i] = 0 if size != out[i] else stride
    return result


def _should_swap(layouts: list[Any], shape: list[int], a: int, b: int) -> int:
    def ge(x: int, y: int) -> bool:
        if y == 0:
            return True
        if x == 0:
            return False
        return x >= y or x % y == 0

    for strides in layouts:
        sa, sb = strides[a], strides[b]
        if sa == 0 or sb == 0:
            continue
        if sa == sb:
            if ge(shape[b], shape[a]):
                continue
            return 1
        if ge(sb, sa):
            return -1
        if ge(sa, sb):
            return 1
    return 0


def _elementwise_strides(shape: list[int], layouts: list[Any]) -> list[int]:
    """Output strides of an elementwise operator over inputs already broadcast to ``shape``.

    torch's ``compute_elementwise_output_logical_to_physical_perm`` followed by
    ``empty_permuted``: contiguous when every input is, channels-last when every input is,
    otherwise the inputs' stride order (an insertion sort, back to front).
    """
    ndim = len(shape)
    if ndim <= 1:
        return [1] * ndim
    contiguous = all(_is_contiguous(shape, s) for s in layouts)
    channels_last = all(_is_channels_last(shape, s) for s in layouts)
    if contiguous and not channels_last:
        return _contiguous_strides(shape)
    if channels_last and not contiguous:
        perm = [0, *range(2, ndim), 1]
    else:
        perm = list(range(ndim - 1, -1, -1))
        for i in range(1, ndim):
            dim1 = i
            for dim0 in range(i - 1, -1, -1):
                comparison = _should_swap(layouts, shape, perm[dim0], perm[dim1])
                if comparison > 0:
                    perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
                    dim1 = dim0
                elif comparison < 0:
                    break
        perm.reverse()
    physical = _contiguous_strides([shape[p] for p in perm])
    strides = [0] * ndim
    for i, p in enumerate(perm):
        strides[p] = physical[i]
    return strides


def _elementwise(tensors: list[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """A new meta tensor for an elementwise result over ``tensors`` (broadcast together)."""
    if tensors[0].dtype in _LOW and not all(_dense(t.shape, t.stride()) for t in tensors):
        return None  # torch first copies such inputs to float32 in a layout of its own
    shapes = [t.shape for t in tensors]
    first = shapes[0]
    if all(s == first for s in shapes):
        if len(tensors) == 1 or all(t.is_contiguous() for t in tensors):
            if len(first) <= 1 or _plain_contiguous(tensors[0]):
                return _contiguous(first, dtype)
        out = list(first)
        layouts = [t.stride() for t in tensors]
    else:
        out = _broadcast(shapes)
        if out is None:
            return None
        layouts = [
            t.stride() if t.shape == out else _expanded_strides(t.shape, t.stride(), out) for t in tensors
        ]
    return _new(out, _elementwise_strides(out, layouts), dtype)


# ---- elementwise operators ------------------------------------------------------------


def _float_operands(args: tuple) -> Optional[tuple[list[torch.Tensor], torch.dtype]]:
    """The meta tensors among ``args`` and their result dtype, when torch's promotion is plain.

    Plain means: every tensor is a meta tensor of one floating dtype, every other
    operand a Python bool/int/float (those never change a floating tensor's dtype).
    """
    tensors = []
    dtype = None
    for a in args:
        if isinstance(a, torch.Tensor):
            if not _meta(a) or (dtype is not None and a.dtype != dtype):
                return None
            dtype = a.dtype
            tensors.append(a)
        elif a is not None and not isinstance(a, _NUMBERS):
            return None
    if dtype not in _FLOATS:
        return None
    return tensors, dtype


def _unary(self: Any, *rest: Any, **kwargs: Any) -> Optional[torch.Tensor]:
    found = _float_operands((self, *rest))
    if found is None or len(found[0]) != 1 or kwargs.keys() - {"approximate", "alpha"}:
        return None
    if not _dense(self.shape, self.stride()) or any(isinstance(r, bool) for r in rest):
        return None  # composite kernels re-derive the layout at each step; pow(x, True) is special
    out = _elementwise(found[0], found[1])
    if out is not None and out.stride() != self.stride():
        return None  # some kernels keep a dense input's strides, others re-derive them: ambiguous here
    return out


def _scalar_arithmetic(self: Any, other: Any, *rest: Any) -> Optional[torch.Tensor]:
    """mul/add/sub/div/rsub with a Python number: torch's elementwise layout rule, also where it
    differs from a dense input's strides in size-1 dimensions."""
    found = _float_operands((self, other, *rest))
    if found is None or len(found[0]) != 1 or isinstance(other, bool) or not _dense(self.shape, self.stride()):
        return None
    return _elementwise(found[0], found[1])


def _arithmetic(self: Any, other: Any, *rest: Any, **kwargs: Any) -> Optional[torch.Tensor]:
    """add/sub/mul/div: ``other`` a tensor or a Python number (a wrapped scalar arrives as one)."""
    if rest or kwargs.keys() - {"alpha"} or kwargs.get("alpha", 1) != 1:
        return None  # torch scales ``other`` first, into a layout of its own
    found = _float_operands((self, other))
    if found is None:
        return None
    return _elementwise(found[0], found[1])


def _binary(self: Any, other: Any) -> Optional[torch.Tensor]:
    """Two tensors (maximum, minimum, pow)."""
    if not isinstance(other, torch.Tensor):
        return None
    return _arithmetic(self, other)


def _compare(self: Any, other: Any) -> Optional[torch.Tensor]:
    """lt/le/gt/ge/eq/ne of two tensors (``.Tensor``) or a tensor and a number (``.Scalar``)."""
    tensors = [t for t in (self, other) if isinstance(t, torch.Tensor)]
    dtype = self.dtype
    if not all(_meta(t) and t.dtype == dtype for t in tensors) or dtype not in _COMPARABLE:
        return None
    if not isinstance(other, (torch.Tensor, *_NUMBERS)):
        return None
    if dtype not in _FLOATS and isinstance(other, float):
        return None  # an integer tensor against a float: torch converts it first, into a layout of its own
    return _elementwise(tensors, torch.bool)


def _compare_tensors(self: Any, other: Any) -> Optional[torch.Tensor]:
    return _compare(self, other) if isinstance(other, torch.Tensor) else None


def _compare_number(self: Any, other: Any) -> Optional[torch.Tensor]:
    return None if isinstance(other, torch.Tensor) else _compare(self, other)


shape_fn(
    aten.neg.default, aten.exp.default, aten.log.default, aten.sigmoid.default, aten.tanh.default,
    aten.relu.default, aten.gelu.default, aten.silu.default, aten.sqrt.default, aten.rsqrt.default,
    aten.sin.default, aten.cos.default, aten.erf.default, aten.abs.default, aten.reciprocal.default,
    aten.exp2.default, aten.log1p.default, aten.expm1.default, aten.clamp_min.default,
    aten.clamp_max.default, aten.pow.Tensor_Scalar, aten.leaky_relu.default, aten.hardtanh.default, aten.elu.default,
    aten.softplus.default, aten.mish.default, aten.hardswish.default, aten.hardsigmoid.default,
)(_unary)
shape_fn(aten.mul.Scalar, aten.add.Scalar, aten.sub.Scalar, aten.div.Scalar, aten.rsub.Scalar)(_scalar_arithmetic)
shape_fn(aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor)(_arithmetic)
shape_fn(aten.maximum.default, aten.minimum.default, aten.pow.Tensor_Tensor)(_binary)
shape_fn(aten.lt.Tensor, aten.le.Tensor, aten.gt.Tensor, aten.ge.Tensor, aten.eq.Tensor, aten.ne.Tensor)(_compare_tensors)
shape_fn(aten.lt.Scalar, aten.le.Scalar, aten.gt.Scalar, aten.ge.Scalar, aten.eq.Scalar, aten.ne.Scalar)(_compare_number)


@shape_fn(aten.gelu_backward.default, aten.silu_backward.default, aten.sigmoid_backward.default,
          aten.tanh_backward.default)
def _activation_backward(grad: Any, x: Any, *, approximate: str = "none") -> Optional[torch.Tensor]:
    """An activation's gradient: elementwise over ``grad`` and the saved tensor, both of one shape and
    canonical contiguous (the kernels are composites, which re-derive other layouts step by step)."""
    if not (_meta(x) and _meta(grad) and grad.shape == x.shape and _canonical(grad) and _canonical(x)):
        return None
    return _arithmetic(grad, x)


@shape_fn(aten.rsub.Tensor)
def _rsub(self: Any, other: Any, *, alpha: Any = 1) -> Optional[torch.Tensor]:
    if not isinstance(other, torch.Tensor):
        return None
    return _arithmetic(other, self, alpha=alpha)  # other - alpha * self: the layout follows ``other`` first


@shape_fn(aten.bitwise_not.default, aten.logical_not.default)
def _not(self: Any) -> Optional[torch.Tensor]:
    """~mask: a dense bool tensor keeps its layout."""
    if not (_meta(self) and self.dtype == torch.bool and _dense(self.shape, self.stride())):
        return None
    out = _elementwise([self], torch.bool)
    return out if out is not None and out.stride() == self.stride() else None


@shape_fn(aten.clamp.default)
def _clamp(self: Any, min: Any = None, max: Any = None) -> Optional[torch.Tensor]:
    if min is None and max is None:
        return None  # torch raises
    return _unary(self, min, max)


@shape_fn(aten.masked_fill.Scalar)
def _masked_fill(self: Any, mask: Any, value: Any) -> Optional[torch.Tensor]:
    if not (_meta(self) and self.dtype in _FLOATS and _meta(mask) and mask.dtype == torch.bool):
        return None
    if not isinstance(value, _NUMBERS):
        return None
    # A canonical ``self`` only: then torch's rules (keep self's strides; where() then .contiguous()) agree.
    if not _canonical(self) or _broadcast([self.shape, mask.shape]) != list(self.shape):
        return None
    return _contiguous(self.shape, self.dtype)


@shape_fn(aten.where.self)
def _where(condition: Any, self: Any, other: Any) -> Optional[torch.Tensor]:
    found = _float_operands((self, other))
    if found is None or len(found[0]) != 2 or not (_meta(condition) and condition.dtype == torch.bool):
        return None
    return _elementwise([condition, *found[0]], found[1])


# ---- matrix products --------------------------------------------------------------------


def _same_float(*tensors: Any) -> Optional[torch.dtype]:
    dtype = tensors[0].dtype
    if dtype not in _FLOATS or not all(_meta(t) and t.dtype == dtype for t in tensors):
        return None
    return dtype


@shape_fn(aten.mm.default)
def _mm(a: Any, b: Any) -> Optional[torch.Tensor]:
    if _same_float(a, b) is None or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        return None
    return _contiguous((a.shape[0], b.shape[1]), a.dtype)


@shape_fn(aten.addmm.default)
def _addmm(bias: Any, a: Any, b: Any, *, beta: Any = 1, alpha: Any = 1) -> Optional[torch.Tensor]:
    out = _mm(a, b)
    if out is None or _same_float(bias, a) is None or _broadcast([bias.shape, out.shape]) != list(out.shape):
        return None
    return out


@shape_fn(aten.bmm.default)
def _bmm(a: Any, b: Any) -> Optional[torch.Tensor]:
    if _same_float(a, b) is None or a.dim() != 3 or b.dim() != 3:
        return None
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        return None
    return _contiguous((a.shape[0], a.shape[1], b.shape[2]), a.dtype)


@shape_fn(aten.embedding.default)
def _embedding(weight: Any, indices: Any, padding_idx: int = -1, scale_grad_by_freq: bool = False,
               sparse: bool = False) -> Optional[torch.Tensor]:
    """Rows of ``weight`` gathered by integer ``indices``: a new contiguous ``indices.shape + (dim,)``.

    (torch's meta kernel checks its arguments with ``torch._check``, whose first call imports sympy.)"""
    if _same_float(weight) is None or weight.dim() != 2 or not _meta(indices) or indices.dim() < 1:
        return None
    if indices.dtype not in (torch.int64, torch.int32):
        return None
    return _contiguous((*indices.shape, weight.shape[1]), weight.dtype)


# ---- normalisation, softmax, reductions -------------------------------------------------


@shape_fn(aten.native_layer_norm.default)
def _layer_norm(x: Any, normalized_shape: Any, weight: Any, bias: Any, eps: float) -> Optional[tuple]:
    params = [t for t in (weight, bias) if t is not None]
    if _same_float(x, *params) is None or not _canonical(x):
        return None
    axis = x.dim() - len(normalized_shape)
    if axis < 0 or list(x.shape[axis:]) != list(normalized_shape):
        return None
    if any(list(t.shape) != list(normalized_shape) for t in params):
        return None
    stat_shape = [*x.shape[:axis], *([1] * len(normalized_shape))]
    stat_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return _contiguous(x.shape, x.dtype), _contiguous(stat_shape, stat_dtype), _contiguous(stat_shape, stat_dtype)


@shape_fn(aten.native_layer_norm_backward.default)
def _layer_norm_backward(grad: Any, x: Any, normalized_shape: Any, mean: Any, rstd: Any, weight: Any, bias: Any,
                         mask: Any) -> Optional[tuple]:
    """Gradients of input, weight and bias (each where ``mask`` asks and the tensor exists), new and contiguous."""
    params = [t for t in (weight, bias) if t is not None]
    if _same_float(grad, x, *params) is None or not (_canonical(grad) and _canonical(x)) or grad.shape != x.shape:
        return None
    axis = x.dim() - len(normalized_shape)
    if axis < 0 or list(x.shape[axis:]) != list(normalized_shape) or len(mask) != 3:
        return None
    if any(list(t.shape) != list(normalized_shape) for t in params) or not (_meta(mean) and _meta(rstd)):
        return None
    return (
        _contiguous(x.shape, x.dtype) if mask[0] else None,
        _contiguous(weight.shape, weight.dtype) if mask[1] and weight is not None else None,
        _contiguous(bias.shape, bias.dtype) if mask[2] and bias is not None else None,
    )


@shape_fn(aten.native_group_norm.default)
def _group_norm(x: Any, weight: Any, bias: Any, n: int, c: int, hw: int, group: int, eps: float) -> Optional[tuple]:
    params = [t for t in (weight, bias) if t is not None]
    if _same_float(x, *params) is None or not _canonical(x) or x.dim() < 2:
        return None
    if x.shape[0] != n or x.shape[1] != c or x.numel() != n * c * hw or group <= 0 or c % group:
        return None
    if any(list(t.shape) != [c] for t in params):
        return None
    return _contiguous(x.shape, x.dtype), _contiguous((n, group), x.dtype), _contiguous((n, group), x.dtype)


def _dim(dim: int, ndim: int) -> Optional[int]:
    span = max(ndim, 1)
    if not -span <= dim < span:
        return None
    return dim % span


@shape_fn(aten._softmax.default, aten._log_softmax.default)
def _softmax(x: Any, dim: int, half_to_float: bool) -> Optional[torch.Tensor]:
    if half_to_float or _same_float(x) is None or not _canonical(x) or _dim(dim, x.dim()) is None:
        return None
    return _contiguous(x.shape, x.dtype)


@shape_fn(aten._safe_softmax.default)
def _safe_softmax(x: Any, dim: int, dtype: Any = None) -> Optional[torch.Tensor]:
    if dtype is not None:
        return None
    return _softmax(x, dim, False)


def _reduced(x: Any, dims: Any, keepdim: bool) -> Optional[list[int]]:
    """Shape of ``x`` reduced over ``dims`` (None or [] meaning every dimension)."""
    ndim = x.dim()
    if dims is None or len(dims) == 0:
        axes = set(range(ndim))
    else:
        axes = set()
        for d in dims:
            axis = _dim(d, ndim)
            if axis is None or axis in axes:
                return None
            axes.add(axis)
    if ndim == 0:
        return []
    return [1 if i in axes else s for i, s in enumerate(x.shape) if keepdim or i not in axes]


def _reduction(x: Any, dims: Any, keepdim: bool, dtype: Any = None) -> Optional[torch.Tensor]:
    # torch reduces into a new contiguous tensor whatever the input's layout
    if dtype is not None or _same_float(x) is None or 0 in x.shape:
        return None
    shape = _reduced(x, dims, keepdim)
    return None if shape is None else _contiguous(shape, x.dtype)


@shape_fn(aten.sum.dim_IntList, aten.mean.dim)
def _sum(x: Any, dim: Any, keepdim: bool = False, *, dtype: Any = None) -> Optional[torch.Tensor]:
    return _reduction(x, dim, keepdim, dtype)


@shape_fn(aten.sum.default)
def _sum_all(x: Any, *, dtype: Any = None) -> Optional[torch.Tensor]:
    return _reduction(x, None, False, dtype)


@shape_fn(aten.amax.default, aten.amin.default)
def _amax(x: Any, dim: Any = (), keepdim: bool = False) -> Optional[torch.Tensor]:
    return _reduction(x, dim, keepdim)


@shape_fn(aten.linalg_vector_norm.default)
def _vector_norm(x: Any, ord: Any = 2, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Optional[torch.Tensor]:
    if not isinstance(ord, (int, float)) or ord != ord:
        return None
    return _reduction(x, dim, keepdim, dtype)


@shape_fn(aten.argmin.default, aten.argmax.default)
def _argmin(x: Any, dim: Any = None, keepdim: bool = False) -> Optional[torch.Tensor]:
    if dim is None or _same_float(x) is None or 0 in x.shape:
        return None
    shape = _reduced(x, [dim], keepdim)
    return None if shape is None else _contiguous(shape, torch.int64)


@shape_fn(aten.cumsum.default)
def _cumsum(x: Any, dim: int, *, dtype: Any = None) -> Optional[torch.Tensor]:
    if dtype is not None or _same_float(x) is None or not _canonical(x) or _dim(dim, x.dim()) is None:
        return None
    return _contiguous(x.shape, x.dtype)


# ---- copies and concatenation -----------------------------------------------------------


@shape_fn(aten.clone.default)
def _clone(x: Any, *, memory_format: Any = None) -> Optional[torch.Tensor]:
    if memory_format not in (None, torch.preserve_format) or not _meta(x) or not _canonical(x):
        return None
    return _contiguous(x.shape, x.dtype)


@shape_fn(aten.cat.default)
def _cat(tensors: Any, dim: int = 0) -> Optional[torch.Tensor]:
    """torch concatenates, then copies to channels-last when every input's strides suggest it, else contiguous."""
    if not tensors or tensors[0].dtype not in _COMPARABLE or not all(_meta(t) and t.dtype == tensors[0].dtype for t in tensors):
        return None  # one dtype (torch promotes mixed ones)
    first = tensors[0]
    ndim = first.dim()
    axis = _dim(dim, ndim)
    if axis is None or ndim == 0 or (ndim == 5 and not all(_canonical(t) for t in tensors)):
        return None  # 5-d: channels_last_3d is torch's to pick
    rest = [s for i, s in enumerate(first.shape) if i != axis]
    for t in tensors:
        if t.dim() != ndim or 0 in t.shape or [s for i, s in enumerate(t.shape) if i != axis] != rest:
            return None
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in tensors)
    if all(_strides_like_channels_last(t.shape, t.stride()) for t in tensors):
        return _new(shape, _channels_last_strides(shape), first.dtype)
    return _contiguous(shape, first.dtype)


@shape_fn(aten.full_like.default, aten.zeros_like.default, aten.ones_like.default, aten.empty_like.default)
def _like(self: Any, *value: Any, dtype: Any = None, layout: Any = None, device: Any = None,
          pin_memory: Any = None, memory_format: Any = None) -> Optional[torch.Tensor]:
    """A new tensor shaped like ``self`` (canonical contiguous ``self`` only: then every memory format agrees)."""
    if not _meta(self) or not _canonical(self) or layout not in (None, torch.strided) or pin_memory:
        return None
    if device is not None and torch.device(device).type != "meta":
        return None
    if memory_format not in (None, torch.preserve_format, torch.contiguous_format):
        return None
    if value and not isinstance(value[0], _NUMBERS):
        return None
    return _contiguous(self.shape, self.dtype if dtype is None else dtype)


@shape_fn(aten.new_zeros.default, aten.new_ones.default, aten.new_empty.default, aten.new_full.default)
def _new_like(self: Any, size: Any, *value: Any, dtype: Any = None, layout: Any = None, device: Any = None,
              pin_memory: Any = None) -> Optional[torch.Tensor]:
    if not _meta(self) or layout not in (None, torch.strided) or pin_memory or any(s < 0 for s in size):
        return None
    if device is not None and torch.device(device).type != "meta":
        return None
    if value and not isinstance(value[0], _NUMBERS):
        return None
    return _contiguous(list(size), self.dtype if dtype is None else dtype)


# ---- convolution and resizing ------------------------------------------------------------


def _conv_shape(x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, transposed: bool,
                output_padding: Any, groups: int) -> Optional[list[int]]:
    params = [t for t in (weight, bias) if t is not None]
    if _same_float(x, *params) is None or 0 in x.shape:  # torch makes a contiguous output whatever the layouts
        return None
    spatial = x.dim() - 2
    if spatial < 1 or weight.dim() != x.dim() or groups < 1:
        return None
    if not all(len(v) == spatial for v in (stride, padding, dilation)) or (transposed and len(output_padding) != spatial):
        return None
    kernel = weight.shape[2:]
    if transposed:
        if x.shape[1] != weight.shape[0]:
            return None
        channels = weight.shape[1] * groups
        sizes = [(x.shape[i + 2] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (kernel[i] - 1) + output_padding[i] + 1
                 for i in range(spatial)]
    else:
        if x.shape[1] != weight.shape[1] * groups or weight.shape[0] % groups:
            return None
        channels = weight.shape[0]
        sizes = [(x.shape[i + 2] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
                 for i in range(spatial)]
    if bias is not None and list(bias.shape) != [channels]:
        return None
    if any(s <= 0 for s in sizes) or min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        return None
    return [x.shape[0], channels, *sizes]


@shape_fn(aten.convolution.default)
def _convolution(x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, transposed: bool,
                 output_padding: Any, groups: int) -> Optional[torch.Tensor]:
    if torch._C._get_tracing_state() is not None:
        return None  # re-issued as aten::_convolution for the tracer (FastMeta.__torch_dispatch__)
    shape = _conv_shape(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    return None if shape is None else _contiguous(shape, x.dtype)


@shape_fn(aten._convolution.default)
def _convolution_traced(x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, transposed: bool,
                        output_padding: Any, groups: int, *flags: Any) -> Optional[torch.Tensor]:
    shape = _conv_shape(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    return None if shape is None else _contiguous(shape, x.dtype)


def _strides_like_channels_last(shape: Any, strides: Any) -> bool:
    """torch's suggest_memory_format() test for a 4-d tensor (NHWC-ordered strides)."""
    if len(shape) != 4 or strides[1] == 0:
        return False
    least = 0
    for d in (1, 3, 2, 0):
        if shape[d] == 0 or strides[d] < least or (d == 0 and least == strides[1]):
            return False
        least = strides[d] * shape[d]
    return True


def _channels_last_strides(shape: Any) -> list[int]:
    n, c, h, w = shape
    return [h * w * c, 1, w * c, c]


def _resize(x: Any, output_size: Any) -> Optional[torch.Tensor]:
    """Interpolation to ``output_size``: contiguous, or channels-last when the input's strides are NHWC-ordered."""
    if _same_float(x) is None or x.dim() != 4 or len(output_size) != 2:
        return None
    if 0 in x.shape or any(s <= 0 for s in output_size):
        return None
    shape = [*x.shape[:2], *output_size]
    if _strides_like_channels_last(x.shape, x.stride()):
        return _new(shape, _channels_last_strides(shape), x.dtype)
    return _contiguous(shape, x.dtype)


@shape_fn(aten.upsample_bicubic2d.default, aten.upsample_bilinear2d.default)
def _upsample_interp(x: Any, output_size: Any, align_corners: bool, *scales: Any) -> Optional[torch.Tensor]:
    return _resize(x, output_size)


@shape_fn(aten.upsample_nearest2d.default)
def _upsample_nearest(x: Any, output_size: Any, *scales: Any) -> Optional[torch.Tensor]:
    return _resize(x, output_size)


# ---- in-place fills (initialising weights on meta) ----------------------------------------
# On meta there is nothing to fill: these return ``self`` after torch's own argument checks.


def _fillable(t: Any) -> bool:
    return _meta(t) and t.dtype in _FLOATS


@shape_fn(aten.uniform_.default)
def _uniform(self: Any, low: float = 0.0, high: float = 1.0, *, generator: Any = None) -> Optional[torch.Tensor]:
    return self if _fillable(self) and low <= high else None


@shape_fn(aten.normal_.default)
def _normal(self: Any, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> Optional[torch.Tensor]:
    return self if _fillable(self) and std >= 0 else None


@shape_fn(aten.fill_.Scalar)
def _fill(self: Any, value: Any) -> Optional[torch.Tensor]:
    return self if _fillable(self) and isinstance(value, _NUMBERS) else None


@shape_fn(aten.zero_.default)
def _zero(self: Any) -> Optional[torch.Tensor]:
    return self if _fillable(self) else None


# ---- factories (tensors made from sizes, on meta) ------------------------------------------
# On meta, torch makes these with Python reference kernels whose argument checks import sympy (about
# 0.3 s), and ``randn`` with a generator argument imports torch._dynamo (about 0.9 s): a model that
# draws its position embeddings with ``torch.randn`` paid that when built on meta. The output is a
# contiguous tensor of the given size, in the requested dtype or torch's default.

_META = torch.device("meta")


def _factory(layout: Any, device: Any, pin_memory: Any) -> bool:
    """A plain strided tensor on meta is asked for."""
    return device == _META and layout in (None, torch.strided) and not pin_memory


def _made(size: Any, dtype: torch.dtype) -> Optional[torch.Tensor]:
    """A contiguous meta tensor of ``size``, or ``None`` (torch's kernel) for a size that is not plain
    non-negative integers."""
    sizes = list(size)
    return _contiguous(sizes, dtype) if all(type(s) is int and s >= 0 for s in sizes) else None


@shape_fn(aten.randn.default, aten.randn.generator)
def _randn(size: Any, *, generator: Any = None, dtype: Any = None, layout: Any = None, device: Any = None,
           pin_memory: Any = None) -> Optional[torch.Tensor]:
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not _factory(layout, device, pin_memory) or dtype not in _FLOATS:
        return None
    return _made(size, dtype)


@shape_fn(aten.randint.default, aten.randint.low)
def _randint(*args: Any, generator: Any = None, dtype: Any = None, layout: Any = None, device: Any = None,
             pin_memory: Any = None) -> Optional[torch.Tensor]:
    low, high, size = (0, *args) if len(args) == 2 else args
    dtype = torch.int64 if dtype is None else dtype
    if not _factory(layout, device, pin_memory) or dtype not in (torch.int64, torch.int32):
        return None
    if type(low) is not int or type(high) is not int or low >= high:
        return None
    return _made(size, dtype)


def _number(x: Any) -> bool:
    return type(x) in (int, float) and x == x and abs(x) != float("inf")


@shape_fn(aten.arange.default, aten.arange.start, aten.arange.start_step)
def _arange(*args: Any, dtype: Any = None, layout: Any = None, device: Any = None, pin_memory: Any = None) -> Optional[torch.Tensor]:
    start, end, step = (0, args[0], 1) if len(args) == 1 else (*args, 1) if len(args) == 2 else args
    if not all(_number(x) for x in (start, end, step)) or step == 0:
        return None
    integers = all(type(x) is int for x in (start, end, step))
    if dtype is None:
        dtype = torch.int64 if integers else torch.get_default_dtype()
    if not _factory(layout, device, pin_memory) or not (dtype in _FLOATS or (integers and dtype == torch.int64)):
        return None
    if (end - start) * step < 0:
        return None  # torch refuses a step that points away from the end
    length = -((start - end) // step) if integers else math.ceil((end - start) / step)
    return _contiguous([length], dtype)


@shape_fn(aten.linspace.default)
def _linspace(start: Any, end: Any, steps: int, *, dtype: Any = None, layout: Any = None, device: Any = None,
              pin_memory: Any = None) -> Optional[torch.Tensor]:
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not _factory(layout, device, pin_memory) or dtype not in _FLOATS:
        return None
    if not (_number(start) and _number(end)) or type(steps) is not int or steps < 0:
        return None
    return _contiguous([steps], dtype)


@shape_fn(aten.eye.default, aten.eye.m)
def _eye(n: int, *rest: Any, dtype: Any = None, layout: Any = None, device: Any = None, pin_memory: Any = None) -> Optional[torch.Tensor]:
    m = rest[0] if rest else n
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not _factory(layout, device, pin_memory) or dtype not in _COMPARABLE:
        return None
    return _made([n, m], dtype)
