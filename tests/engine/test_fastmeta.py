"""fastmeta: every shape function agrees with torch's own meta kernel, and counts never change.

The shape functions are compared with torch's kernels (called with no mode active) on
shapes with and without size-1 dimensions, contiguous, transposed, channels-last, sliced
and broadcast (expanded) layouts, in float32, bfloat16, float16 and float64 (and integer
inputs, where a shape function must step aside): same shape, strides, dtype and storage
offset, or the shape function returns ``None`` (torch's kernel then runs). Where torch
raises, the shape function must step aside too.

Counts: the fast path and torch's plain meta kernels give the same FlopResult on the layer
model and the small VAR (transformer forward, forward on images, generation) of
``tests/crosscheck_models.py``, with both captures. The whole VAR example suite is compared with the plain path's counts by
``tests/test_var_example.py`` (its committed baseline was recorded before the fast path
existed, and the suite must match it exactly).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
from crosscheck_models import Layers, var_models, var_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_flopbudget.engine import fastmeta
from pytest_flopbudget.engine.count import count
from pytest_flopbudget.engine.fastmeta import elementwise as fm_elementwise

aten = torch.ops.aten
# torch 2.9 registers no meta kernel for aten::_convolution (later versions do)
CONVOLUTION_HAS_META = torch._C._dispatch_has_kernel_for_dispatch_key("aten::_convolution", "Meta")
ROOT = Path(__file__).resolve().parents[2]
FLOATS = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def meta(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def layouts(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Iterator[torch.Tensor]:
    """The same logical shape in several memory layouts."""
    yield meta(*shape, dtype=dtype)
    n = len(shape)
    perms = {tuple(reversed(range(n))), (*range(n - 2), n - 1, n - 2), (*range(1, n), 0)} if n >= 2 else set()
    for perm in sorted(perms - {tuple(range(n))}):
        inverse = [perm.index(i) for i in range(n)]
        yield meta(*[shape[p] for p in perm], dtype=dtype).permute(inverse)
    if n == 4:
        yield meta(*shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
    if n >= 1:
        yield meta(*shape[:-1], 2 * shape[-1], dtype=dtype)[..., ::2]
    if 1 in shape:
        yield meta(*shape, dtype=dtype).expand(*[3 if s == 1 else s for s in shape])


def describe(out: Any) -> Any:
    if out is None:
        return None
    if isinstance(out, torch.Tensor):
        return tuple(out.shape), out.stride(), out.dtype, out.storage_offset()
    return tuple(describe(o) for o in out)


class Checks:
    """Runs shape function and kernel side by side; counts the cases the fast path answered."""

    def __init__(self) -> None:
        self.answered: dict[Any, int] = {}
        self.errors: list[str] = []

    def __call__(self, op: Any, *args: Any, **kwargs: Any) -> None:
        self.against(op, op, *args, **kwargs)

    def against(self, kernel: Any, op: Any, *args: Any, **kwargs: Any) -> None:
        """``op``'s shape function against torch's ``kernel`` (``op`` itself, or one with the same
        output where torch has no meta kernel for ``op``), which takes the leading arguments it declares."""
        fast = fastmeta.SHAPES[op](*args, **kwargs)
        try:
            expected = kernel(*args[:len(kernel._schema.arguments)], **kwargs)
        except Exception as exc:  # torch refuses: the shape function must step aside
            if fast is not None:
                self.errors.append(f"{op}: torch raises ({type(exc).__name__}) but the shape function answered")
            return
        if fast is None:
            return
        self.answered[op] = self.answered.get(op, 0) + 1
        if describe(fast) != describe(expected):
            shown = [describe(a) if isinstance(a, torch.Tensor) else a for a in args]
            self.errors.append(f"{op}{shown} {kwargs}: fast {describe(fast)} != torch {describe(expected)}")


SHAPES_ELEMENTWISE = [(5,), (2, 3), (1, 3), (2, 1, 4), (2, 3, 1, 5), (1, 3, 4, 1), (1, 1, 1, 1), ()]


def _unary_ops() -> list[Any]:
    return [op for op, fn in fastmeta.SHAPES.items() if fn in (fm_elementwise._unary, fm_elementwise._scalar_arithmetic)]


def _scalar_args(op: Any) -> list[tuple]:
    """The extra arguments to try an operator with, after ``self``."""
    required = [a for a in op._schema.arguments[1:] if not a.kwarg_only and not a.has_default_value()]
    if not required:
        return [()]
    return [tuple([2.0] * len(required)), tuple([2] * len(required)), tuple([True] * len(required))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64])
def test_unary_and_scalar_operators(dtype: torch.dtype) -> None:
    check = Checks()
    for shape in SHAPES_ELEMENTWISE:
        for x in layouts(shape, dtype):
            for op in _unary_ops():
                for extra in _scalar_args(op):
                    check(op, x, *extra)
            check(aten.clamp.default, x, -1.0, 1.0)
            check(aten.clamp.default, x, None, 0.5)
            check(aten.clamp.default, x)
            check(aten.gelu.default, x, approximate="tanh")
            for op in (aten.lt.Scalar, aten.ge.Scalar, aten.eq.Scalar):
                check(op, x, 0.5)
                check(op, x, 2)
            mask = x > 0 if dtype != torch.int64 else x.to(torch.bool)
            check(aten.bitwise_not.default, mask)
            check(aten.logical_not.default, mask)
            check(aten.ge.Tensor, x, x)
            check(aten.ge.Tensor, x, mask)
    assert not check.errors, "\n".join(check.errors[:20])
    if dtype != torch.int64:
        assert set(_unary_ops()) <= set(check.answered), set(_unary_ops()) - set(check.answered)
    else:  # integer arithmetic promotes by other rules: torch's kernels decide (comparisons aside)
        assert set(check.answered) == {aten.lt.Scalar, aten.ge.Scalar, aten.eq.Scalar, aten.ge.Tensor,
                                       aten.bitwise_not.default, aten.logical_not.default}


def _binary_ops() -> list[Any]:
    two = (fm_elementwise._arithmetic, fm_elementwise._binary, fm_elementwise._compare_tensors, fm_elementwise._rsub)
    return [op for op, fn in fastmeta.SHAPES.items() if fn in two]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_binary_operators_broadcast_and_layouts(dtype: torch.dtype) -> None:
    check = Checks()
    for shape in [(2, 3), (1, 3), (2, 1, 4), (2, 3, 1, 5)]:
        for x in layouts(shape, dtype):
            for other_shape in [shape, shape[-1:], (1,) * len(shape), shape[1:], ()]:
                for y in list(layouts(other_shape, dtype))[:4]:
                    for op in _binary_ops():
                        check(op, x, y)
                        check(op, y, x)
                    check(aten.add.Tensor, x, y, alpha=2)
                    check(aten.where.self, x > 0, x, y)
                    check(aten.masked_fill.Scalar, x, y > 0, 1.5)
            for op in _binary_ops():
                check(op, x, 2.0)
            check(aten.mul.Tensor, x, meta(*shape, dtype=torch.float64))  # mixed dtypes: torch decides
            check(aten.where.self, x > 0, x, 0.0)
    assert not check.errors, "\n".join(check.errors[:20])
    assert set(_binary_ops()) | {aten.where.self, aten.masked_fill.Scalar} <= set(check.answered)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    drop=st.lists(st.booleans(), min_size=4, max_size=4),
    perm_seed=st.permutations(range(4)),
    other_perm=st.permutations(range(4)),
    step=st.integers(1, 2),
    dtype=st.sampled_from(FLOATS),
)
def test_elementwise_strides_match_torch(shape: list[int], drop: list[bool], perm_seed: list[int],
                                         other_perm: list[int], step: int, dtype: torch.dtype) -> None:
    """Random shapes, broadcasts (size-1 or missing dimensions) and layouts, both operand orders."""
    n = len(shape)

    def laid_out(sizes: list[int], perm: list[int]) -> torch.Tensor:
        order = [p for p in perm if p < len(sizes)]
        base = meta(*[sizes[p] for p in order], dtype=dtype)
        if step > 1:
            base = meta(*[sizes[p] for p in order[:-1]], sizes[order[-1]] * step, dtype=dtype)[..., ::step]
        return base.permute([order.index(i) for i in range(len(sizes))])

    x = laid_out(shape, perm_seed)
    other = [1 if d else s for s, d in zip(shape, drop)][n - max(1, n - sum(drop[:1])):]
    y = laid_out(other, other_perm)
    check = Checks()
    for op in (aten.add.Tensor, aten.mul.Tensor, aten.div.Tensor, aten.lt.Tensor, aten.rsub.Tensor):
        check(op, x, y)
        check(op, y, x)
    for op in (aten.exp.default, aten.gelu.default, aten.neg.default):
        check(op, x)
    check(aten.where.self, y > 0, x, y)
    check(aten.masked_fill.Scalar, x, y > 0, 0.0)
    assert not check.errors, "\n".join(check.errors)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reductions_softmax_norms_copies(dtype: torch.dtype) -> None:
    check = Checks()
    for shape in [(2, 3), (1, 3), (2, 1, 4), (2, 3, 4), (2, 4, 3, 3)]:
        for x in layouts(shape, dtype):
            n = len(shape)
            for dims in ([-1], [0], [0, -1], [], None):
                for keep in (False, True):
                    check(aten.sum.dim_IntList, x, dims, keep)
                    check(aten.linalg_vector_norm.default, x, 2.0, dims, keep)
                    check(aten.linalg_vector_norm.default, x, 1, dims, keep)
                    check(aten.amax.default, x, dims or [], keep)
                    check(aten.amin.default, x, dims or [], keep)
                    if dims is not None:
                        check(aten.mean.dim, x, dims, keep)
            check(aten.sum.default, x)
            check(aten.sum.dim_IntList, x, [-1], False, dtype=torch.float64)
            for d in range(-1, n):
                check(aten._softmax.default, x, d, False)
                check(aten._log_softmax.default, x, d, False)
                check(aten._safe_softmax.default, x, d)
                check(aten.cumsum.default, x, d)
                check(aten.argmin.default, x, d, False)
                check(aten.argmax.default, x, d, True)
            check(aten.clone.default, x)
            check(aten.clone.default, x, memory_format=torch.contiguous_format)
            check(aten.native_layer_norm.default, x, [shape[-1]], meta(shape[-1], dtype=dtype), meta(shape[-1], dtype=dtype), 1e-5)
            check(aten.native_layer_norm.default, x, list(shape[-2:]), None, None, 1e-5)
            check(aten.cat.default, [x, x], -1)
            check(aten.cat.default, [x, x.contiguous()], 0)
            check(aten.cat.default, [x, meta(*shape, dtype=torch.float64)], 0)
            check(aten.cat.default, [x.to(torch.int64), x.to(torch.int64)], 0)
            check(aten.cat.default, [x, meta(*shape, dtype=dtype).contiguous(memory_format=torch.channels_last)]
                  if n == 4 else [x, x], 1)
            for op in (aten.zeros_like.default, aten.ones_like.default, aten.empty_like.default):
                check(op, x)
                check(op, x, dtype=torch.float64)
                check(op, x, memory_format=torch.channels_last)
            check(aten.full_like.default, x, 2.0)
            check(aten.full_like.default, x, 7, dtype=torch.int64)
            for op, extra in ((aten.new_zeros.default, ()), (aten.new_ones.default, ()), (aten.new_empty.default, ()),
                              (aten.new_full.default, (1.5,))):
                check(op, x, [2, 3], *extra)
                check(op, x, [4], *extra, dtype=torch.int64)
            if n == 4:
                c = shape[1]
                check(aten.native_group_norm.default, x, meta(c, dtype=dtype), meta(c, dtype=dtype), shape[0], c,
                      shape[2] * shape[3], 2, 1e-5)
                check(aten.native_group_norm.default, x, None, None, shape[0], c, shape[2] * shape[3], 3, 1e-5)
            if n >= 2:
                c = shape[1]
                for training in (True, False):
                    stats = [meta(c, dtype=dtype) for _ in range(4)]
                    check(aten.native_batch_norm.default, x, *stats, training, 0.1, 1e-5)
                check(aten.native_batch_norm.default, x, None, None, None, None, True, 0.1, 1e-5)
    assert not check.errors, "\n".join(check.errors[:20])
    wanted = {aten.sum.dim_IntList, aten.linalg_vector_norm.default, aten.amax.default, aten.mean.dim, aten.sum.default,
              aten._softmax.default, aten._log_softmax.default, aten._safe_softmax.default, aten.cumsum.default,
              aten.argmin.default, aten.clone.default, aten.native_layer_norm.default, aten.cat.default,
              aten.native_group_norm.default, aten.zeros_like.default, aten.ones_like.default, aten.empty_like.default,
              aten.full_like.default, aten.new_zeros.default, aten.new_ones.default, aten.new_empty.default,
              aten.new_full.default, aten.native_batch_norm.default}
    assert wanted <= set(check.answered), wanted - set(check.answered)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matrix_products(dtype: torch.dtype) -> None:
    check = Checks()
    for n, k, p in [(3, 4, 5), (1, 4, 1), (5, 1, 3)]:
        for a in layouts((n, k), dtype):
            for b in layouts((k, p), dtype):
                check(aten.mm.default, a, b)
                check(aten.mm.default, a, meta(k + 1, p, dtype=dtype))
                for bias in [meta(p, dtype=dtype), meta(n, p, dtype=dtype), meta(1, p, dtype=dtype), meta(n + 1, p, dtype=dtype)]:
                    check(aten.addmm.default, bias, a, b)
                    check(aten.addmm.default, bias, a, b, beta=0.5, alpha=2)
        for a in layouts((2, n, k), dtype):
            for b in list(layouts((2, k, p), dtype))[:3]:
                check(aten.bmm.default, a, b)
        check(aten.mm.default, meta(n, k, dtype=dtype), meta(k, p, dtype=torch.float64))
    assert not check.errors, "\n".join(check.errors[:20])
    assert {aten.mm.default, aten.addmm.default, aten.bmm.default} <= set(check.answered)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_backward_operators(dtype: torch.dtype) -> None:
    """The backward kernels of layer norm and the activations, on the layouts autograd hands them."""
    check = Checks()
    for shape in [(2, 5, 8), (1, 8), (3, 1, 4, 8)]:
        d = shape[-1]
        for x in layouts(shape, dtype):
            for grad in list(layouts(shape, dtype))[:3]:
                for op in (aten.gelu_backward.default, aten.silu_backward.default, aten.sigmoid_backward.default,
                           aten.tanh_backward.default):
                    check(op, grad, x)
                check(aten.gelu_backward.default, grad, x, approximate="tanh")
                check(aten.gelu_backward.default, grad, meta(*shape, dtype=torch.float64))
                _, mean, rstd = aten.native_layer_norm.default(x.contiguous(), [d], None, None, 1e-5)
                weight, bias = meta(d, dtype=dtype), meta(d, dtype=dtype)
                for mask in ([True, True, True], [True, False, False], [False, True, True], [False, False, False]):
                    check(aten.native_layer_norm_backward.default, grad, x, [d], mean, rstd, weight, bias, mask)
                    check(aten.native_layer_norm_backward.default, grad, x, [d], mean, rstd, None, None, mask)
                    check(aten.native_layer_norm_backward.default, grad, x, [d], mean, rstd, weight, None, mask)
    assert not check.errors, "\n".join(check.errors[:20])
    wanted = {aten.gelu_backward.default, aten.silu_backward.default, aten.sigmoid_backward.default,
              aten.tanh_backward.default, aten.native_layer_norm_backward.default}
    assert wanted <= set(check.answered), wanted - set(check.answered)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_embedding(dtype: torch.dtype) -> None:
    check = Checks()
    for weight in layouts((10, 6), dtype):
        for index_shape in [(4,), (2, 3), (1, 1, 5), (0,), ()]:
            for index_dtype in (torch.int64, torch.int32, torch.float32):
                indices = meta(*index_shape, dtype=index_dtype)
                check(aten.embedding.default, weight, indices)
                check(aten.embedding.default, weight, indices, 0, True, False)
                check(aten.embedding.default, weight, indices[..., :1] if index_shape else indices)
    check(aten.embedding.default, meta(10, 6, 2, dtype=dtype), meta(3, dtype=torch.int64))
    check(aten.embedding.default, meta(10, dtype=dtype), meta(3, dtype=torch.int64))
    assert not check.errors, "\n".join(check.errors[:20])
    assert aten.embedding.default in check.answered


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_convolution_resizing_and_pooling(dtype: torch.dtype) -> None:
    check = Checks()
    for shape in [(2, 4, 5, 5), (1, 32, 1, 1), (1, 32, 2, 2), (2, 6, 3, 7)]:
        c = shape[1]
        for x in layouts(shape, dtype):
            check(aten.upsample_bicubic2d.default, x, [6, 6], False)
            check(aten.upsample_bicubic2d.default, x, [3, 8], True, None, None)
            check(aten.upsample_bilinear2d.default, x, [8, 8], True)
            check(aten.upsample_nearest2d.default, x, [8, 8])
            for w in (meta(5, c, 3, 3, dtype=dtype), meta(6, c // 2, 1, 1, dtype=dtype)):
                groups = c // w.shape[1]
                bias = meta(w.shape[0], dtype=dtype)
                check(aten.convolution.default, x, w, bias, [1, 1], [1, 1], [1, 1], False, [0, 0], groups)
                check(aten.convolution.default, x, w, None, [2, 2], [0, 0], [1, 1], False, [0, 0], groups)
                check(aten.convolution.default, x, w, None, [1, 2], [2, 0], [2, 1], False, [0, 0], groups)
                traced = (x, w, bias, [2, 2], [0, 1], [1, 1], False, [0, 0], groups)
                if CONVOLUTION_HAS_META:
                    check(aten._convolution.default, *traced, False, False, True, True)
                else:  # torch 2.9 has no meta kernel for it: the same output as aten::convolution's
                    check.against(aten.convolution.default, aten._convolution.default, *traced, False, False, True, True)
            transposed = meta(c, 4, 3, 3, dtype=dtype)
            check(aten.convolution.default, x, transposed, None, [2, 2], [1, 1], [1, 1], True, [1, 1], 1)
            check(aten.convolution.default, x, transposed, meta(4, dtype=dtype), [1, 1], [0, 0], [1, 1], True, [0, 0], 1)
        x1 = meta(2, 3, 9, dtype=dtype)
        check(aten.convolution.default, x1, meta(4, 3, 3, dtype=dtype), None, [2], [1], [1], False, [0], 1)
    pooled = [(2, 4, 7, 7), (1, 3, 224, 224), (1, 96, 55, 55), (2, 1, 6, 9), (1, 8, 1, 1), (3, 8, 8)]
    for shape in pooled:
        for x in layouts(shape, dtype):
            for args in ([3, 3], [3, 3], [1, 1]), ([2, 2],), ([3], [2], [1], [1], True), ([3, 3], [2, 2], [0, 0], [1, 1], True), \
                    ([2, 3], [1, 2], [1, 1], [1, 1]), ([3, 3], [2, 2], [1, 1], [2, 2], True), ([5, 5], [1], [2], [1], False), \
                    ([3, 3], [], [2, 2]), ([1, 1], [1, 1], [1, 1]), ([9, 9],), ([2, 2], [0, 1]):
                check(aten.max_pool2d_with_indices.default, x, *args)
    assert not check.errors, "\n".join(check.errors[:20])
    wanted = {aten.upsample_bicubic2d.default, aten.upsample_bilinear2d.default, aten.upsample_nearest2d.default,
              aten.convolution.default, aten._convolution.default, aten.max_pool2d_with_indices.default}
    assert wanted <= set(check.answered), wanted - set(check.answered)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64])
def test_in_place_fills_return_self(dtype: torch.dtype) -> None:
    """Weight initialisation on meta: nothing to fill; torch's argument checks are kept."""
    x = meta(3, 4, dtype=dtype).t()
    floating = dtype.is_floating_point
    for op, args in [(aten.uniform_.default, (-0.1, 0.1)), (aten.uniform_.default, (1.0, -1.0)),
                     (aten.normal_.default, (0.0, 0.02)), (aten.normal_.default, (0.0, -1.0)),
                     (aten.fill_.Scalar, (0.5,)), (aten.zero_.default, ())]:
        fast = fastmeta.SHAPES[op](x, *args)
        try:
            expected = op(x, *args)
        except Exception:
            assert fast is None
            continue
        assert expected is x
        invalid = op in (aten.uniform_.default, aten.normal_.default) and args[-1] < args[0]
        assert fast is (x if floating and not invalid else None)  # torch's kernel decides otherwise
    assert fastmeta.SHAPES[aten.uniform_.default](meta(2, dtype=torch.float32), -1.0, 1.0) is not None


IN_PLACE_UNARY = [
    ("relu_", ()), ("hardtanh_", (0.0, 6.0)), ("hardtanh_", ()), ("silu_", ()), ("hardswish_", ()), ("hardsigmoid_", ()),
    ("sigmoid_", ()), ("tanh_", ()), ("mish_", ()), ("leaky_relu_", (0.2,)), ("elu_", ()), ("neg_", ()), ("exp_", ()),
    ("mul_.Scalar", (2.0,)), ("add_.Scalar", (1,)), ("sub_.Scalar", (0.5, 2)), ("div_.Scalar", (3,)),
    ("clamp_", (0.0, 1.0)), ("clamp_", (None, 1.0)), ("clamp_", ()), ("clamp_min_", (0.0,)), ("clamp_max_", (1.0,)),
    ("gelu_", ()),
]


IN_PLACE_BINARY = ("add_.Tensor", "sub_.Tensor", "mul_.Tensor", "div_.Tensor")


def _overload(name: str) -> Any:
    packet, _, overload = name.partition(".")
    return getattr(getattr(aten, packet), overload or "default")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64])
def test_in_place_elementwise_return_self(dtype: torch.dtype) -> None:
    """In-place activations, clamps and arithmetic: ``self`` back where torch returns it, torch's kernel
    (and its errors) wherever the layout, dtype or other operand is not the plain case."""
    check = Checks()
    selves = [meta(3, 4, dtype=dtype), meta(4, 3, dtype=dtype).t(), meta(3, 8, dtype=dtype)[:, ::2],
              meta(3, 16, dtype=dtype).chunk(4, 1)[2], meta(1, 4, dtype=dtype).expand(3, 4)]
    for name, args in IN_PLACE_UNARY:
        for x in selves:
            check(_overload(name), x, *args)
    for x in selves:
        check(aten.gelu_.default, x, approximate="tanh")
        check(aten.gelu_.default, x, approximate="cubic")
    for name in IN_PLACE_BINARY:
        for x in selves[:2]:
            for other in (meta(3, 4, dtype=dtype), meta(4, dtype=dtype), meta(3, 1, dtype=dtype), meta(1, 1, 4, dtype=dtype),
                          meta(5, dtype=dtype), meta(4, dtype=torch.float64), x, x[:, :1]):
                check(_overload(name), x, other)
        check(_overload(name), selves[0], meta(3, 4, dtype=dtype), alpha=2) if name in ("add_.Tensor", "sub_.Tensor") else None
    assert not check.errors, check.errors[:5]
    answered = {op for op in check.answered}
    if dtype.is_floating_point:
        wanted = {_overload(name) for name, _ in IN_PLACE_UNARY} | {_overload(n) for n in ("add_.Tensor", "mul_.Tensor")}
        assert wanted <= answered, wanted - answered
        x = selves[0]
        assert fastmeta.SHAPES[aten.relu_.default](x) is x and fastmeta.SHAPES[aten.add_.Tensor](x, x) is x
    else:
        assert not answered  # integer tensors: torch's kernels decide


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_factories(default: torch.dtype) -> None:
    """Tensors made from sizes on meta: size, dtype (given or torch's default), contiguous strides;
    torch's own kernel where an argument is off (negative sizes, a step away from the end, ...)."""
    check, on_meta = Checks(), {"device": torch.device("meta"), "pin_memory": False}
    before = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        for size in ([3, 4], [0, 2], [], [5], [2, -1]):
            for dtype in (None, torch.float16, torch.bfloat16, torch.int64):
                extra = {} if dtype is None else {"dtype": dtype}
                check(aten.randn.default, size, **on_meta, **extra)
                check(aten.randn.generator, size, generator=None, **on_meta, **extra)
                check(aten.randint.default, 7, size, **on_meta, **extra)
                check(aten.randint.low, -2, 3, size, **on_meta, **extra)
        check(aten.randint.low, 3, 3, [2], **on_meta)  # an empty range: torch refuses
        ranges = [(10,), (0,), (1, 10, 2), (10, 1, -3), (1, 10, -1), (0.5, 3), (0, 1, 0.1), (0, 1, 0.3),
                  (-1.5, 2.25, 0.25), (2, 2), (5, 1), (0, 10, 0), (1e-3, 1.0, 1e-3), (3, 0.5, -0.5)]
        for args in ranges:
            op = {1: aten.arange.default, 2: aten.arange.start, 3: aten.arange.start_step}[len(args)]
            for dtype in (None, torch.float32, torch.float64, torch.int64, torch.bfloat16):
                check(op, *args, **on_meta, **({} if dtype is None else {"dtype": dtype}))
        for start, end, steps in [(0, 1, 5), (0.0, 10.0, 0), (-2, 2.5, 17), (1, 0, 3), (0, 1, -1)]:
            for dtype in (None, torch.float16, torch.float64):
                check(aten.linspace.default, start, end, steps, **on_meta, **({} if dtype is None else {"dtype": dtype}))
        for args in [(3,), (0,), (2, 5), (4, 0), (-1,)]:
            op = aten.eye.default if len(args) == 1 else aten.eye.m
            for dtype in (None, torch.bool, torch.int64, torch.bfloat16):
                check(op, *args, **on_meta, **({} if dtype is None else {"dtype": dtype}))
        # not on meta, or not a plain strided tensor: torch's kernel
        assert fastmeta.SHAPES[aten.randn.default]([2], device=torch.device("cpu"), pin_memory=False) is None
        assert fastmeta.SHAPES[aten.arange.default](4, layout=torch.sparse_coo, **on_meta) is None
        assert fastmeta.SHAPES[aten.arange.default](4, device=torch.device("meta"), pin_memory=True) is None
    finally:
        torch.set_default_dtype(before)
    assert not check.errors, "\n".join(check.errors[:20])
    wanted = {aten.randn.default, aten.randn.generator, aten.randint.default, aten.randint.low, aten.arange.default,
              aten.arange.start, aten.arange.start_step, aten.linspace.default, aten.eye.default, aten.eye.m}
    assert wanted <= set(check.answered), wanted - set(check.answered)


def _fresh_process(code: str) -> str:
    """What ``code`` prints, run in a new Python process from the repository root."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def test_building_on_meta_runs_no_python_meta_kernel() -> None:
    """fast_meta() around a meta build: the VAR example builds d30 (its position embeddings drawn with
    torch.randn) and counts it without importing torch._dynamo or sympy."""
    code = (
        "import sys; sys.path.insert(0, 'examples/var'); import torch\n"
        "from model import build_released, build_vqvae, dummy_inputs\n"
        "from pytest_flopbudget.engine.count import count\n"
        "model = build_released('d30'); build_vqvae()\n"
        "assert 'torch._dynamo' not in sys.modules and 'sympy' not in sys.modules\n"
        "labels, tokens, _ = dummy_inputs(256); assert count(model, (labels, tokens)).macs == 961956725760\n"
        "print('torch._dynamo' in sys.modules, 'sympy' in sys.modules)\n"
    )
    assert _fresh_process(code) == "False False"


def test_every_shape_function_is_checked_here() -> None:
    """A new shape function needs a case above (each test asserts its operators were answered);
    the unary, binary and comparison operators are enumerated from the table itself."""
    source = Path(__file__).read_text()
    enumerated = {op for op, fn in fastmeta.SHAPES.items() if fn is fm_elementwise._compare_number}
    enumerated |= set(_unary_ops()) | set(_binary_ops())
    enumerated |= {_overload(name) for name, _ in IN_PLACE_UNARY} | {aten.gelu_.default}
    enumerated |= {_overload(name) for name in IN_PLACE_BINARY}
    missing = sorted(str(op) for op in set(fastmeta.SHAPES) - enumerated if str(op) not in source)
    assert not missing, missing


# ---- the memo of slow meta kernels ------------------------------------------------------


def _memo_cases() -> list[tuple[Any, tuple[Any, ...], dict[str, Any]]]:
    strided = meta(1, 8, 256, 16, dtype=torch.bfloat16)[..., ::2]  # a rotary embedding's half of the channels
    cases: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
        (aten.mul.Tensor, (strided, meta(1, 1, 256, 8, dtype=torch.bfloat16)), {}),
        (aten.mul.Tensor, (strided, meta(256, 1)), {}),  # promoted to float32
        (aten.tril.default, (meta(64, 64),), {}),
        (aten.tril.default, (meta(64, 64).t(), 1), {}),
        (aten.cumsum.default, (meta(4, 9, dtype=torch.int64), 1), {}),
        (aten.cumsum.default, (meta(4, 9), 0), {"dtype": torch.float64}),
        (aten.floor_divide.default, (meta(7, 3, dtype=torch.int64), meta(3, dtype=torch.int64)), {}),
        (aten.topk.default, (meta(5, 40), 4), {}),  # two outputs
        (aten.cat.default, ([strided, strided], 1), {}),
        (aten.add.Tensor, (meta(3, 4, dtype=torch.int64), 1.5), {}),  # a Python float: the default dtype
    ]
    return cases


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_memo_outputs_equal_the_kernels(monkeypatch: pytest.MonkeyPatch, default: torch.dtype) -> None:
    """A remembered output has the shape, strides, dtype and offset of the kernel's, for the same
    operator and input layout, under either default dtype; a second layout is computed, not reused."""
    from pytest_flopbudget.engine.fastmeta import memo

    monkeypatch.setattr(memo, "SLOW_S", 0.0)  # every operator remembered
    memo.clear()
    before = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        for op, args, kwargs in _memo_cases():
            expected = describe(op(*args, **kwargs))
            first = memo.run(op, args, kwargs)
            remembered = memo.run(op, args, kwargs)
            assert describe(first) == describe(remembered) == expected, op
        assert len(memo._outputs) == len(_memo_cases())
        # a view is never remembered (its output aliases its input), nor a call on a real tensor
        assert memo.run(aten.t.default, (meta(3, 4),), {}).shape == (4, 3)
        assert memo.run(aten.mul.Tensor, (torch.ones(2), torch.ones(2)), {}).tolist() == [1.0, 1.0]
        assert len(memo._outputs) == len(_memo_cases()) and memo._slow[aten.t.default] is False
    finally:
        torch.set_default_dtype(before)
        memo.clear()


def test_memo_remembers_only_slow_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator whose first meta call took less than ``SLOW_S`` (torch's C++ kernels) runs every
    time, nothing remembered; the decision is made once per operator."""
    from pytest_flopbudget.engine.fastmeta import memo

    memo.clear()
    try:
        x = meta(4, 4)
        monkeypatch.setattr(memo, "SLOW_S", float("inf"))
        memo.run(aten.tril.default, (x,), {})
        memo.run(aten.tril.default, (x,), {})
        assert memo._slow == {aten.tril.default: False} and not memo._outputs
        monkeypatch.setattr(memo, "SLOW_S", 0.0)
        memo.run(aten.tril.default, (x,), {})
        assert not memo._outputs  # decided on its first call
    finally:
        memo.clear()


# ---- counts: the fast path against torch's plain meta kernels ---------------------------


def _cases() -> list[Any]:
    layers = Layers().eval()
    cases = [pytest.param(layers, (torch.zeros(2, 3, 8, 8), torch.zeros(2, 5, dtype=torch.long)), id="layers")]
    return cases + [pytest.param(model, args, id=f"var-{name}") for name, model, args in var_models()]


@pytest.mark.parametrize("counter", ["torchprofile", "flop_counter"])
@pytest.mark.parametrize(("model", "args"), _cases())
def test_fast_path_counts_like_the_plain_path(model: nn.Module, args: tuple, counter: str) -> None:
    fast = count(model, args, counter=counter, mode="meta")
    with fastmeta.plain():
        plain = count(model, args, counter=counter, mode="meta")
    assert fast.macs > 0
    assert (fast.macs, fast.by_operator, fast.by_module, fast.unpriced) == (
        plain.macs, plain.by_operator, plain.by_module, plain.unpriced)


def test_fast_path_counts_a_training_step_like_the_plain_path() -> None:
    """A training step (forward, backward, fused AdamW) of a small VAR and of the layer model."""
    from pytest_flopbudget.engine.capture.training import count_train_step

    var = var_module("_fastmeta_var_train")
    labels, _, images = var.dummy_inputs(256)
    transformer = var.build_var(2)
    step = var.VARTrainStep(var.build_vqvae(base_channels=32), transformer)
    layers = Layers()
    cases = [
        (step, (images, labels), lambda: var.var_optimizer(transformer)),
        (layers, (torch.zeros(2, 3, 8, 8), torch.zeros(2, 5, dtype=torch.long)),
         lambda: torch.optim.AdamW(layers.parameters(), weight_decay=0.1)),
    ]
    for model, args, optimizer in cases:
        fast = count_train_step(model, args, optimizer=optimizer())
        with fastmeta.plain():
            plain = count_train_step(model, args, optimizer=optimizer())
        assert fast.phases["backward"] > 0
        assert (fast.macs, fast.phases, fast.by_operator, fast.by_module, fast.unpriced) == (
            plain.macs, plain.phases, plain.by_operator, plain.by_module, plain.unpriced)


def test_plain_switch_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fastmeta.enabled()
    with fastmeta.plain():
        assert not fastmeta.enabled()
    assert fastmeta.enabled()
    monkeypatch.setenv("FLOPBUDGET_FAST_META", "0")
    assert not fastmeta.enabled()


def test_a_real_weight_transformer_count_never_imports_dynamo() -> None:
    """The first meta operator of a process used to import torch._dynamo (about 1 s), and the first
    embedding sympy."""
    code = (
        "import sys; sys.path.insert(0, 'examples/var'); import torch\n"
        "from model import build_var, dummy_inputs\n"
        "from pytest_flopbudget.engine.count import count\n"
        "model = build_var(2, device='cpu'); labels, tokens, _ = dummy_inputs(256, device='cpu')\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "r = count(model, (labels, tokens)); assert r.mode == 'meta' and r.macs > 0\n"
        "print('torch._dynamo' in sys.modules, 'sympy' in sys.modules)\n"
    )
    assert _fresh_process(code) == "False False"  # sympy: the embedding's meta kernel imported it (0.3 s)


def test_a_train_mode_batch_norm_and_attention_never_import_dynamo() -> None:
    """torch's meta batch norm is a Python decomposition whose first call imported torch._dynamo (and
    its output sympy): 2-3 s on the first count of a process, against 0.02 s warm."""
    code = (
        "import sys, torch, torch.nn as nn\n"
        "from pytest_flopbudget.engine.count import count\n"
        "class Tiny(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.norm = nn.BatchNorm1d(16); self.attn = nn.MultiheadAttention(16, 2, batch_first=True)\n"
        "    def forward(self, x):\n"
        "        h = self.norm(x.transpose(1, 2)).transpose(1, 2)\n"
        "        return self.attn(h, h, h, need_weights=False)[0]\n"
        "for counter in ('torchprofile', 'flop_counter'):\n"
        "    r = count(Tiny().train(), (torch.zeros(2, 8, 16),), counter=counter); assert r.mode == 'meta' and r.macs > 0\n"
        "print('torch._dynamo' in sys.modules, 'sympy' in sys.modules)\n"
    )
    assert _fresh_process(code) == "False False"
