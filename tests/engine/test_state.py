"""Counting never changes the model: parameters, buffers, cached tensors in attributes, gradients, train/eval state."""

from __future__ import annotations

import dataclasses
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


# ---- deep comparison: every attribute, containers that refuse mutation ---------------------------

_PLAIN = (type(None), bool, int, str, bytes, torch.dtype, torch.device, torch.Size, torch.layout, torch.memory_format)


def deep_state(value: object, seen: set[int] | None = None) -> object:
    """Everything reachable from ``value``: identities of objects and containers, tensors' identity,
    device, shape, flags, gradient and values, every ``__dict__`` and ``__slots__`` entry, recursively."""
    seen = set() if seen is None else seen
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, float):
        return repr(value)
    if id(value) in seen:
        return ("seen", id(value))
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        values = None if value.is_meta else value.detach().clone()
        grad = None if value.grad is None else deep_state(value.grad, seen)
        return ("tensor", type(value), id(value), value.device, value.dtype, value.shape, value.stride(),
                value.requires_grad, grad, _Values(values))
    if isinstance(value, dict):
        return ("dict", type(value), id(value), [(k, deep_state(v, seen)) for k, v in dict.items(value)],
                deep_state(getattr(value, "__dict__", {}), seen) if hasattr(value, "__dict__") else None)
    if isinstance(value, (list, tuple)):
        return ("seq", type(value), id(value), [deep_state(v, seen) for v in value])
    if isinstance(value, (set, frozenset)):
        return ("set", type(value), id(value), frozenset(id(v) for v in value))
    if callable(value) and not hasattr(value, "__slots__") and not hasattr(value, "__dict__"):
        return ("callable", id(value))
    if isinstance(value, type) or inspect_is_code(value):
        return ("object", id(value))
    slots = [s for cls in type(value).__mro__ for s in getattr(cls, "__slots__", ()) if s not in ("__dict__", "__weakref__")]
    fields = {name: deep_state(getattr(value, name, "<unset>"), seen) for name in slots}
    if hasattr(value, "__dict__") and not isinstance(value, type(importlib)):
        fields.update({name: deep_state(v, seen) for name, v in vars(value).items()})
    return ("object", type(value), id(value), fields)


def inspect_is_code(value: object) -> bool:
    import types

    return isinstance(value, (types.ModuleType, types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.CodeType))


class _Values:
    """Tensor values compared with torch.equal (NaN-free here) inside the nested tuples."""

    def __init__(self, t: torch.Tensor | None) -> None:
        self.t = t

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Values):
            return NotImplemented
        if self.t is None or other.t is None:
            return self.t is None and other.t is None
        return self.t.dtype == other.t.dtype and self.t.shape == other.t.shape and torch.equal(self.t, other.t)

    def __repr__(self) -> str:
        return "values" if self.t is None else f"values{tuple(self.t.shape)}"


def assert_deep_equal(before: object, after: object, path: str = "model") -> None:
    """Names the first difference (a plain ``==`` on the nested tuples would only say 'not equal')."""
    if isinstance(before, tuple) and isinstance(after, tuple) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after)):
            assert_deep_equal(b, a, f"{path}[{i}]")
    elif isinstance(before, list) and isinstance(after, list):
        assert len(before) == len(after), f"{path}: {len(before)} entries before, {len(after)} after"
        for i, (b, a) in enumerate(zip(before, after)):
            assert_deep_equal(b, a, f"{path}[{i}]")
    elif isinstance(before, dict) and isinstance(after, dict):
        assert before.keys() == after.keys(), f"{path}: keys {sorted(before.keys() ^ after.keys())} differ"
        for k in before:
            assert_deep_equal(before[k], after[k], f"{path}.{k}")
    else:
        assert before == after, f"{path}: {before!r} before, {after!r} after"


class FrozenConfig(dict):
    """Like diffusers' FrozenDict: entries mirrored as attributes; every write after construction refused
    (``clear`` too, stricter than diffusers)."""

    def __init__(self, **entries: object) -> None:
        super().__init__(**entries)
        for key, value in entries.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_frozen", True)

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError(f"{type(self).__name__} is frozen")

    __setitem__ = __delitem__ = update = pop = popitem = setdefault = clear = __ior__ = _refuse  # type: ignore[assignment]

    def __setattr__(self, name: str, value: object) -> None:
        raise RuntimeError(f"{type(self).__name__} is frozen")


class Output(dict):
    """A dict subclass with attribute mirroring, as transformers' ModelOutput: written through its own methods."""

    def __init__(self, **entries: object) -> None:
        super().__init__()
        for key, value in entries.items():
            self[key] = value

    def __setitem__(self, key: str, value: object) -> None:
        super().__setitem__(key, value)
        self.__dict__[key] = value

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.__dict__.pop(key, None)


class Blocks(list):
    """A list subclass with an attribute of its own."""


class Slotted:
    __slots__ = ("scale", "table")

    def __init__(self) -> None:
        self.scale = 2.0
        self.table = torch.arange(4.0)


@dataclasses.dataclass(frozen=True)
class Frozen:
    offset: torch.Tensor
    name: str = "frozen"


class Awkward(nn.Module):
    """Every kind of attribute a count must leave alone or put back: a frozen mapping config, a dict
    subclass the forward writes to, a list subclass, a property without a setter, a ``__slots__``
    object, a frozen dataclass, tuples and nested dicts of tensors, a buffer and a gradient."""

    def __init__(self) -> None:
        super().__init__()
        self._internal_dict = FrozenConfig(width=4, act="relu", sizes=[4, 4], table=torch.ones(4))
        self.head = nn.Linear(4, 4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.cache = Output(kept=torch.zeros(4))
        self.anchors = Blocks([torch.arange(4.0)])
        self.anchors.label = "anchors"  # type: ignore[attr-defined]
        self.helper = Slotted()
        self.frozen = Frozen(torch.full((4,), 0.5))
        self.pair = (torch.ones(4), {"nested": [torch.zeros(4)]})
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.head.weight.grad = torch.full_like(self.head.weight, 0.25)

    @property
    def config(self) -> FrozenConfig:
        return self._internal_dict

    @property
    def width(self) -> int:
        return self._internal_dict["width"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.config.act == "relu" and self.width == x.shape[-1]
        y = self.head(x) * self.config["table"].to(x.device) + self.anchors[0].to(x.device)
        for block in self.blocks:
            y = block(y).relu()
        self.cache["last"] = y  # written through the subclass's own __setitem__
        self.cache["kept"] = y.sum(0)
        self.steps += 1
        return y * self.helper.table.to(x.device) + self.frozen.offset.to(x.device) + self.pair[0].to(x.device)


def awkward_snapshot(model: Awkward) -> object:
    return deep_state(model), model.config, dict(model.config), model.width, list(model.anchors)


def assert_awkward_intact(model: Awkward, before: object) -> None:
    after = awkward_snapshot(model)
    assert_deep_equal(before[0], after[0])
    assert after[1] is before[1] and after[2] == before[2] and after[3] == before[3]
    assert model.config.width == 4 and model.cache.keys() == {"kept"} and "last" not in vars(model.cache)


@pytest.mark.parametrize("counter", COUNTERS)
@pytest.mark.parametrize("mode", MODES)
def test_containers_that_refuse_mutation_are_left_exactly_as_they_were(counter: str, mode: str) -> None:
    torch.manual_seed(0)
    model = Awkward().train()
    before = awkward_snapshot(model)
    result = count(model, (torch.randn(3, 4),), {}, counter=counter, mode=mode)
    assert result.by_module["head"] == 3 * 4 * 4 and result.by_module["blocks.1"] == 3 * 4 * 4
    assert_awkward_intact(model, before)


def test_a_training_step_leaves_containers_that_refuse_mutation_alone() -> None:
    from pytest_flopbudget import measure_train_step

    model = Awkward().train()
    before = awkward_snapshot(model)
    result = measure_train_step(model, torch.randn(3, 4), optimizer=torch.optim.AdamW(model.parameters()))
    assert result.phases["forward"] >= 3 * 3 * 4 * 4
    assert_awkward_intact(model, before)


def test_a_container_that_refuses_the_write_back_is_reported_not_forced() -> None:
    """A pass that rebinds an entry of a mapping which then refuses writes: the guard notes it and
    leaves the container as the pass made it (never half-cleared)."""

    class Sealing(dict):
        sealed = False

        def __setitem__(self, key: str, value: object) -> None:
            if self.sealed:
                raise RuntimeError("sealed")
            super().__setitem__(key, value)

    class Seals(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.store = Sealing(a=torch.zeros(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.store["a"] = x
            self.store.sealed = True
            return x

    model = Seals()
    with guard(model) as notes:
        model(torch.ones(2))
    assert len(notes) == 1 and "store" in notes[0]
    assert list(model.store) == ["a"] and torch.equal(model.store["a"], torch.ones(2))


def _diffusers_models() -> list[tuple[str, nn.Module, tuple, dict]]:
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4,
    )
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(8,), latent_channels=4, norm_num_groups=4, layers_per_block=1, sample_size=8,
    )
    return [
        ("unet", unet, (torch.randn(1, 4, 8, 8), torch.tensor([10])), {"encoder_hidden_states": torch.randn(1, 3, 8)}),
        ("vae", vae, (torch.randn(1, 3, 8, 8),), {}),
    ]


def test_diffusers_models_keep_their_frozen_config_and_every_attribute() -> None:
    """Diffusers' FrozenDict config refuses update: every counter, mode and the training step leave the
    model exactly as it was (deep comparison of every attribute, the config included)."""
    for name, model, args, kwargs in _diffusers_models():
        model.eval()
        config = dict(model.config)
        before = deep_state(model)
        for counter in COUNTERS:
            for mode in MODES:
                result = count(model, args, kwargs, counter=counter, mode=mode)
                assert result.by_category["conv"] > 0, (name, counter, mode)
                assert_deep_equal(before, deep_state(model), f"{name}[{counter}, {mode}]")
                assert dict(model.config) == config
        model.train()
        before = deep_state(model)
        from pytest_flopbudget import measure_train_step

        result = measure_train_step(model, *args, **kwargs)
        assert result.phases["backward"] > 0
        assert_deep_equal(before, deep_state(model), f"{name}[train step]")
        assert dict(model.config) == config


def test_a_rebound_tuple_attribute_is_bound_back() -> None:
    """A tuple of numbers (a kernel size, a padding) is not searched for tensors, but a forward that
    rebinds it finds the original object back after the count."""

    class Rebinds(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.padding = (1, 1)
            self.nested = ((1, 2), [3])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.padding = (9, 9)
            self.nested[1].append(4)
            return self.lin(x)

    model = Rebinds()
    padding, nested = model.padding, model.nested
    result = count(model, (torch.zeros(2, 4),))
    assert result.macs == 2 * 4 * 4
    assert model.padding is padding and model.padding == (1, 1)
    assert model.nested is nested and nested[1] == [3]


def test_every_rebound_attribute_and_every_added_one_comes_back() -> None:
    """A forward that bumps a counter, swaps a string, adds an attribute and switches a submodule to
    training mode leaves nothing of it after the count."""

    class Bumps(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.calls = 0
            self.name = "before"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            self.name = "after"
            self.cache_length = x.shape[0]
            self.lin.train()
            return self.lin(x)

    model = Bumps().eval()
    result = count(model, (torch.zeros(2, 4),))
    assert result.macs == 2 * 4 * 4
    assert model.calls == 0 and model.name == "before" and not hasattr(model, "cache_length")
    assert not model.lin.training
