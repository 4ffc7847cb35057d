"""meta_init(), meta-device models, and the weight swap used to count real models without arithmetic."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import pytest_flopbudget
from pytest_flopbudget.engine.count import count
from pytest_flopbudget.engine.fastmeta import meta_init
from pytest_flopbudget.engine.meta import weights_on_meta


class DropPathNet(nn.Module):
    """A constructor that does real tensor work (timm-style drop-path rates) besides creating weights."""

    def __init__(self, depth: int = 3, d: int = 8) -> None:
        super().__init__()
        self.rates = [x.item() for x in torch.linspace(0, 0.1, depth)]
        self.layers = nn.ModuleList(nn.Linear(d, d) for _ in range(depth))
        self.norm = nn.BatchNorm1d(d)
        self.register_buffer("scale", torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x) * self.scale
        return self.norm(x)


def test_meta_init_puts_weights_on_meta_and_runs_the_rest_for_real() -> None:
    with meta_init():
        model = DropPathNet(depth=3, d=8)
    assert model.rates == pytest.approx([0.0, 0.05, 0.1])
    assert all(t.is_meta for t in model.parameters())
    assert all(t.is_meta for t in model.buffers())
    assert isinstance(model.layers[0].weight, nn.Parameter)
    result = count(model, (torch.randn(4, 8),), {}, mode="meta")
    linear, mul, batch_norm = 4 * 8 * 8, 4 * 8, 4 * 8
    assert result.macs == 3 * (linear + mul) + batch_norm
    assert result.params == 3 * (8 * 8 + 8) + 2 * 8


def test_meta_init_restores_module_methods_even_on_error() -> None:
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer
    with pytest.raises(ZeroDivisionError):
        with meta_init():
            nn.Linear(2, 2)
            1 / 0  # noqa: B018  (raises inside the block)
    assert nn.Module.register_parameter is register_parameter
    assert nn.Module.register_buffer is register_buffer
    assert not nn.Linear(2, 2).weight.is_meta


def test_meta_init_is_exported_lazily() -> None:
    assert pytest_flopbudget.meta_init is meta_init


def test_model_built_under_torch_device_meta() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    result = count(model, (torch.randn(2, 8),), {})
    assert (result.macs, result.mode) == (2 * 8 * 16 + 2 * 16 * 4, "meta")


def test_conv_net_counts_the_same_on_meta_and_real() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(4, 2, 2, stride=2))
    x = torch.randn(1, 3, 5, 5)
    conv = 1 * 4 * 5 * 5 * 3 * 3 * 3
    transposed = 1 * 4 * 5 * 5 * 2 * 2 * 2
    on_meta = count(model, (x,), {}, mode="meta")
    real = count(model, (x,), {}, mode="real")
    assert on_meta.macs == real.macs == conv + transposed
    assert on_meta.by_module == real.by_module == {"0": conv, "2": transposed}


def test_weights_on_meta_swaps_and_restores() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    model[0].bias = model[1].weight  # tied across modules
    originals = list(model.state_dict(keep_vars=True).values())
    with pytest.raises(RuntimeError):
        with weights_on_meta(model):
            assert all(t.is_meta for t in model.state_dict(keep_vars=True).values())
            assert model[0].bias is model[1].weight
            assert isinstance(model[0].weight, nn.Parameter) and model[0].weight.requires_grad
            raise RuntimeError("fail inside")
    restored = list(model.state_dict(keep_vars=True).values())
    assert all(a is b for a, b in zip(originals, restored))


def test_lazy_module_is_counted_by_falling_back() -> None:
    model = nn.LazyLinear(3)
    result = count(model, (torch.randn(2, 5),), {})
    assert result.macs == 2 * 5 * 3


def test_functional_conv_without_a_conv_module_counts_on_meta() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.conv2d(x, self.weight, stride=2)

    result = count(Functional(), (torch.randn(2, 3, 9, 9),), {}, mode="meta")
    out = (9 - 3) // 2 + 1
    assert (result.macs, result.mode) == (2 * 4 * out * out * 3 * 3 * 3, "meta")
