"""Shape functions of the elementwise operators: arithmetic with broadcasting and type promotion,
comparisons, activation backward, clamp, masked_fill, where."""

from __future__ import annotations

from typing import Any

import torch

from .layout import (
    _broadcast,
    _canonical,
    _contiguous,
    _dense,
    _elementwise,
    _meta,
)
from .mode import (
    _COMPARABLE,
    _FLOATS,
    _NUMBERS,
    aten,
    shape_fn,
)

# ---- elementwise operators ------------------------------------------------------------


def _float_operands(args: tuple[Any, ...]) -> tuple[list[torch.Tensor], torch.dtype] | None:
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


def _unary(self: Any, *rest: Any, **kwargs: Any) -> torch.Tensor | None:
    found = _float_operands((self, *rest))
    if found is None or len(found[0]) != 1 or kwargs.keys() - {"approximate", "alpha"}:
        return None
    if not _dense(self.shape, self.stride()) or any(isinstance(r, bool) for r in rest):
        return None  # composite kernels re-derive the layout at each step; pow(x, True) is special
    out = _elementwise(found[0], found[1])
    if out is not None and out.stride() != self.stride():
        return None  # some kernels keep a dense input's strides, others re-derive them: ambiguous here
    return out


def _scalar_arithmetic(self: Any, other: Any, *rest: Any) -> torch.Tensor | None:
    """mul/add/sub/div/rsub with a Python number: torch's elementwise layout rule, also where it
    differs from a dense input's strides in size-1 dimensions."""
    found = _float_operands((self, other, *rest))
    if found is None or len(found[0]) != 1 or isinstance(other, bool) or not _dense(self.shape, self.stride()):
        return None
    return _elementwise(found[0], found[1])


def _arithmetic(self: Any, other: Any, *rest: Any, **kwargs: Any) -> torch.Tensor | None:
    """add/sub/mul/div: ``other`` a tensor or a Python number (a wrapped scalar arrives as one)."""
    if rest or kwargs.keys() - {"alpha"} or kwargs.get("alpha", 1) != 1:
        return None  # torch scales ``other`` first, into a layout of its own
    found = _float_operands((self, other))
    if found is None:
        return None
    return _elementwise(found[0], found[1])


def _binary(self: Any, other: Any) -> torch.Tensor | None:
    """Two tensors (maximum, minimum, pow)."""
    if not isinstance(other, torch.Tensor):
        return None
    return _arithmetic(self, other)


def _compare(self: Any, other: Any) -> torch.Tensor | None:
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


def _compare_tensors(self: Any, other: Any) -> torch.Tensor | None:
    return _compare(self, other) if isinstance(other, torch.Tensor) else None


def _compare_number(self: Any, other: Any) -> torch.Tensor | None:
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
def _activation_backward(grad: Any, x: Any, *, approximate: str = "none") -> torch.Tensor | None:
    """An activation's gradient: elementwise over ``grad`` and the saved tensor, both of one shape and
    canonical contiguous (the kernels are composites, which re-derive other layouts step by step)."""
    if not (_meta(x) and _meta(grad) and grad.shape == x.shape and _canonical(grad) and _canonical(x)):
        return None
    return _arithmetic(grad, x)


@shape_fn(aten.rsub.Tensor)
def _rsub(self: Any, other: Any, *, alpha: Any = 1) -> torch.Tensor | None:
    if not isinstance(other, torch.Tensor):
        return None
    return _arithmetic(other, self, alpha=alpha)  # other - alpha * self: the layout follows ``other`` first


@shape_fn(aten.bitwise_not.default, aten.logical_not.default)
def _not(self: Any) -> torch.Tensor | None:
    """~mask: a dense bool tensor keeps its layout."""
    if not (_meta(self) and self.dtype == torch.bool and _dense(self.shape, self.stride())):
        return None
    out = _elementwise([self], torch.bool)
    return out if out is not None and out.stride() == self.stride() else None


@shape_fn(aten.clamp.default)
def _clamp(self: Any, min: Any = None, max: Any = None) -> torch.Tensor | None:
    if min is None and max is None:
        return None  # torch raises
    return _unary(self, min, max)


@shape_fn(aten.masked_fill.Scalar)
def _masked_fill(self: Any, mask: Any, value: Any) -> torch.Tensor | None:
    if not (_meta(self) and self.dtype in _FLOATS and _meta(mask) and mask.dtype == torch.bool):
        return None
    if not isinstance(value, _NUMBERS):
        return None
    # A canonical ``self`` and ``mask`` only: then torch's rules (keep self's strides; where() then .contiguous())
    # agree (a mask of another layout can lead torch's strides of size-1 dimensions).
    if not (_canonical(self) and _canonical(mask)) or _broadcast([self.shape, mask.shape]) != list(self.shape):
        return None
    return _contiguous(self.shape, self.dtype)


@shape_fn(aten.where.self)
def _where(condition: Any, self: Any, other: Any) -> torch.Tensor | None:
    found = _float_operands((self, other))
    if found is None or len(found[0]) != 2 or not (_meta(condition) and condition.dtype == torch.bool):
        return None
    return _elementwise([condition, *found[0]], found[1])


# ---- in-place elementwise operators ----------------------------------------------------
# ``relu_``, ``hardtanh_`` (ReLU6), ``add_`` of a residual...: the output is ``self``, unchanged in
# shape, strides and dtype. torch's meta kernels of several (``hardtanh_``, ``clamp_``, the
# activations' in-place forms) are Python references at 0.1-0.4 ms a call. Covered: a floating
# ``self`` whose elements do not share memory (any strides but 0); Python numbers as the other arguments, or (binary forms) a
# floating meta tensor of the same dtype that broadcasts to ``self``'s shape without partly
# overlapping it. Anything else takes torch's kernel, which raises where it must.


def _root(t: torch.Tensor) -> torch.Tensor:
    return t._base if t._base is not None else t


def _writable(self: Any) -> bool:
    """torch refuses an in-place write only where elements share memory (a stride-0 dimension of
    size > 1: an expanded tensor); a strided view (a gate chunked out of an LSTM's products) is written."""
    return _meta(self) and self.dtype in _FLOATS and not any(
        stride == 0 and size > 1 for size, stride in zip(self.shape, self.stride()))


def _in_place_unary(self: Any, *rest: Any, **kwargs: Any) -> torch.Tensor | None:
    if not _writable(self) or not all(isinstance(r, _NUMBERS) for r in (*rest, *kwargs.values())):
        return None
    return self  # type: ignore[no-any-return]


def _in_place_clamp(self: Any, min: Any = None, max: Any = None) -> torch.Tensor | None:
    if min is None and max is None:
        return None  # torch: at least one of them
    return _in_place_unary(self, *(v for v in (min, max) if v is not None))


def _in_place_gelu(self: Any, *, approximate: str = "none") -> torch.Tensor | None:
    return _in_place_unary(self) if approximate in ("none", "tanh") else None


def _in_place_binary(self: Any, other: Any, *, alpha: Any = 1) -> torch.Tensor | None:
    if not _writable(self) or not isinstance(alpha, _NUMBERS) or isinstance(alpha, bool):
        return None
    if isinstance(other, torch.Tensor):
        if not _meta(other) or other.dtype != self.dtype or other.dim() > self.dim():
            return None
        if other is not self and _root(other) is _root(self):
            return None  # a view of the same tensor: torch checks the overlap
        if any(o != 1 and o != s for o, s in zip(reversed(other.shape), reversed(self.shape))):
            return None
        return self  # type: ignore[no-any-return]
    return None


def _ops(*names: str) -> list[Any]:
    """The overloads that exist in the installed torch."""
    found = []
    for name in names:
        packet, _, overload = name.partition(".")
        op = getattr(getattr(aten, packet, None), overload or "default", None)
        if op is not None:
            found.append(op)
    return found


shape_fn(*_ops("relu_", "hardtanh_", "silu_", "hardswish_", "hardsigmoid_", "sigmoid_", "tanh_", "mish_",
               "leaky_relu_", "elu_", "neg_", "exp_", "mul_.Scalar", "add_.Scalar", "sub_.Scalar",
               "div_.Scalar"))(_in_place_unary)
shape_fn(*_ops("clamp_", "clamp_min_", "clamp_max_"))(_in_place_clamp)
shape_fn(*_ops("gelu_"))(_in_place_gelu)
shape_fn(*_ops("add_.Tensor", "sub_.Tensor", "mul_.Tensor", "div_.Tensor"))(_in_place_binary)
