"""Models that count-equality tests share: one with the layer kinds of the other test files, and a
small VAR (transformer forward, forward on images, generation) built from the example's code."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent


class Layers(nn.Module):
    """The layer kinds of the other test files in one model: convolutions (also transposed and
    grouped), norms, pooling, resizing, recurrent layers, attention, embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.gn = nn.GroupNorm(4, 8)
        self.bn = nn.BatchNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.embed = nn.Embedding(10, 16)
        self.encoder = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
        self.gru = nn.GRU(16, 8, batch_first=True)
        self.lstm = nn.LSTM(8, 8, num_layers=2, batch_first=True)
        self.head = nn.Linear(8 + 64, 5)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.gn(self.grouped(self.conv(image)))))
        h = nn.functional.interpolate(self.up(h), scale_factor=0.5, mode="bilinear")
        h = self.pool(h).flatten(1)
        t = self.encoder(self.embed(tokens))
        t = t + self.mha(t, t, t, need_weights=False)[0]
        t, _ = self.lstm(self.gru(t)[0])
        return self.head(torch.cat((t[:, -1], h), dim=-1)).softmax(-1)


def var_module(name: str) -> Any:
    """``examples/var/model.py`` loaded as module ``name``: a module called "model" in sys.modules
    would shadow the copies of the example that other tests import in-process."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / "var" / "model.py")
    var = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(var)
    return var


def var_models() -> list[tuple[str, nn.Module, tuple]]:
    """A small VAR (depth 2, a VQVAE of 32 base channels): its transformer forward, forward on images
    and generation, each with inputs."""
    var = var_module("_crosscheck_var_model")
    VARGenerate, VARImageForward, build_var, build_vqvae, dummy_inputs = (
        var.VARGenerate, var.VARImageForward, var.build_var, var.build_vqvae, var.dummy_inputs)

    labels, tokens, images = dummy_inputs(256)
    return [
        ("forward", build_var(2), (labels, tokens)),
        ("image", VARImageForward(build_vqvae(base_channels=32), build_var(2)), (images, labels)),
        ("generate", VARGenerate(build_vqvae(base_channels=32), build_var(2)), (labels,)),
    ]


def foreign_call(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """Another tool's replacement of ``nn.Module.__call__``, passing every call on to torch's (with it
    in place, the trace follows modules with forward hooks)."""
    return nn.Module._wrapped_call_impl(self, *args, **kwargs)
