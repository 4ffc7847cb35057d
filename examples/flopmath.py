"""Shared arithmetic of the example suites' analytic models (VAR, DiT, ViT).

A ``Cost(exact, elementwise)`` splits a hand-derived MAC count in two:

- ``exact``: matmul, convolution and attention terms (the published convention); a counter
  must find these exactly.
- ``elementwise``: what torchprofile's conventions add on top (every multiply at the numel of
  its output, affine norms at numel, area resizes at numel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cost:
    exact: int = 0
    elementwise: int = 0

    @property
    def total(self) -> int:
        return self.exact + self.elementwise

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.exact + other.exact, self.elementwise + other.elementwise)

    def times(self, factor: int) -> Cost:
        return Cost(self.exact * factor, self.elementwise * factor)


def conv(side: int, c_in: int, c_out: int, kernel: int) -> int:
    """MACs of a conv with a ``side`` x ``side`` output."""
    return side * side * c_out * c_in * kernel * kernel


def group_norm(side: int, channels: int) -> Cost:
    """An affine GroupNorm: one MAC per element of its ``side`` x ``side`` x ``channels`` output."""
    return Cost(0, side * side * channels)


def resnet(side: int, c_in: int, c_out: int) -> Cost:
    """A VAE ResNet block: GN, conv3x3, GN, conv3x3, and a 1x1 shortcut conv when the width changes."""
    exact = conv(side, c_in, c_out, 3) + conv(side, c_out, c_out, 3)
    if c_in != c_out:
        exact += conv(side, c_in, c_out, 1)
    return Cost(exact, 0) + group_norm(side, c_in) + group_norm(side, c_out)


def check_split(by_category: dict[str, int], cost: Cost) -> None:
    """A measurement equals its analytic model: the published categories (matmul, conv, attention)
    exactly, and norms plus elementwise terms exactly the elementwise part."""
    published = by_category["matmul"] + by_category["conv"] + by_category["attention"] + by_category["recurrent"]
    assert published == cost.exact, f"matmul/conv/attention: measured {published:,}, analytic {cost.exact:,}"
    rest = by_category["norm"] + by_category["elementwise"]
    assert rest == cost.elementwise, f"norm/elementwise: measured {rest:,}, analytic {cost.elementwise:,}"


def weight_bytes(module: Any) -> int:
    """Bytes of a module's parameters and buffers, from its tensors: what stays resident through a call."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
