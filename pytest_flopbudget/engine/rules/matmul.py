"""Rules of the matrix products: mm, bmm, addmm, linear, einsum, grouped GEMMs and their kin."""

from __future__ import annotations

from math import isqrt, prod

from torchprofile.ir import Node

from .registry import _numel, _shape, rule

# ---- matrix products -------------------------------------------------------


@rule("aten::matmul", "aten::mm", "aten::bmm", "aten::dot", "aten::vdot", "aten::inner", "aten::mv", "aten::_scaled_mm", "aten::_int_mm")
def _matmul(node: Node) -> int:
    """One MAC per output element per step of the contracted (last) dimension of the first input."""
    return _numel(node.outputs[0]) * _shape(node.inputs[0])[-1]


@rule("aten::linear")
def _linear(node: Node) -> int:
    """``x[..., in] @ W[out, in]^T`` (or ``W[in]``): prod(x.shape[:-1]) * numel(W); bias not counted."""
    return prod(_shape(node.inputs[0])[:-1]) * _numel(node.inputs[1])


@rule("aten::addmm", "aten::addmv", "aten::baddbmm", "aten::_addmm_activation")
def _add_matmul(node: Node) -> int:
    """``bias + a @ b``: the product only, numel(out) * a.shape[-1]."""
    return _numel(node.outputs[0]) * _shape(node.inputs[1])[-1]


@rule("aten::addbmm")
def _addbmm(node: Node) -> int:
    """``bias + sum_b a[b] @ b[b]``: b * n * m * p."""
    b, _, m = _shape(node.inputs[1])
    return b * _numel(node.outputs[0]) * m


@rule("aten::outer", "aten::ger", "aten::addr", "aten::kron")
def _outer(node: Node) -> int:
    """One multiply per output element."""
    return _numel(node.outputs[0])


@rule("aten::tensordot")
def _tensordot(node: Node) -> int:
    """numel(out) * C, where C (the contracted size) = sqrt(numel(a) * numel(b) / numel(out))."""
    out = _numel(node.outputs[0])
    if out == 0:
        return 0
    return out * isqrt(_numel(node.inputs[0]) * _numel(node.inputs[1]) // out)


@rule("aten::cdist")
def _cdist(node: Node) -> int:
    """One MAC per output distance per feature: B * P * R * M."""
    return _numel(node.outputs[0]) * _shape(node.inputs[0])[-1]


@rule("aten::bilinear")
def _bilinear(node: Node) -> int:
    """``x1^T W_k x2`` for each output k, computed as (x1 W) then with x2: N*out*in2*(in1 + 1)."""
    n = prod(_shape(node.inputs[0])[:-1])
    out, in1, in2 = _shape(node.inputs[2])
    return n * out * in2 * (in1 + 1)


def _chain_cost(dims: list[int]) -> int:
    """Cheapest multiplication order of matrices dims[i] x dims[i+1] (what linalg.multi_dot uses)."""
    n = len(dims) - 1
    best = [[0] * n for _ in range(n)]
    for span in range(1, n):
        for i in range(n - span):
            j = i + span
            best[i][j] = min(best[i][k] + best[k + 1][j] + dims[i] * dims[k + 1] * dims[j + 1] for k in range(i, j))
    return best[0][n - 1]


@rule("aten::linalg_multi_dot", "aten::chain_matmul")
def _multi_dot(node: Node) -> int:
    """Chain product in the cheapest order; a 1-D first/last operand is a row/column vector."""
    shapes = [list(s) for s in node.inputs[0].value]
    if len(shapes[0]) == 1:
        shapes[0] = [1, shapes[0][0]]
    if len(shapes[-1]) == 1:
        shapes[-1] = [shapes[-1][0], 1]
    dims = [shapes[0][0]] + [s[1] for s in shapes]
    return _chain_cost(dims)


@rule("aten::_grouped_mm", "aten::grouped_mm", "aten::_scaled_grouped_mm")
def _grouped_mm(node: Node) -> int:
    """Grouped GEMM (mixture-of-experts experts): every output element is one row-by-column product over K.

    ``a[M, K] x b[G, K, N]`` (rows split among groups by ``offs``): M*K*N; ``a[G, M, K] x b[G, K, N]``:
    G*M*K*N; ``a[G?, M, K] x b[K, N]`` (columns split): M*K*N; ``a[M, K] x b[K, N]`` split along K
    into G groups, out [G, M, N]: M*K*N. Rows past ``offs[-1]`` (padding) are counted: shapes only.
    """
    a, b, out = _shape(node.inputs[0]), _shape(node.inputs[1]), _shape(node.outputs[0])
    if len(a) == 2 and len(b) == 2:
        return prod(out[1:]) * a[-1]
    return prod(out) * a[-1]


# ---- einsum ----------------------------------------------------------------


def _einsum_terms(equation: str, shapes: list[list[int]]) -> tuple[list[str], str, dict[str, int]]:
    """Split an equation into per-operand index strings (``...`` expanded) and the output, with sizes."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    ell = max((len(s) - (len(t) - 3) for t, s in zip(terms, shapes) if "..." in t), default=0)
    ell_names = [chr(0x2460 + i) for i in range(ell)]  # labels that cannot clash with letters
    sizes: dict[str, int] = {}
    expanded = []
    for term, shape in zip(terms, shapes):
        if "..." in term:
            k = len(shape) - (len(term) - 3)
            term = term.replace("...", "".join(ell_names[ell - k:]))
        for label, size in zip(term, shape):
            sizes[label] = max(sizes.get(label, 1), size)
        expanded.append(term)
    if arrow:
        out = rhs.replace("...", "".join(ell_names))
    else:
        counts = {c: sum(t.count(c) for t in expanded) for c in sizes}
        out = "".join(ell_names) + "".join(sorted(c for c in sizes if counts[c] == 1 and c not in ell_names))
    return expanded, out, sizes


@rule("aten::einsum")
def _einsum(node: Node) -> int:
    """Left-to-right pairwise contraction (torch's order without opt_einsum).

    Each step costs the product of the sizes of all indices of the two operands;
    ``...`` is expanded from the shapes. A single operand (transpose, trace,
    sum) costs 0.
    """
    equation = node.inputs[0].value
    shapes = [list(s) for s in node.inputs[1].value]
    terms, out, sizes = _einsum_terms(equation, shapes)
    total = 0
    current = terms[0]
    for i in range(1, len(terms)):
        both = set(current) | set(terms[i])
        total += prod(sizes[c] for c in both)
        later = set(out).union(*terms[i + 1:])
        current = "".join(c for c in sorted(both) if c in later)
    return total


@rule(
    "quantized::linear_dynamic",
    "quantized::linear_dynamic_fp16",
    "quantized::linear_relu_dynamic",
    "quantized::linear_relu_dynamic_fp16",
    "quantized::linear",
    "quantized::linear_relu",
)
def _quantized_linear(node: Node) -> int:
    """int8/fp16 Linear (input, packed weight, ...): the weight is an opaque packed object, so from
    shapes: numel(out) * in_features, as ``aten::linear`` without bias."""
    return _numel(node.outputs[0]) * _shape(node.inputs[0])[-1]
