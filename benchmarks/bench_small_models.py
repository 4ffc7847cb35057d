"""Small CNNs at batch 1: where torch's own meta pass is a millisecond of C++ kernels, and what any counter
built on torch's Python modes costs there.

Per model, in one fresh Python process each (this script re-invoked with ``--child``), all on the CPU, the
model built on meta from its published architecture (written out below, random weights):

  bare          ``model(x)`` on meta under ``torch.no_grad()``: torch's own meta execution
  default       ``measure(model, x)`` with the defaults (the dispatch capture)
  no direct calls  the same with the capture's direct calls off (engine/capture/direct.py: convolutions,
                ReLUs, poolings, concatenations and 2-d linear layers made at the Python level, the
                dispatcher never reached): every operator through both modes
  modes alone   ``model(x)`` inside a TorchFunctionMode and a TorchDispatchMode that only pass every call
                on, with two global module hooks that do nothing: the machinery any counter of this kind
                (this one, FlopCounterMode) runs before it prices anything, with torch's meta kernels
  function mode alone  the same with the function mode only (torch's meta kernels still make every output)
  outputs only  the floor of a count whose layers never reach the dispatcher (the default's direct calls):
                a function mode in which convolutions, ReLUs, poolings, concatenations and linear layers
                return an output made from the shape their first call gave (an in-place ReLU its input),
                every other call passed on; no module followed, nothing priced
  FlopCounterMode  ``torch.utils.flop_counter.FlopCounterMode`` around the same meta call
  first         the default counter's first count in the process (the engine imported before)

A second table says where the default's time goes, each variant the default with one part of its
bookkeeping turned off (a benchmark-only switch; what it leaves out is then missing from the count):

  no guard      the model-state guard (engine/state.py) takes no snapshot and restores nothing
  no bytes      no bytes moved are worked out per call (engine/memory/traffic.py)
  no modules    no module is followed: every call counts under the model itself
  none of them  all three off

Each figure is the best of ``--repeat`` runs (the bare pass, the default count and the modes alone measured
in turn, back to back); MACs are the default counter's, next to the published figure (torchvision's model
table, GMACs at 224 px).

Run from the repository root::

    .venv/bin/python benchmarks/bench_small_models.py [--repeat 50]
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench_default_path import child_results, parent_options

CASES = ("vgg11", "squeezenet1_1", "resnet18")
PUBLISHED_GMACS = {"vgg11": 7.61, "squeezenet1_1": 0.35, "resnet18": 1.81}


# ---- models (their published architectures) ---------------------------------------------------


def _vgg11() -> Any:
    import torch.nn as nn

    layers: list[nn.Module] = []
    channels = 3
    for width in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            assert isinstance(width, int)
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
            channels = width
    return nn.Sequential(
        nn.Sequential(*layers), nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(1),
        nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True),
                      nn.Dropout(), nn.Linear(4096, 1000)),
    )


def _squeezenet1_1() -> Any:
    import torch
    import torch.nn as nn

    class Fire(nn.Module):
        def __init__(self, inplanes: int, squeeze: int, expand1: int, expand3: int) -> None:
            super().__init__()
            self.squeeze = nn.Conv2d(inplanes, squeeze, 1)
            self.squeeze_activation = nn.ReLU(inplace=True)
            self.expand1x1 = nn.Conv2d(squeeze, expand1, 1)
            self.expand1x1_activation = nn.ReLU(inplace=True)
            self.expand3x3 = nn.Conv2d(squeeze, expand3, 3, padding=1)
            self.expand3x3_activation = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.squeeze_activation(self.squeeze(x))
            out: torch.Tensor = torch.cat([self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1)
            return out

    return nn.Sequential(
        nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
        ),
        nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, 1000, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))),
        nn.Flatten(1),
    )


def _resnet18() -> Any:
    import torch
    import torch.nn as nn

    class Basic(nn.Module):
        def __init__(self, inplanes: int, planes: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    stages, inplanes = [], 64
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        stages.append(nn.Sequential(Basic(inplanes, planes, stride), Basic(planes, planes, 1)))
        inplanes = planes
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
        *stages, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(1), nn.Linear(512, 1000),
    )


def build(case: str) -> tuple[Any, Any]:
    import torch

    with torch.device("meta"):
        model = {"vgg11": _vgg11, "squeezenet1_1": _squeezenet1_1, "resnet18": _resnet18}[case]().eval()
        return model, torch.zeros(1, 3, 224, 224)


# ---- child: one case ------------------------------------------------------------------------


def _modes_alone(model: Any, x: Any, dispatch: bool = True) -> None:
    """The machinery alone: pass-through function and dispatch modes (``dispatch``), two global module hooks."""
    from contextlib import nullcontext

    import torch
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class Functions(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            return func(*args, **(kwargs or {}))

    class Operators(TorchDispatchMode):
        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            return False

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            return func(*args, **(kwargs or {}))

    handles = [register_module_forward_pre_hook(lambda m, a: None), register_module_forward_hook(lambda m, a, o: None)]
    try:
        with torch.no_grad(), Operators() if dispatch else nullcontext(), Functions():  # type: ignore[no-untyped-call]
            model(x)
    finally:
        for handle in handles:
            handle.remove()


_LAYERS = ("conv2d", "relu", "relu_", "max_pool2d", "cat", "linear")


def _outputs_only(model: Any, x: Any, shapes: dict[Any, Any]) -> None:
    """The layers' outputs made from remembered shapes in a function mode; every other call passed on."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    layers = {F.conv2d, torch.conv2d, F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_,
              F.max_pool2d, torch.cat, F.linear}

    def spec(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.shape, value.stride(), value.dtype
        if isinstance(value, (list, tuple)):
            return tuple(spec(v) for v in value)
        return value

    class Outputs(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if func not in layers:
                return func(*args, **kwargs)
            key = (func, spec(args), spec(tuple(sorted(kwargs.items()))))
            made = shapes.get(key)
            if made is None:
                out = func(*args, **kwargs)
                shapes[key] = "input" if out is args[0] else (out.shape, out.stride(), out.dtype)
                return out
            if made == "input":
                return args[0]
            return torch.empty_strided(made[0], made[1], dtype=made[2], device="meta")

    with torch.no_grad(), Outputs():
        model(x)


def _without(parts: tuple[str, ...], count: Any) -> Any:
    """``count`` with parts of the default's bookkeeping off: "guard", "bytes", "modules"."""
    from collections.abc import Iterator
    from contextlib import contextmanager

    from pytest_flopbudget.engine import count as engine
    from pytest_flopbudget.engine.capture import dispatch, tally

    @contextmanager
    def no_guard(module: Any, copy_values: bool = False) -> Iterator[list[str]]:
        yield []

    @contextmanager
    def no_modules(module: Any, enter: Any, leave: Any) -> Iterator[list[str]]:
        yield [name for name, _ in tally.submodules(module)]

    def call() -> None:
        kept = engine.guard, dispatch.call_bytes, dispatch.module_hooks
        if "guard" in parts:
            engine.guard = no_guard
        if "bytes" in parts:
            dispatch.call_bytes = lambda *args: None
        if "modules" in parts:
            dispatch.module_hooks = no_modules
        try:
            count()
        finally:
            engine.guard, dispatch.call_bytes, dispatch.module_hooks = kept
    return call


def run_child(case: str, repeat: int) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import pytest_flopbudget.engine.count  # noqa: F401  (the engine, which measure imports on first use)
    from pytest_flopbudget import measure
    from pytest_flopbudget.engine.capture import dispatch

    model, x = build(case)
    with torch.no_grad():
        model(x)  # torch's first use of each meta kernel, outside every figure
    start = time.perf_counter()
    result = measure(model, x)
    first = time.perf_counter() - start

    def bare() -> None:
        with torch.no_grad():
            model(x)

    def flop_counter() -> None:
        with torch.no_grad(), FlopCounterMode(display=False):
            model(x)

    def without_direct_calls() -> None:
        dispatch._DIRECT_ON[0] = False
        try:
            measure(model, x)
        finally:
            dispatch._DIRECT_ON[0] = True

    shapes: dict[Any, Any] = {}
    _outputs_only(model, x, shapes)  # each layer's first call, outside every figure
    default = lambda: measure(model, x)  # noqa: E731
    calls = {"bare": bare, "default": default, "no_direct": without_direct_calls,
             "modes": lambda: _modes_alone(model, x), "function_mode": lambda: _modes_alone(model, x, dispatch=False),
             "outputs_only": lambda: _outputs_only(model, x, shapes), "flop_counter": flop_counter,
             "no_guard": _without(("guard",), default), "no_bytes": _without(("bytes",), default),
             "no_modules": _without(("modules",), default), "none": _without(("guard", "bytes", "modules"), default)}
    timed: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):  # in turn, back to back: a machine whose speed drifts moves all alike
        for name, call in calls.items():
            begin = time.perf_counter()
            call()
            timed[name].append(time.perf_counter() - begin)
    best = {name: min(times) for name, times in timed.items()}
    print(json.dumps({**best, "first": first, "macs": result.macs, "capture": result.capture}), flush=True)


# ---- parent ---------------------------------------------------------------------------------


def main() -> None:
    options = parent_options(__doc__ or "", CASES, 50, run_child)
    if options is None:
        return
    print("| model (batch 1, 224 px) | bare meta ms | default ms | default / bare | no direct calls / bare | modes alone / bare | "
          "function mode alone / bare | outputs only / bare | FlopCounterMode / bare | first count ms | GMACs (published) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for case, r in child_results(__file__, options.cases, options.repeat):  # each in a fresh process
        if isinstance(r, str):
            print(f"| {case} | {r} |")
            continue
        results.append((case, r))
        ratio = {name: f"{r[name] / r['bare']:.2f}x" for name in ("default", "no_direct", "modes", "function_mode", "outputs_only", "flop_counter")}
        print(f"| {case} | {r['bare'] * 1e3:.2f} | {r['default'] * 1e3:.2f} | {ratio['default']} | {ratio['no_direct']} | "
              f"{ratio['modes']} | {ratio['function_mode']} | {ratio['outputs_only']} | {ratio['flop_counter']} | "
              f"{r['first'] * 1e3:.1f} | {r['macs'] / 1e9:.3f} ({PUBLISHED_GMACS[case]}) |", flush=True)
    print("\nWhere the default's time goes (each figure over the bare pass; the variants count incompletely):\n")
    print("| model | default | no guard | no bytes | no modules | none of them | outputs only |")
    print("|---|---|---|---|---|---|---|")
    for case, r in results:
        cells = " | ".join(f"{r[name] / r['bare']:.2f}x" for name in ("default", "no_guard", "no_bytes", "no_modules", "none", "outputs_only"))
        print(f"| {case} | {cells} |")

if __name__ == "__main__":
    main()
