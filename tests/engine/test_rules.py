"""Per-operator rules: every count is checked against a hand-derived formula."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchprofile.ir import Node, Variable

from pytest_flopbudget.engine import rules
from pytest_flopbudget.engine.count import count
from pytest_flopbudget.results import conventions


class Fn(nn.Module):
    """Wrap a function of tensors as a module."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def macs_of(fn: Callable[..., Any], *args: Any, mode: str = "meta") -> int:
    """MACs of fn(*args) through the torchprofile counter; fails on any unpriced operator.

    The dispatch capture (``counter="flop_counter"``) must give the same MACs: one registry, two captures.
    """
    model = fn if isinstance(fn, nn.Module) else Fn(fn)
    result = count(model, args, {}, mode=mode)
    assert result.unpriced == {}
    seen = count(model, args, {}, mode=mode, counter="flop_counter")
    assert seen.unpriced == {}, seen.unpriced
    assert seen.macs == result.macs, (seen.by_operator, result.by_operator)
    return result.macs


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, device="meta")


# ---- the examples of the brief --------------------------------------------------


def test_linear_example() -> None:
    expected = 680 * 1024 * 4096
    assert expected == 2_852_126_720
    with torch.device("meta"):
        model = nn.Linear(1024, 4096)
    assert macs_of(model, r(1, 680, 1024)) == expected


def test_sdpa_example() -> None:
    q = r(1, 16, 680, 64)
    expected = 1 * 16 * 680 * 680 * (64 + 64)
    assert expected == 946_995_200
    assert macs_of(F.scaled_dot_product_attention, q, q, q) == expected


def test_sdpa_grouped_query() -> None:
    q, kv = r(2, 8, 10, 16), r(2, 2, 12, 16)
    expected = 2 * 8 * 10 * 12 * (16 + 16)
    assert macs_of(lambda q, k: F.scaled_dot_product_attention(q, k, k, enable_gqa=True), q, kv) == expected


def test_sdpa_value_dim_differs() -> None:
    q, k, v = r(1, 4, 6, 8), r(1, 4, 7, 8), r(1, 4, 7, 5)
    assert macs_of(F.scaled_dot_product_attention, q, k, v) == 4 * 6 * 7 * (8 + 5)


# ---- matrix products ----------------------------------------------------------------


@pytest.mark.parametrize(
    "fn, shapes, expected",
    [
        (torch.mm, [(3, 4), (4, 5)], 3 * 4 * 5),
        (torch.bmm, [(2, 3, 4), (2, 4, 5)], 2 * 3 * 4 * 5),
        (torch.matmul, [(2, 1, 3, 4), (5, 4, 6)], 2 * 5 * 3 * 6 * 4),
        (torch.matmul, [(4,), (2, 4, 6)], 2 * 4 * 6),
        (torch.matmul, [(3, 4), (4,)], 3 * 4),
        (torch.dot, [(7,), (7,)], 7),
        (torch.vdot, [(7,), (7,)], 7),
        (torch.mv, [(3, 4), (4,)], 3 * 4),
        (torch.outer, [(3,), (4,)], 3 * 4),
        (torch.inner, [(2, 5), (3, 5)], 2 * 3 * 5),
        (torch.kron, [(2, 3), (4, 5)], 2 * 3 * 4 * 5),
        (lambda a, b: torch.tensordot(a, b, dims=1), [(2, 3, 4), (4, 5)], 2 * 3 * 4 * 5),
        (lambda a, b: torch.tensordot(a, b, dims=([1, 2], [0, 1])), [(2, 3, 4), (3, 4, 5)], 2 * 3 * 4 * 5),
        (lambda x, w: F.linear(x, w), [(4,), (3, 4)], 3 * 4),
        (lambda x, w: F.linear(x, w), [(2, 7, 4), (3, 4)], 2 * 7 * 3 * 4),
        (lambda a, b: torch.addmm(torch.zeros(3, 5, device="meta"), a, b), [(3, 4), (4, 5)], 3 * 4 * 5),
        (lambda a, b: torch.addmv(torch.zeros(3, device="meta"), a, b), [(3, 4), (4,)], 3 * 4),
        (lambda a, b: torch.addbmm(torch.zeros(3, 5, device="meta"), a, b), [(2, 3, 4), (2, 4, 5)], 2 * 3 * 4 * 5),
        (lambda a, b: torch.baddbmm(torch.zeros(1, 3, 5, device="meta"), a, b), [(2, 3, 4), (2, 4, 5)], 2 * 3 * 4 * 5),
        (lambda a, b: torch.addr(torch.zeros(3, 4, device="meta"), a, b), [(3,), (4,)], 3 * 4),
        (lambda a, b: torch.cdist(a, b), [(2, 6, 3), (2, 5, 3)], 2 * 6 * 5 * 3),
    ],
)
def test_matmul_like(fn: Callable[..., Any], shapes: list[tuple[int, ...]], expected: int) -> None:
    assert macs_of(fn, *(r(*s) for s in shapes)) == expected


def test_multi_dot_uses_the_cheapest_order() -> None:
    a, b, c = r(10, 20), r(20, 5), r(5, 30)
    left_first = 10 * 20 * 5 + 10 * 5 * 30  # (ab)c = 2500, cheaper than a(bc) = 9000
    assert macs_of(lambda a, b, c: torch.linalg.multi_dot([a, b, c]), a, b, c) == left_first


def test_bilinear() -> None:
    x1, x2, w = r(6, 3), r(6, 4), r(5, 3, 4)
    # (x1 W) costs N*out*in1*in2, then the product with x2 N*out*in2
    assert macs_of(lambda a, b, w: F.bilinear(a, b, w), x1, x2, w) == 6 * 5 * 4 * (3 + 1)


# ---- einsum ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "equation, shapes, expected",
    [
        ("bhij,bhjk->bhik", [(2, 3, 4, 5), (2, 3, 5, 6)], 2 * 3 * 4 * 5 * 6),
        ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)], 2 * 3 * 4 * 5),
        ("...ij,jk->...ik", [(2, 3, 4, 5), (5, 6)], 2 * 3 * 4 * 5 * 6),
        ("b...d,bd->b...", [(2, 3, 4, 8), (2, 8)], 2 * 3 * 4 * 8),
        ("ij,jk", [(2, 3), (3, 4)], 2 * 3 * 4),
        ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], 2 * 3 * 4 + 2 * 4 * 5),
        ("ij->ji", [(2, 3)], 0),
    ],
)
def test_einsum(equation: str, shapes: list[tuple[int, ...]], expected: int) -> None:
    assert macs_of(lambda *ts: torch.einsum(equation, *ts), *(r(*s) for s in shapes)) == expected


# ---- convolutions -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["meta", "real"])
def test_conv_transpose_is_not_overcounted(mode: str) -> None:
    model = nn.ConvTranspose2d(3, 1, 2, stride=2)
    x = torch.randn(1, 3, 2, 2)
    n, cin, h, w, cout, k = 1, 3, 2, 2, 1, 2
    assert macs_of(model, x, mode=mode) == n * cin * h * w * cout * k * k  # 48, not 192


def test_conv_transpose_grouped_3d_and_1d() -> None:
    m2 = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    assert macs_of(m2, torch.randn(1, 4, 5, 5)) == 1 * 4 * 5 * 5 * (6 // 2) * 3 * 3
    m1 = nn.ConvTranspose1d(2, 3, 4, stride=3)
    assert macs_of(m1, torch.randn(2, 2, 7)) == 2 * 2 * 7 * 3 * 4


def test_conv_direct() -> None:
    m = nn.Conv2d(4, 6, 3, groups=2, bias=False)
    out_h = out_w = 8 - 3 + 1
    assert macs_of(m, torch.randn(1, 4, 8, 8)) == 1 * 6 * out_h * out_w * (4 // 2) * 3 * 3
    m3 = nn.Conv3d(2, 3, (1, 2, 2), stride=(1, 2, 2))
    assert macs_of(m3, torch.randn(1, 2, 3, 4, 4)) == 1 * 3 * 3 * 2 * 2 * 2 * 1 * 2 * 2


# ---- recurrent -------------------------------------------------------------------------------


def test_gru_and_lstm() -> None:
    seq, batch, inp, hid = 5, 3, 8, 16
    gru = nn.GRU(inp, hid, num_layers=2, bidirectional=True)
    per_step = 3 * hid * (inp + hid) + 3 * hid * (2 * hid + hid)
    assert macs_of(gru, torch.randn(seq, batch, inp), mode="real") == seq * batch * 2 * per_step
    lstm = nn.LSTM(inp, hid, batch_first=True)
    assert macs_of(lstm, torch.randn(batch, seq, inp), mode="real") == seq * batch * 4 * hid * (inp + hid)


# ---- hand-built nodes --------------------------------------------------------------------------


def tensor(*shape: int) -> Variable:
    return Variable(name="t", dtype="float", shape=list(shape))


def const(value: Any) -> Variable:
    return Variable(name="c", dtype="int", value=value)


def test_native_multi_head_attention_rule() -> None:
    b, s, e = 2, 10, 16
    node = Node(
        operator="aten::_native_multi_head_attention",
        attributes={},
        inputs=[tensor(b, s, e), tensor(b, s, e), tensor(b, s, e), const(e), const(4), tensor(3 * e, e)],
        outputs=[tensor(b, s, e), tensor()],
        scope="",
    )
    assert rules.price(node) == b * (3 * s * e * e + 2 * s * s * e + s * e * e)


def test_unknown_shape_is_unpriced_not_zero() -> None:
    node = Node(operator="aten::mm", attributes={}, inputs=[Variable("a", "float"), tensor(4, 5)], outputs=[tensor(3, 5)], scope="")
    assert rules.price(node) is None
    assert rules.price(Node("mylib::nothing", {}, [], [], "")) is None
    assert rules.price(Node("aten::unbind", {}, [], [], "")) == 0


def test_elementwise_mul_convention() -> None:
    node = Node(operator="aten::mul", attributes={}, inputs=[tensor(2, 3), const(2.0)], outputs=[tensor(2, 3)], scope="")
    assert rules.price(node) == 2 * 3
    scalar = Node(operator="aten::mul", attributes={}, inputs=[tensor(), const(2)], outputs=[tensor()], scope="")
    assert rules.price(scalar) == 0


# ---- registry API and unpriced operators ------------------------------------------------------


def test_unpriced_operator_is_reported_and_no_warning_leaks() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = count(Fn(lambda x: torch.fft.rfft(x).abs()), (torch.randn(8),), {})
    assert result.unpriced == {"aten::fft_rfft": 1}
    assert not [w for w in caught if "handler" in str(w.message).lower()]


def test_register_rule_as_call_and_decorator() -> None:
    try:
        rules.register_rule("aten::fft_rfft", lambda node: 7 * node.inputs[0].shape[0])
        result = count(Fn(lambda x: torch.fft.rfft(x)), (torch.randn(8),), {})
        assert (result.macs, result.unpriced) == (7 * 8, {})
        assert result.by_operator == {"aten::fft_rfft": 7 * 8}

        @rules.register_rule("ATEN::FFT_RFFT")
        def _rfft(node: Node) -> int:
            return 1

        assert count(Fn(lambda x: torch.fft.rfft(x)), (torch.randn(8),), {}).macs == 1
        rules.zero_cost("aten::fft_rfft")
        assert count(Fn(lambda x: torch.fft.rfft(x)), (torch.randn(8),), {}).unpriced == {}
    finally:
        rules.unregister_rule("aten::fft_rfft")
    assert not rules.has_rule("aten::fft_rfft")
    with pytest.raises(TypeError):
        rules.register_rule("aten::fft_rfft", 3)  # type: ignore[arg-type]


def test_a_rule_reads_inputs_and_outputs_as_sequences() -> None:
    """Both captures hand a rule sequences of Variables: indexed (also from the end), sliced, iterated."""
    seen: dict[str, Any] = {}

    def rule(node: Node) -> int:
        shapes = [v.shape for v in node.inputs]
        seen[node.operator] = (len(node.inputs), shapes, [v.shape for v in node.inputs[:1]],
                               node.inputs[-len(node.inputs)].shape, node.outputs[0].shape)
        return 5

    try:
        rules.register_rule("aten::fft_rfft", rule)
        for counter in ("torchprofile", "flop_counter"):
            seen.clear()
            assert count(Fn(lambda x: torch.fft.rfft(x)), (torch.randn(8),), {}, counter=counter).macs == 5
            n, shapes, first, again, out = seen["aten::fft_rfft"]
            assert n == len(shapes) >= 1 and first == [[8]] == [shapes[0]] and again == [8] and out == [5]
    finally:
        rules.unregister_rule("aten::fft_rfft")


def test_public_register_rule_is_the_registry_one() -> None:
    import pytest_flopbudget

    assert pytest_flopbudget.register_rule is rules.register_rule


def test_attention_shape_ops_are_free() -> None:
    def attn(x: torch.Tensor) -> torch.Tensor:
        q, k, v = x.unbind(0)
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)

    assert macs_of(attn, r(3, 1, 2, 5, 4)) == 1 * 2 * 5 * 5 * (4 + 4)


class _Sampler(nn.Module):
    """Logits from a Linear, then one sampled index per row: sampling costs no MAC."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(64, 4096)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = self.head(x).softmax(-1)
        return torch.multinomial(probs, num_samples=1)


@pytest.mark.parametrize("mode", ["meta", "real"])
def test_sampling_is_priced_at_zero(mode: str) -> None:
    result = count(_Sampler(), (torch.randn(8, 64),), {}, mode=mode)
    assert result.unpriced == {}
    assert result.macs == 8 * 64 * 4096


# ---- mixture of experts, in-place forms, data movement -----------------------------------------


@pytest.mark.parametrize("mode", ["meta", "real"])
def test_grouped_mm_rows_split_among_experts(mode: str) -> None:
    """a[M, K] x b[G, K, N], rows routed to experts by offs: every row meets one expert: M*K*N.

    float32 on meta too (torch's meta kernel takes bfloat16 only)."""
    g, m, k, n = 3, 8, 8, 16
    offs = torch.tensor([2, 5, 8], dtype=torch.int32)
    a, b = torch.randn(m, k), torch.randn(g, k, n)
    assert macs_of(lambda a, b, o: torch._grouped_mm(a, b, offs=o), a, b, offs, mode=mode) == m * k * n


def test_grouped_mm_batched_and_split_along_k() -> None:
    g, m, k, n = 3, 8, 8, 16
    assert macs_of(lambda a, b: torch._grouped_mm(a, b), r(g, m, k), r(g, k, n)) == g * m * k * n
    offs = torch.tensor([8, 16, 24], dtype=torch.int32, device="meta")
    # a[M, K_total] x b[K_total, N], K split in G groups -> out[G, M, N]: M*K_total*N
    assert macs_of(lambda a, b, o: torch._grouped_mm(a, b, offs=o), r(m, 3 * k), r(3 * k, n), offs) == m * 3 * k * n


def test_in_place_forms_use_their_rule() -> None:
    x = r(4, 5)
    assert macs_of(lambda x: F.leaky_relu(x.clone(), inplace=True), x) == 4 * 5  # aten::leaky_relu_
    assert macs_of(lambda x: x.clone().mul_(x), x) == 4 * 5
    assert rules.has_rule("aten::leaky_relu_") and not rules.has_rule("aten::mylib_op_")


def test_unfold_and_fold_only_move_data() -> None:
    x = r(1, 3, 8, 8)
    assert macs_of(lambda x: F.unfold(x, kernel_size=3), x) == 0  # aten::im2col
    cols = r(1, 3 * 3 * 3, 36)
    assert macs_of(lambda c: F.fold(c, output_size=(8, 8), kernel_size=3), cols) == 0  # aten::col2im


def test_bilinear_upsampling_is_priced_and_not_costly() -> None:
    x = r(1, 3, 4, 4)
    assert macs_of(lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), x) == 4 * 3 * 8 * 8
    assert not conventions.is_costly("aten::upsample_bilinear2d")


def test_roi_align() -> None:
    ops = pytest.importorskip("torchvision.ops")
    feats = torch.randn(1, 4, 16, 16)
    boxes = torch.tensor([[0, 0.0, 0.0, 8.0, 8.0], [0, 2.0, 2.0, 10.0, 12.0]])
    # K boxes x C x 7 x 7 bins, sampling_ratio 2 -> 2*2 bilinear samples (4 MACs each) per bin
    expected = 4 * (2 * 2) * (2 * 4 * 7 * 7)
    fn = lambda f, b: ops.roi_align(f, b, output_size=7, spatial_scale=1.0, sampling_ratio=2)  # noqa: E731
    assert macs_of(fn, feats, boxes, mode="real") == expected


# ---- costly operators without a rule ------------------------------------------------------------


@torch.library.custom_op("flopbudget_test::fused_gemm", mutates_args=())
def fused_gemm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b


@fused_gemm.register_fake
def _(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.new_empty(a.shape[0], b.shape[1])


@pytest.mark.parametrize("counter", ["torchprofile", "flop_counter"])
def test_a_costly_operator_without_rule_fails_the_count(counter: str) -> None:
    from pytest_flopbudget.engine.count import UnpricedOperatorError

    with pytest.raises(UnpricedOperatorError) as caught:
        count(Fn(fused_gemm), (torch.randn(3, 4), torch.randn(4, 5)), {}, counter=counter)
    text = str(caught.value)
    assert "flopbudget_test::fused_gemm (matmul, 1 call)" in text
    assert "register_rule('flopbudget_test::fused_gemm'" in text and "--flop-unpriced=warn" in text
    result = count(Fn(fused_gemm), (torch.randn(3, 4), torch.randn(4, 5)), {}, counter=counter, unpriced="warn")
    assert result.unpriced == {"flopbudget_test::fused_gemm": 1}
    assert any("no rule prices flopbudget_test::fused_gemm" in note for note in result.notes)
    try:
        rules.register_rule("flopbudget_test::fused_gemm", lambda node: node.inputs[0].shape[0] * node.inputs[0].shape[1] * node.inputs[1].shape[1])
        assert count(Fn(fused_gemm), (torch.randn(3, 4), torch.randn(4, 5)), {}, counter=counter).macs == 3 * 4 * 5
    finally:
        rules.unregister_rule("flopbudget_test::fused_gemm")


def test_an_elementwise_operator_without_rule_is_listed_not_fatal() -> None:
    result = count(Fn(lambda x: torch.fft.rfft(x).abs()), (torch.randn(8),), {})
    assert result.unpriced == {"aten::fft_rfft": 1} and result.notes == ()
