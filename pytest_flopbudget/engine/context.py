"""Torch settings and model facts shared by every capture."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined]  # torch's stubs omit it
from torch.utils._python_dispatch import TorchDispatchMode


@contextmanager
def _no_mha_fastpath() -> Iterator[None]:
    """nn.MultiheadAttention/TransformerEncoderLayer: take the regular path (the fused one hides the matmuls)."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


def parameter_count(module: nn.Module | None) -> int:
    """Elements of the module's parameters (uninitialized lazy ones not counted)."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if not isinstance(p, UninitializedTensorMixin))


class PlainMode(TorchDispatchMode):
    """Base of the engine's own dispatch modes: typed, and never wrapped in ``torch._dynamo.disable``
    (torch's default, whose first call imports torch._dynamo: about 1 s on a process's first count)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # torch's base class is unannotated

