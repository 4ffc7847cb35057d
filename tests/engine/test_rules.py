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
from pytest_flopbudget.engine.capture.dispatch import capture
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
        result = count(Fn(lambda x: torch.special.bessel_j0(x).abs()), (torch.randn(8),), {})
    assert result.unpriced == {"aten::special_bessel_j0": 1}
    assert not [w for w in caught if "handler" in str(w.message).lower()]


def test_register_rule_as_call_and_decorator() -> None:
    j0 = Fn(lambda x: torch.special.bessel_j0(x))
    try:
        rules.register_rule("aten::special_bessel_j0", lambda node: 7 * node.inputs[0].shape[0])
        result = count(j0, (torch.randn(8),), {})
        assert (result.macs, result.unpriced) == (7 * 8, {})
        assert result.by_operator == {"aten::special_bessel_j0": 7 * 8}

        @rules.register_rule("ATEN::SPECIAL_BESSEL_J0")
        def _j0(node: Node) -> int:
            return 1

        assert count(j0, (torch.randn(8),), {}).macs == 1
        rules.zero_cost("aten::special_bessel_j0")
        assert count(j0, (torch.randn(8),), {}).unpriced == {}
    finally:
        rules.unregister_rule("aten::special_bessel_j0")
    assert not rules.has_rule("aten::special_bessel_j0")
    with pytest.raises(TypeError):
        rules.register_rule("aten::special_bessel_j0", 3)  # type: ignore[arg-type]


def test_a_rule_reads_inputs_and_outputs_as_sequences() -> None:
    """Both captures hand a rule sequences of Variables: indexed (also from the end), sliced, iterated."""
    seen: dict[str, Any] = {}

    def rule(node: Node) -> int:
        shapes = [v.shape for v in node.inputs]
        seen[node.operator] = (len(node.inputs), shapes, [v.shape for v in node.inputs[:1]],
                               node.inputs[-len(node.inputs)].shape, node.outputs[0].shape)
        return 5

    try:
        rules.register_rule("aten::special_bessel_j0", rule)
        for counter in ("torchprofile", "flop_counter"):
            seen.clear()
            assert count(Fn(lambda x: torch.special.bessel_j0(x)), (torch.randn(8),), {}, counter=counter).macs == 5
            n, shapes, first, again, out = seen["aten::special_bessel_j0"]
            assert n == len(shapes) >= 1 and first == [[8]] == [shapes[0]] and again == [8] and out == [8]
    finally:
        rules.unregister_rule("aten::special_bessel_j0")


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
    result = count(Fn(lambda x: torch.special.bessel_j0(x).abs()), (torch.randn(8),), {})
    assert result.unpriced == {"aten::special_bessel_j0": 1} and result.notes == ()


# ---- convolution with a string padding (aten::_convolution_mode) -------------------------------------


@pytest.mark.parametrize("mode", ["meta", "real"])
def test_conv_with_string_padding(mode: str) -> None:
    same = nn.Conv2d(4, 6, 3, padding="same", dilation=2, groups=2, bias=False)
    assert macs_of(same, torch.randn(1, 4, 8, 8), mode=mode) == 1 * 6 * 8 * 8 * (4 // 2) * 3 * 3
    valid = nn.Conv1d(3, 5, 4, padding="valid")
    assert macs_of(valid, torch.randn(2, 3, 10), mode=mode) == 2 * 5 * (10 - 4 + 1) * 3 * 4


# ---- FFTs: 5/2 N log2 N MACs per complex transform of N points, half for a real one -----------------


def c(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.complex64, device="meta")


@pytest.mark.parametrize(
    "fn, x, expected",
    [
        (torch.fft.rfft, r(4, 16), 4 * 16 * 4 * 5 // 4),  # 4 real transforms of 16 points: 5/4 * 16 * log2(16)
        (torch.fft.irfft, c(4, 9), 4 * 16 * 4 * 5 // 4),  # output 16 real points
        (torch.fft.fft, c(4, 16), 4 * 16 * 4 * 5 // 2),
        (torch.fft.fft, r(4, 16), 4 * 16 * 4 * 5 // 4),  # real input: half
        (torch.fft.ifft, c(4, 16), 4 * 16 * 4 * 5 // 2),
        (lambda x: torch.fft.rfft(x, n=32), r(4, 16), 4 * 32 * 5 * 5 // 4),
        (lambda x: torch.fft.fft(x, dim=0), c(8, 3), 3 * 8 * 3 * 5 // 2),
        (torch.fft.fft2, c(2, 8, 16), 2 * 128 * 7 * 5 // 2),  # one transform of 8 x 16 = 128 points per batch
        (torch.fft.rfft2, r(2, 8, 16), 2 * 128 * 7 * 5 // 4),
        (torch.fft.irfft2, c(2, 8, 9), 2 * 128 * 7 * 5 // 4),
        (torch.fft.fftn, c(2, 4, 8), 64 * 6 * 5 // 2),  # every dimension
        (lambda x: torch.fft.fftn(x, s=(4, 8)), c(3, 4, 8), 3 * 32 * 5 * 5 // 2),  # the last len(s) dimensions
        (torch.fft.rfftn, r(2, 4, 8), 64 * 6 * 5 // 4),
        (torch.fft.irfftn, c(2, 4, 5), 64 * 6 * 5 // 4),
        (lambda x: torch.fft.ifftn(x, dim=(1,)), c(2, 4, 8), 2 * 8 * 4 * 2 * 5 // 2),
        (torch.fft.hfft, c(4, 9), 4 * 16 * 4 * 5 // 4),  # Hermitian input, 16 real output points
        (torch.fft.ihfft, r(4, 16), 4 * 16 * 4 * 5 // 4),
        # one real transform of n_fft = 16 points per frame: 17 frames (centred, hop 4) of 2 signals
        (lambda x: torch.stft(x, 16, hop_length=4, return_complex=True), r(2, 64), 2 * 17 * 16 * 4 * 5 // 4),
        # the kernels they dispatch to, called directly
        (lambda x: torch.ops.aten._fft_r2c(x, [1], 0, True), r(4, 16), 4 * 16 * 4 * 5 // 4),
        (lambda x: torch.ops.aten._fft_c2r(x, [1], 0, 16), c(4, 9), 4 * 16 * 4 * 5 // 4),
        (lambda x: torch.ops.aten._fft_c2c(x, [0, 1], 0, True), c(4, 16), 64 * 6 * 5 // 2),
    ],
)
def test_fft(fn: Callable[..., Any], x: torch.Tensor, expected: int) -> None:
    assert macs_of(fn, x) == expected


@pytest.mark.parametrize("mode", ["meta", "real"])
def test_istft(mode: str) -> None:
    """One real inverse transform of n_fft points per frame; istft checks its window's values, so the
    meta pass falls back to a real one."""
    spec = torch.randn(2, 9, 17, dtype=torch.complex64)
    window = torch.hann_window(16)
    fn = lambda s, w: torch.istft(s, 16, hop_length=4, window=w)  # noqa: E731
    assert macs_of(fn, spec, window, mode=mode if mode == "real" else "auto") == 2 * 17 * 16 * 4 * 5 // 4


def test_fft_counts_in_its_category_and_is_not_published() -> None:
    result = count(Fn(lambda x: torch.fft.irfft2(torch.fft.rfft2(x))), (r(2, 8, 16),), {})
    assert result.by_category["fft"] == result.macs == 2 * (2 * 128 * 7 * 5 // 4)
    assert result.published_macs == 0
    assert conventions.is_costly("aten::fft_rfft2") and conventions.is_costly("aten._fft_c2r.default")


def test_fft_backward_is_priced_by_the_dispatched_kernels() -> None:
    x = torch.randn(4, 16, requires_grad=True)
    with capture(None) as tally:
        torch.fft.rfft(x).abs().sum().backward()
    assert tally.unpriced == {}
    assert tally.by_operator["aten::fft_rfft"] == 4 * 16 * 4 * 5 // 4
    # torch's gradient of a real transform pads the gradient to 16 complex points: one complex transform
    assert {k: v for k, v in tally.by_operator.items() if k.startswith("aten::_fft")} == {"aten::_fft_c2c": 4 * 16 * 4 * 5 // 2}


def test_fft_rounding_and_trivial_lengths() -> None:
    from pytest_flopbudget.engine.rules.fft import fft_macs

    assert fft_macs(1, 1, False) == 0 and fft_macs(0, 8, False) == 0
    assert fft_macs(2, 3, False) == round(2 * 3 * 1.584962500721156 * 2.5)  # 24: log2(3) rounded once, at the end


@pytest.mark.parametrize("counter", ["torchprofile", "trace"])
def test_an_unpriced_fft_fails_the_count(counter: str) -> None:
    """Without its rules (the trace sees ``fft_rfft2``; the dispatch capture the ``_fft_r2c`` it runs)."""
    from pytest_flopbudget.engine.count import UnpricedOperatorError

    saved = {op: rules.RULES.pop(op) for op in ("aten::fft_rfft2", "aten::_fft_r2c")}
    try:
        with pytest.raises(UnpricedOperatorError, match=r"aten::(fft_rfft2|_fft_r2c) \(fft, 1 call\)"):
            count(Fn(torch.fft.rfft2), (r(2, 8, 16),), {}, counter=counter)
    finally:
        rules.RULES.update(saved)


# ---- quantized Linear -------------------------------------------------------------------------------------


def test_quantized_dynamic_linear() -> None:
    model = torch.ao.nn.quantized.dynamic.Linear(8, 4)
    assert macs_of(model, torch.randn(2, 3, 8), mode="real") == 2 * 3 * 8 * 4


def test_quantized_static_linear() -> None:
    model = torch.ao.nn.quantized.Linear(8, 4)
    x = torch.quantize_per_tensor(torch.randn(5, 8), 0.1, 0, torch.quint8)
    result = count(model, (x,), {}, counter="flop_counter", mode="real")
    assert (result.macs, result.unpriced) == (5 * 8 * 4, {})
    assert result.by_operator == {"quantized::linear": 5 * 8 * 4}


# ---- attention kernels below SDPA ---------------------------------------------------------------------------


B, SQ, SK, H, HK, D, DV = 2, 16, 12, 4, 2, 8, 8


def test_flash_attention_forward_dense_layout() -> None:
    """[B, S, H, D]: B * H * Sq * Sk * (Dqk + Dv); grouped-query kv heads cost the same."""
    q, k, v = r(B, SQ, H, D), r(B, SK, H, D), r(B, SK, H, DV)
    fn = lambda q, k, v: torch.ops.aten._flash_attention_forward(q, k, v, None, None, SQ, SK, 0.0, False, False)[0]  # noqa: E731
    assert macs_of(fn, q, k, v) == B * H * SQ * SK * (D + DV)


def test_efficient_attention_forward() -> None:
    q, k, v = r(B, SQ, H, D), r(B, SK, H, D), r(B, SK, H, DV)
    fn = lambda q, k, v: torch.ops.aten._efficient_attention_forward(q, k, v, None, None, None, SQ, SK, 0.0, 0, True)[0]  # noqa: E731
    assert macs_of(fn, q, k, v) == B * H * SQ * SK * (D + DV)


def test_scaled_dot_product_backends_called_directly() -> None:
    q, k, v = r(B, H, SQ, D), r(B, H, SK, D), r(B, H, SK, DV)
    expected = B * H * SQ * SK * (D + DV)
    flash = lambda q, k, v: torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)[0]  # noqa: E731
    efficient = lambda q, k, v: torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, False)[0]  # noqa: E731
    for fn in (flash, efficient):
        result = count(Fn(fn), (q, k, v), {}, counter="flop_counter")
        assert (result.macs, result.unpriced) == (expected, {})


def test_varlen_attention_on_meta_is_bounded_by_the_longest_sequences() -> None:
    """No offsets' values on meta: min(Tq * max_k, Tk * max_q) (query, key) pairs per head."""
    varlen_attn = pytest.importorskip("torch.nn.attention.varlen", reason="this torch has no torch.nn.attention.varlen (2.9 has none)").varlen_attn

    total, longest = 16, 11  # two sequences, 5 and 11 tokens
    q = r(total, H, D)
    offsets = torch.tensor([0, 5, 16], dtype=torch.int32, device="meta")
    fn = lambda q, k, v, o: varlen_attn(q, k, v, o, o, longest, longest)  # noqa: E731
    assert macs_of(fn, q, q, q, offsets) == total * longest * H * (D + D)


def node(operator: str, *inputs: Variable) -> Node:
    return Node(operator=operator, attributes={}, inputs=list(inputs), outputs=[tensor(1)], scope="")


def offsets(*values: int) -> Variable:
    return Variable(name="o", dtype="torch.int32", shape=[len(values)], value=list(values))


def test_varlen_attention_with_offsets_sums_each_sequence() -> None:
    """Real offsets (the dispatch capture reads a small integer tensor's values): sum Lq_i * Lk_i."""
    from pytest_flopbudget.engine.capture.dispatch import _variable

    assert _variable(torch.tensor([0, 5, 16], dtype=torch.int32), 0, offsets=True).value == [0, 5, 16]
    assert _variable(torch.tensor([0, 5, 16], dtype=torch.int32, device="meta"), 0, offsets=True).value is None
    assert _variable(torch.tensor([0, 5, 16], dtype=torch.int32), 0).value is None  # other operators: shapes only
    q, k = tensor(16, H, D), tensor(20, HK, D)
    pairs = 5 * 8 + 11 * 12
    flash = node("aten::_flash_attention_forward", q, k, k, offsets(0, 5, 16), offsets(0, 8, 20), const(11), const(12))
    assert rules.price(flash) == pairs * H * (D + D)
    varlen = node("torch_attn::_varlen_attn", q, k, k, offsets(0, 5, 16), const(None), const(11), const(12))
    assert rules.price(varlen) == (5 * 5 + 11 * 11) * H * (D + D)  # cu_seq_k=None: the query's offsets
    efficient = node("aten::_efficient_attention_forward", tensor(1, 16, H, D), tensor(1, 20, HK, D), tensor(1, 20, HK, D),
                     const(None), offsets(0, 5, 16), offsets(0, 8, 20), const(11), const(12))
    assert rules.price(efficient) == pairs * H * (D + D)
    into = node("torch_attn::_varlen_attn_out", tensor(16, H, D), q, k, k, offsets(0, 5, 16), offsets(0, 8, 20), const(11), const(12))
    assert rules.price(into) == pairs * H * (D + D)
    bound = node("aten::_flash_attention_forward", q, k, k, tensor(3), tensor(3), const(11), const(12))  # offsets without values
    assert rules.price(bound) == min(16 * 12, 20 * 11) * H * (D + D)


@pytest.fixture
def recompute() -> Any:
    before = rules.attention_backward()
    rules.attention_backward("recompute")
    yield
    rules.attention_backward(before)


def backward_nodes() -> list[tuple[Node, int]]:
    """Backward kernels of every layout, with their (query, key) pairs per head."""
    g = tensor(1)
    dense = B * SQ * SK
    return [
        (node("aten::_scaled_dot_product_flash_attention_backward", g, tensor(B, H, SQ, D), tensor(B, HK, SK, D), tensor(B, HK, SK, DV)), dense),
        (node("aten::_scaled_dot_product_efficient_attention_backward", g, tensor(B, H, SQ, D), tensor(B, HK, SK, D), tensor(B, HK, SK, DV)), dense),
        (node("aten::_flash_attention_backward", g, tensor(B, SQ, H, D), tensor(B, SK, HK, D), tensor(B, SK, HK, DV)), dense),
        (node("aten::_efficient_attention_backward", g, tensor(B, SQ, H, D), tensor(B, SK, HK, D), tensor(B, SK, HK, DV), const(None),
              g, const(None), const(None), const(SQ), const(SK)), dense),
        (node("torch_attn::_varlen_attn_backward", g, tensor(16, H, D), tensor(20, HK, D), tensor(20, HK, DV), g, g,
              offsets(0, 5, 16), offsets(0, 8, 20), const(11), const(12)), 5 * 8 + 11 * 12),
        (node("higher_order::flex_attention_backward", tensor(B, H, SQ, D), tensor(B, HK, SK, D), tensor(B, HK, SK, DV)), dense),
    ]


def test_attention_backward_math_convention_is_twice_the_forward() -> None:
    assert rules.attention_backward() == "math"
    for n, pairs in backward_nodes():
        assert rules.price(n) == pairs * H * 2 * (D + DV), n.operator  # dV, dP, dQ, dK


def test_attention_backward_recompute_convention(recompute: Any) -> None:
    for n, pairs in backward_nodes():
        assert rules.price(n) == pairs * H * (3 * D + 2 * DV), n.operator  # QK^T once more: 2.5x for equal head dims
    with pytest.raises(ValueError, match="unknown attention backward convention 'flash'"):
        rules.attention_backward("flash")


@pytest.mark.parametrize("convention", ["math", "recompute"])
def test_sdpa_training_backward_follows_the_convention(convention: str) -> None:
    q = torch.randn(B, H, SQ, D, requires_grad=True)
    k = torch.randn(B, H, SK, D, requires_grad=True)
    before = rules.attention_backward()
    rules.attention_backward(convention)
    try:
        with capture(None) as tally:
            F.scaled_dot_product_attention(q, k, k).sum().backward()
    finally:
        rules.attention_backward(before)
    pairs = B * SQ * SK * H
    assert tally.by_operator["aten::scaled_dot_product_attention"] == pairs * (D + D)
    backward = pairs * (2 * (D + D) if convention == "math" else 3 * D + 2 * D)
    assert tally.by_operator["aten::_scaled_dot_product_flash_attention_for_cpu_backward"] == backward


def test_flex_attention_priced_as_dense_attention() -> None:
    """Dense QK^T + PV; the score_mod is elementwise (free); it needs real tensors (torch refuses meta)."""
    from torch.nn.attention.flex_attention import flex_attention

    q, k = torch.randn(1, H, SQ, D), torch.randn(1, H, SK, D)
    bias = lambda s, b, h, i, j: s + (i - j)  # noqa: E731
    for fn in (lambda q, k: flex_attention(q, k, k), lambda q, k: flex_attention(q, k, k, score_mod=bias)):
        assert macs_of(fn, q, k, mode="real") == H * SQ * SK * (D + D)
        assert count(Fn(fn), (q, k), {}).mode == "real"  # auto: meta refused, counted for real


# ---- jagged nested tensors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("counter", ["torchprofile", "flop_counter"])
def test_jagged_nested_linear_is_priced_by_its_values(counter: str) -> None:
    x = torch.nested.nested_tensor([torch.randn(3, 8), torch.randn(5, 8)], layout=torch.jagged)
    result = count(nn.Linear(8, 4), (x,), {}, counter=counter)
    assert (result.macs, result.unpriced) == ((3 + 5) * 8 * 4, {})


def test_strided_nested_tensor_fails_with_a_clear_message() -> None:
    x = torch.nested.nested_tensor([torch.randn(3, 8), torch.randn(5, 8)])
    with pytest.raises(ValueError, match="strided layout .* layout=torch.jagged"):
        count(nn.Linear(8, 4), (x,), {}, counter="flop_counter", mode="real")


# ---- higher-order operators -------------------------------------------------------------------------------------


def _cond(x: torch.Tensor) -> torch.Tensor:
    return torch.cond(x.sum() > 0, lambda x: x @ x, lambda x: x + 1, (x,))


def _cond_costly_false(x: torch.Tensor) -> torch.Tensor:
    return torch.cond(x.sum() > 0, lambda x: x + 1, lambda x: (x @ x) @ x, (x,))


@pytest.mark.parametrize("mode", ["meta", "real"])
def test_cond_counts_the_costlier_branch(mode: str) -> None:
    x = torch.randn(4, 4)
    assert macs_of(_cond, x, mode=mode) == 4 * 4 * 4
    assert macs_of(_cond_costly_false, x, mode=mode) == 2 * 4 * 4 * 4


def test_cond_returns_the_branch_its_predicate_takes() -> None:
    x = torch.ones(2, 2)
    with capture(None) as tally:
        out = _cond_costly_false(x)  # sum > 0: the cheap branch runs, the costlier is counted
    assert torch.equal(out, x + 1) and tally.macs == 2 * 2 * 2 * 2


def _loop(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    from torch._higher_order_ops import while_loop

    return while_loop(lambda x, n: n > 0, lambda x, n: (x @ x, n - 1), (x, n))[0]


def test_while_loop_counts_every_iteration_for_real() -> None:
    x, n = torch.randn(4, 4), torch.tensor(3)
    assert macs_of(_loop, x, n, mode="real") == 3 * 4 * 4 * 4
    result = count(Fn(_loop), (x, n), {})
    assert result.mode == "real" and any("meta-device pass failed" in note for note in result.notes)


@pytest.mark.parametrize("reentrant", [True, False])
@pytest.mark.parametrize("mode", ["meta", "real"])
def test_checkpoint_in_a_forward_counts_once(reentrant: bool, mode: str) -> None:
    from torch.utils.checkpoint import checkpoint

    class Checkpointed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(8, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return checkpoint(self.inner, x, use_reentrant=reentrant)

    assert macs_of(Checkpointed(), torch.randn(3, 8), mode=mode) == 3 * 8 * 6
