"""count(): inputs, outputs, modes, counters, per-module attribution and side effects."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pytest_flopbudget import measure
from pytest_flopbudget.engine.count import MetaCountError, count

COUNTERS = ["torchprofile", "flop_counter"]


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Tiny(nn.Module):
    def __init__(self, depth: int = 2, d: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def block_matmul_macs(t: int, d: int) -> int:
    """qkv + proj + QK^T and AV + MLP, batch 1 (no bias, norm or activation terms)."""
    return t * d * 3 * d + t * d * d + t * t * d * 2 + 2 * t * d * 4 * d


T, D = 6, 16


def test_measure_uses_count() -> None:
    result = measure(nn.Linear(4, 3), torch.randn(5, 4))
    assert result.macs == 5 * 4 * 3
    assert result.params == 4 * 3 + 3
    assert (result.counter, result.mode) == ("torchprofile", "meta")


# ---- inputs and outputs --------------------------------------------------------------


class KeywordOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, *, x: torch.Tensor, extra: dict | None = None, scale: float = 1.0) -> dict:
        y = self.lin(x)
        if extra is not None:
            y = y + self.lin(extra["more"][0])
        return {"y": y, "scale": scale}


@pytest.mark.parametrize("counter", COUNTERS)
def test_keyword_only_model_with_nested_inputs(counter: str) -> None:
    x, more = torch.randn(2, 4), torch.randn(2, 4)
    result = count(KeywordOnly(), (), {"x": x, "extra": {"more": [more]}, "scale": 2.0}, counter=counter)
    assert result.macs == 2 * (2 * 4 * 3)
    assert result.by_module == {"lin": 2 * (2 * 4 * 3)}


@dataclasses.dataclass
class Output:
    logits: torch.Tensor
    hidden: tuple = ()
    loss: torch.Tensor | None = None


class ModelOutput(collections.OrderedDict):
    """Like transformers' ModelOutput: an OrderedDict of tensors."""


Pair = collections.namedtuple("Pair", "first second")


class Returns(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> Any:
        y = self.lin(x)
        if self.kind == "dataclass":
            return Output(logits=y, hidden=(x, y))
        if self.kind == "modeloutput":
            return ModelOutput(logits=y, past=[(x, x)])
        if self.kind == "namedtuple":
            return Pair(y, {"x": x})
        return None


@pytest.mark.parametrize("kind", ["dataclass", "modeloutput", "namedtuple", "none"])
@pytest.mark.parametrize("counter", COUNTERS)
def test_structured_outputs(kind: str, counter: str) -> None:
    result = count(Returns(kind), (torch.randn(5, 4),), {}, counter=counter)
    assert result.macs == 5 * 4 * 3


@pytest.mark.parametrize("counter", COUNTERS)
def test_submodule_with_unused_result_is_counted(counter: str) -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Linear(4, 3), nn.Linear(4, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.unused(x)
            return self.used(x)

    result = count(Unused(), (torch.randn(2, 4),), {}, counter=counter)
    assert result.by_module == {"used": 2 * 4 * 3, "unused": 2 * 4 * 5}


def test_plain_callable_and_bound_method() -> None:
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    assert count(lambda a, b: torch.mm(a, b), (a, b), {}).macs == 3 * 4 * 5
    lin = nn.Linear(4, 2)
    result = count(lin.forward, (a,), {})
    assert (result.macs, result.params, result.mode) == (3 * 4 * 2, 4 * 2 + 2, "meta")


def test_non_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="nn.Module or a callable"):
        count(42, (), {})


def test_unknown_counter_and_mode() -> None:
    with pytest.raises(ValueError, match="torchprofile, flop_counter"):
        count(nn.Identity(), (torch.ones(1),), {}, counter="fvcore")
    with pytest.raises(ValueError, match="auto, meta, real"):
        count(nn.Identity(), (torch.ones(1),), {}, mode="fake")


def test_params_counts_tied_weights_once() -> None:
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    model[1].weight = model[0].weight
    result = count(model, (torch.randn(2, 4),), {})
    assert result.params == 4 * 4
    assert result.macs == 2 * (2 * 4 * 4)


# ---- nn.MultiheadAttention ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "real"])
@pytest.mark.parametrize("counter", COUNTERS)
def test_multihead_attention_eval_no_grad(counter: str, mode: str) -> None:
    b, s, e = 2, 10, 16
    mha = nn.MultiheadAttention(e, 4, batch_first=True).eval()
    x = torch.randn(b, s, e)
    before = torch.backends.mha.get_fastpath_enabled()
    with torch.no_grad():
        result = count(mha, (x, x, x), {"need_weights": False}, counter=counter, mode=mode)
    in_proj, attention, out_proj = 3 * s * e * e, 2 * s * s * e, s * e * e
    assert result.macs == b * (in_proj + attention + out_proj)
    assert result.unpriced == {}
    assert torch.backends.mha.get_fastpath_enabled() == before
    assert not mha.training


def test_transformer_encoder_layer_eval() -> None:
    s, e, ff = 5, 8, 32
    layer = nn.TransformerEncoderLayer(e, 2, ff, batch_first=True).eval()
    result = count(layer, (torch.randn(1, s, e),), {}, counter="flop_counter")
    norms = 2 * s * e  # two affine layer norms, numel(out) each
    assert result.macs == 3 * s * e * e + 2 * s * s * e + s * e * e + 2 * s * e * ff + norms
    assert count(layer, (torch.randn(1, s, e),), {}).macs == result.macs


# ---- modes -----------------------------------------------------------------------------------


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.lin(self.lin(x))
        return self.lin(x)


@pytest.mark.parametrize("counter", COUNTERS)
def test_auto_falls_back_to_a_real_pass_with_a_note(counter: str) -> None:
    result = count(DataDependent(), (torch.ones(3, 4),), {}, counter=counter)
    assert result.macs == 2 * (3 * 4 * 4)
    assert result.mode == "real"
    assert len(result.notes) == 1 and "real forward pass" in result.notes[0] and "meta" in result.notes[0]


def test_meta_mode_never_falls_back() -> None:
    with pytest.raises(MetaCountError, match="meta"):
        count(DataDependent(), (torch.ones(3, 4),), {}, mode="meta")


@pytest.mark.parametrize("counter", ["torchprofile", "trace"])
def test_a_meta_model_that_needs_values_fails_naming_the_cause_and_keeping_torchs_error(counter: str) -> None:
    with pytest.raises(MetaCountError, match=r"needs real values \(Tensor.item\(\) on a meta tensor\)") as caught:
        count(DataDependent().to("meta"), (torch.ones(3, 4, device="meta"),), {}, counter=counter)
    assert "cannot be called on meta tensors" in str(caught.value.__cause__)  # torch's own error, chained


def test_real_mode_runs_on_the_model_tensors() -> None:
    result = count(DataDependent(), (-torch.ones(3, 4),), {}, mode="real")
    assert (result.macs, result.mode, result.notes) == (3 * 4 * 4, "real", ())


def test_meta_model_with_meta_inputs() -> None:
    with torch.device("meta"):
        model = Tiny(depth=2, d=D)
        x = torch.randn(1, T, D)
    result = count(model, (x,), {})
    assert result.mode == "meta"
    assert result.macs == 2 * block_matmul_macs(T, D) + 2 * 2 * T * D  # + two affine LayerNorms per block


def test_counting_runs_without_autograd_and_keeps_train_state() -> None:
    seen: list[bool] = []

    class Spy(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.is_grad_enabled())
            return super().forward(x)

    model = Spy(4, 4).train()
    for mode in ("auto", "real"):
        count(model, (torch.randn(2, 4),), {}, mode=mode)
    assert seen == [False, False]
    assert model.training


# ---- weights untouched ---------------------------------------------------------------------


def test_real_weights_are_swapped_back_untouched() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    before = {k: (v, v.clone()) for k, v in model.state_dict(keep_vars=True).items()}
    result = count(model, (torch.randn(3, 4),), {})
    assert result.mode == "meta"
    for name, value in model.state_dict(keep_vars=True).items():
        original, copy = before[name]
        assert value is original and not value.is_meta and torch.equal(value, copy)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_weights_restored_when_the_model_raises() -> None:
    class Broken(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    model = Broken(4, 4)
    weight = model.weight
    with pytest.raises(MetaCountError, match="boom"):
        count(model, (torch.randn(2, 4),), {}, mode="meta")
    assert model.weight is weight and not weight.is_meta
    assert not model._forward_hooks and not model._forward_pre_hooks


# ---- per-module attribution ------------------------------------------------------------------


@pytest.mark.parametrize("counter", COUNTERS)
def test_by_module_paths_are_exclusive(counter: str) -> None:
    model = Tiny(depth=2, d=D)
    result = count(model, (torch.randn(1, T, D),), {}, counter=counter)
    assert set(result.by_module) >= {"blocks.1.attn.proj", "blocks.0.attn", "blocks.1.mlp.0"}
    assert result.by_module["blocks.1.attn.proj"] == T * D * D
    assert result.by_module["blocks.0.attn.qkv"] == T * D * 3 * D
    assert result.by_module["blocks.0.attn"] == T * T * D * 2  # SDPA runs in the attention module itself
    assert result.by_module["blocks.1.mlp.2"] == T * 4 * D * D
    assert sum(result.by_module.values()) == result.macs
    names = dict(model.named_modules())
    assert all(path in names for path in result.by_module)


# ---- the two counters agree -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["meta", "real"])
def test_counters_agree(mode: str) -> None:
    """One registry over two captures: the trace and the dispatch capture give the same MACs."""
    model = Tiny(depth=2, d=D)
    x = torch.randn(1, T, D)
    tp = count(model, (x,), {}, mode=mode)
    fc = count(model, (x,), {}, counter="flop_counter", mode=mode)
    expected = 2 * block_matmul_macs(T, D)
    layer_norms = 2 * 2 * T * D  # affine layer norms: numel(out) each, two per block
    assert tp.macs == fc.macs == expected + layer_norms
    assert tp.by_operator["aten::layer_norm"] == fc.by_operator["aten::layer_norm"] == layer_norms
    assert tp.by_module == fc.by_module
    assert (tp.unpriced, fc.unpriced) == ({}, {})


def test_warm_up_loads_the_lazy_modules() -> None:
    import sys

    from pytest_flopbudget.engine.count import warm_up

    warm_up()
    before = set(sys.modules)
    for counter in COUNTERS:
        for mode in ("meta", "real"):
            count(Tiny(depth=1, d=D), (torch.randn(1, T, D),), {}, counter=counter, mode=mode)
    assert set(sys.modules) - before == set()


class TwoConvs(nn.Module):
    """An nn.Conv2d and a functional conv2d over a parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.mix = nn.Parameter(torch.randn(4, 8, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(self.conv(x), self.mix)


@pytest.mark.parametrize("mode", ["meta", "real"])
@pytest.mark.parametrize("counter", COUNTERS)
def test_convolutions_are_seen_on_every_device(counter: str, mode: str) -> None:
    """Under a dispatch mode (the trace's operator budget) the tracer records no CPU convolution by itself."""
    result = count(TwoConvs(), (torch.randn(1, 3, 10, 10),), {}, counter=counter, mode=mode)
    conv = 8 * 8 * 8 * (3 * 3 * 3)  # out 8 x 8x8, per output Cin * k * k
    mix = 4 * 8 * 8 * 8  # 1x1: out 4 x 8x8, per output Cin = 8
    assert (result.macs, result.by_category["conv"]) == (conv + mix, conv + mix)
