"""What every zoo entry shares: the entry record and building on the meta device."""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The end of a difference line where a tensor differs in its version counter alone (zoo/snapshot.py).
VERSION_ONLY = "(version counter only: same tensor, same values, written in place)"

# How the last model was built: "fast_meta" (pytest_flopbudget.fast_meta() and torch.device("meta")),
# "meta" (torch.device("meta") alone, where the fast path failed), "meta_init" (parameters on meta,
# the constructor's own tensor work real) or "real" (an entry that asks for real weights), and the
# errors of the ways tried before.
BUILD = {"method": None, "tried": []}


@dataclass
class Entry:
    name: str  # unique, "<family>/<model>"
    family: str  # timm, transformers, diffusers, torchvision
    group: str  # the architecture family inside the library (timm module, model type)
    builder: str  # "module:function", called with builder_arg; returns (model, args, kwargs)
    builder_arg: Any = None
    # published GMACs (matmul/conv/attention convention), or "module:function:arg" that returns them
    # (resolved in the worker, so listing the zoo imports no model library)
    published: float | str | None = None
    published_source: str | None = None
    note: str = ""  # what the configuration or input is, in words
    tags: tuple[str, ...] = field(default_factory=tuple)

    def published_gmacs(self) -> float | None:
        if not isinstance(self.published, str):
            return self.published
        module, function, arg = self.published.split(":", 2)
        return getattr(importlib.import_module(module), function)(arg)

    def build(self) -> tuple[Any, tuple, dict]:
        module, _, function = self.builder.partition(":")
        fn = getattr(importlib.import_module(module), function)
        return fn(self.builder_arg)


def on_meta(make: Callable[[], Any]) -> Any:
    """``make()`` on the meta device: under the plugin's fast meta path first, then plain meta, then
    ``meta_init`` (research code that computes with tensors in its constructor)."""
    import torch

    import pytest_flopbudget

    BUILD["method"], BUILD["tried"] = None, []
    ways = []
    fast_meta = getattr(pytest_flopbudget, "fast_meta", None)
    if fast_meta is not None:
        def with_fast_meta():
            with fast_meta(), torch.device("meta"):
                return make()
        ways.append(("fast_meta", with_fast_meta))

    def with_meta():
        with torch.device("meta"):
            return make()
    ways.append(("meta", with_meta))
    meta_init = getattr(pytest_flopbudget, "meta_init", None)
    if meta_init is not None:
        def with_meta_init():
            with meta_init():
                return make()
        ways.append(("meta_init", with_meta_init))
    for method, way in ways:
        try:
            model = way()
        except Exception as exc:
            BUILD["tried"].append(f"{method}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}")
            last = traceback.format_exc()
            continue
        BUILD["method"] = method
        return model
    raise RuntimeError("the model could not be built on meta: " + " | ".join(BUILD["tried"]) + "\n" + last)


def real(make: Callable[[], Any]) -> Any:
    """``make()`` with real (random) weights on the CPU, for entries that exercise a real-weights count."""
    BUILD["method"], BUILD["tried"] = "real", []
    return make()
