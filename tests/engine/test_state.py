"""Counting never changes the model: parameters, buffers, cached tensors in attributes, gradients, train/eval state."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn as nn
from crosscheck_models import foreign_call

from pytest_flopbudget.engine.count import COUNTERS, count
from pytest_flopbudget.engine.state import guard

MODES = ["auto", "meta", "real"]


class CachingDetector(nn.Module):
    """Like torchvision's AnchorGenerator: anchors cached in a list attribute, moved to the input's device
    during forward; a dict cache and a new attribute; a data-dependent proposal count (meta cannot run it)."""

    def __init__(self, data_dependent: bool = True) -> None:
        super().__init__()
        self.head = nn.Linear(4, 4)
        self.norm = nn.BatchNorm1d(4)
        self.cell_anchors = [torch.arange(12.0).reshape(3, 4)]
        self.cache: dict[str, torch.Tensor] = {}
        self.data_dependent = data_dependent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.cell_anchors = [a.to(device=x.device, dtype=x.dtype) for a in self.cell_anchors]
        self.cache["features"] = x
        self.seen = x.shape
        self.last_input = x
        y = self.norm(self.head(x)) + self.cell_anchors[0].sum(0)
        if self.data_dependent:
            keep = int((y > 0).sum().item()) % 3 + 1  # needs real values
            y = y[:keep]
        return y


def snapshot(model: nn.Module) -> dict:
    return {
        "anchors": [(id(a), a.device, a.clone()) for a in model.cell_anchors],
        "list": id(model.cell_anchors),
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "ids": {k: id(v) for k, v in model.state_dict(keep_vars=True).items()},
        "training": [m.training for m in model.modules()],
        "keys": set(model.__dict__),
        "grads": {n: (None if p.grad is None else (id(p.grad), p.grad.clone())) for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "hooks": [(list(m._forward_pre_hooks), list(m._forward_hooks)) for m in model.modules()],
        "call": nn.Module.__call__,  # the trace replaces it while it runs (counting/calls.py)
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert [(i, d) for i, d, _ in after["anchors"]] == [(i, d) for i, d, _ in before["anchors"]]
    assert all(torch.equal(a, b) for (_, _, a), (_, _, b) in zip(after["anchors"], before["anchors"]))
    assert after["list"] == before["list"] and model.cache == {}
    assert after["ids"] == before["ids"]
    assert all(torch.equal(after["state"][k], v) for k, v in before["state"].items())
    assert after["training"] == before["training"]
    assert after["keys"] == before["keys"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"] and after["call"] is before["call"]
    for name, grad in before["grads"].items():
        now = after["grads"][name]
        assert (now is None) == (grad is None), name
        if grad is not None:
            assert now[0] == grad[0] and torch.equal(now[1], grad[1]), name


@pytest.mark.parametrize("counter", COUNTERS)
@pytest.mark.parametrize("mode", MODES)
def test_cached_anchors_and_buffers_survive_counting(counter: str, mode: str) -> None:
    torch.manual_seed(0)
    model = CachingDetector(data_dependent=mode != "meta").train()  # train: batch norm updates its stats
    model.head.weight.grad = torch.full_like(model.head.weight, 0.5)  # a gradient left by the user's training
    model.norm.bias.requires_grad_(False)
    x = torch.randn(5, 4)
    before = snapshot(model)
    result = count(model, (x,), {}, counter=counter, mode=mode)
    assert result.macs >= 5 * 4 * 4  # the head: 5 rows x Linear(4, 4)
    assert_unchanged(model, before)
    # a real forward afterwards gives what it gave before counting (fresh copies: the forward updates stats)
    twin = CachingDetector(data_dependent=mode != "meta").train()
    twin.load_state_dict(model.state_dict())
    assert torch.equal(model(x), twin(x))


@pytest.mark.parametrize("counter", COUNTERS)
def test_state_is_restored_when_the_model_raises(counter: str) -> None:
    class Fails(CachingDetector):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            super().forward(x)
            raise ValueError("boom after caching")

    model = Fails(data_dependent=False).train()
    before = snapshot(model)
    for mode in MODES:
        with pytest.raises(Exception, match="boom after caching"):
            count(model, (torch.randn(5, 4),), {}, counter=counter, mode=mode)
        assert_unchanged(model, before)


def test_auto_mode_falls_back_with_the_anchors_back_on_cpu() -> None:
    """The meta pass caches meta anchors and fails on .item(); the real pass must find CPU anchors."""
    model = CachingDetector().eval()
    x = torch.randn(5, 4)
    expected = model(x)
    model.cache.clear()
    del model.seen, model.last_input
    result = count(model, (x,), {})
    assert result.mode == "real" and "meta" in result.notes[0]
    assert model.cell_anchors[0].device.type == "cpu"
    assert torch.equal(model(x), expected)


def test_a_parameter_written_in_place_is_reported() -> None:
    class Writes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                self.w.add_(1)
            return x * self.w

    model = Writes()
    with guard(model) as notes:
        model(torch.ones(2))
    assert len(notes) == 1 and "w" in notes[0] and "in place" in notes[0]


@pytest.mark.parametrize("counter", COUNTERS)
def test_a_torchvision_detector_is_left_as_it_was(counter: str) -> None:
    """Faster R-CNN: the meta pass caches meta anchors and fails (nonzero); the real pass counts; the
    model gives the same detections afterwards, its anchors on the CPU."""
    detection = pytest.importorskip("torchvision.models.detection")
    torch.manual_seed(0)
    model = detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3).eval()
    images = [torch.rand(3, 64, 64)]
    with torch.no_grad():
        before = model(images)
    result = count(model, (images,), {}, counter=counter)
    assert result.mode == "real" and result.by_category["conv"] > 0
    assert all(a.device.type == "cpu" for a in model.rpn.anchor_generator.cell_anchors)
    with torch.no_grad():
        after = model(images)
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(before, after))


class _Passing(torch.overrides.TorchFunctionMode):
    """A mode in the caller's thread: the trace then stays in that thread instead of its own."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("mode", MODES)
def test_the_trace_in_the_callers_thread_leaves_the_model_alike(mode: str) -> None:
    """The default counter traces on a thread of its own, or in the caller's thread where that thread
    holds a torch mode: the model is put back the same way on both paths."""
    model = CachingDetector(data_dependent=mode != "meta").train()
    model.head.weight.grad = torch.full_like(model.head.weight, 0.5)
    before = snapshot(model)
    with _Passing():
        count(model, (torch.randn(5, 4),), {}, mode=mode)
    assert_unchanged(model, before)


def test_a_training_step_leaves_the_model_alike() -> None:
    """measure_train_step: the same snapshot (cached tensors, buffers, flags, gradients) after a step."""
    from pytest_flopbudget import measure_train_step

    model = CachingDetector(data_dependent=False).train()
    model.head.weight.grad = torch.full_like(model.head.weight, 0.5)
    model.norm.bias.requires_grad_(False)
    before = snapshot(model)
    result = measure_train_step(model, torch.randn(5, 4), optimizer=torch.optim.AdamW(model.parameters()))
    assert result.phases["backward"] > 0 and result.phases["optimizer"] > 0
    assert_unchanged(model, before)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("closing", ["here", "tracer"])
@pytest.mark.parametrize("calls", ["lean", "forward hooks"])
def test_every_path_of_the_trace_leaves_the_model_alike(mode: str, closing: str, calls: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trace's graph closed in the trace or by the tracer, and module calls followed by the lean
    ``nn.Module.__call__`` or (another tool having replaced it) by forward hooks; a user's own hook on
    a submodule stays, and nothing of the count's is left on the model or on nn.Module."""
    trace_module = importlib.import_module("pytest_flopbudget.engine.capture.trace")
    if closing == "tracer":
        monkeypatch.setattr(trace_module, "_close_here", lambda graph, outputs: False)
    if calls == "forward hooks":
        monkeypatch.setattr(nn.Module, "__call__", foreign_call)
    model = CachingDetector(data_dependent=mode != "meta").train()
    model.head.weight.grad = torch.full_like(model.head.weight, 0.5)
    model.head.register_forward_hook(lambda module, args, out: None)
    before = snapshot(model)
    result = count(model, (torch.randn(5, 4),), {}, mode=mode)
    assert result.by_module["head"] == 5 * 4 * 4
    assert_unchanged(model, before)
