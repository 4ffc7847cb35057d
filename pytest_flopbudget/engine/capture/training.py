"""Counting one training step on the meta device: forward and loss, backward, one optimizer step.

The step runs for real, but on meta tensors: every parameter of the model is swapped
for a fresh meta parameter with the same ``requires_grad`` (so autograd computes
exactly the gradients a real step computes: none for frozen weights, none for inputs
that need none), buffers and inputs become meta tensors, and the three phases run
inside :func:`pytest_flopbudget.counting.dispatch.capture`, priced by the one registry
(:mod:`pytest_flopbudget.rules`). Nothing is computed and no memory is used.

Afterwards the model holds its own parameters again, with their gradients and
``requires_grad`` flags as before, and everything else :func:`~pytest_flopbudget.counting.state.guard`
restores (tensors cached in attributes, train/eval flags), also when the step raises. The optimizer the user
passes is never stepped: a copy bound to the meta parameters (same class, same
param-group hyperparameters) takes one uncounted step to create its state, then the
counted step, its steady state.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils._pytree as pytree
from torch.nn.parameter import UninitializedTensorMixin  # type: ignore[attr-defined]  # torch's stubs omit it
from torch.overrides import TorchFunctionMode

from pytest_flopbudget.engine import fastmeta
from pytest_flopbudget.engine.capture.checks import AnsweredChecks
from pytest_flopbudget.engine.capture.dispatch import capture
from pytest_flopbudget.engine.capture.tally import Tally, module_hooks
from pytest_flopbudget.engine.capture.trace import output_tensors
from pytest_flopbudget.engine.context import PlainMode, _no_mha_fastpath, parameter_count, run_eagerly
from pytest_flopbudget.engine.errors import NEEDS_VALUES, UNPRICED, check_unpriced
from pytest_flopbudget.engine.memory import Liveness, op_costs
from pytest_flopbudget.engine.memory.liveness import input_tensors, module_state
from pytest_flopbudget.engine.meta import weights_on_meta
from pytest_flopbudget.engine.state import guard
from pytest_flopbudget.results.result import PHASES, FlopResult

__all__ = ["COUNTER", "TrainStepError", "count_train_step"]


COUNTER = "dispatch"  # a training step is always seen by dispatch capture (a trace has no backward)
_MODULE = "pytest_flopbudget.module"  # key in an autograd node's metadata: the module whose forward made it


class TrainStepError(RuntimeError):
    """A training step that cannot be counted; the message names the fix."""

    explains_itself = True  # messages.count_hint adds no generic hint


# ---- parameters, inputs and gradients ----------------------------------------------


@contextmanager
def _parameters_on_meta(model: nn.Module) -> Iterator[dict[int, nn.Parameter]]:
    """Swap every parameter (meta ones too) for a fresh meta parameter with the same ``requires_grad``.

    Yields ``id(original) -> stand-in``; tied parameters stay tied. The originals go back
    on exit, even on error, so their ``.grad`` is never written.
    """
    saved: list[tuple[dict[str, Any], str, nn.Parameter]] = []
    swapped: dict[int, nn.Parameter] = {}
    try:
        for mod in model.modules():
            for name, p in list(mod._parameters.items()):
                if p is None or isinstance(p, UninitializedTensorMixin):
                    continue
                if id(p) not in swapped:
                    empty = torch.empty_strided(p.size(), p.stride(), dtype=p.dtype, device="meta")
                    swapped[id(p)] = nn.Parameter(empty, requires_grad=p.requires_grad)
                saved.append((mod._parameters, name, p))
                mod._parameters[name] = swapped[id(p)]
        yield swapped
    finally:
        for store, name, p in reversed(saved):
            store[name] = p


@contextmanager
def _gradients_kept(model: nn.Module) -> Iterator[None]:
    """Put every parameter's ``.grad`` and ``requires_grad`` back as they were (belt and braces)."""
    params = list(model.parameters())
    state = [(p, p.grad, p.requires_grad) for p in params]
    try:
        yield
    finally:
        for p, grad, flag in state:
            if p.grad is not grad:
                p.grad = grad
            if p.requires_grad != flag:
                p.requires_grad_(flag)


def _meta_input(x: Any) -> Any:
    """A meta stand-in for an input tensor; one that requires grad keeps requiring it.

    A non-leaf input (``x * 1.0`` of a tensor that requires grad) becomes a leaf that requires grad:
    the step computes its gradient, as the real step does to pass it on upstream; the upstream
    operators themselves ran before the call and are not part of it."""
    if not isinstance(x, torch.Tensor):
        return x
    m = x if x.is_meta else torch.empty_strided(x.size(), x.stride(), dtype=x.dtype, device="meta")
    if x.requires_grad:
        m = m.detach().requires_grad_(True)
    return m


class _StrayTensorsOnMeta(PlainMode):
    """A real tensor the code holds itself (a loss closure's targets, a constant in an attribute) meets the
    meta activations: give the operator a meta stand-in of it (CPU scalars mix with meta as they are)."""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if any(t.is_meta for t in tensors) and any(not t.is_meta and t.dim() > 0 for t in tensors):
            args, kwargs = pytree.tree_map(
                lambda t: _meta_input(t).detach() if isinstance(t, torch.Tensor) and not t.is_meta and t.dim() > 0 else t,
                (args, kwargs),
            )
        return func(*args, **kwargs)


# ---- the loss ------------------------------------------------------------------------


_NO_PARAMETERS = (
    "the model has no parameters and no input requires grad, so there is nothing to differentiate: "
    "pass the inputs whose gradient the step computes with requires_grad=True"
)


def _default_loss(output: Any, has_parameters: bool = True) -> torch.Tensor:
    """The output's ``loss`` (a transformers ModelOutput given labels) when it has one, else the sum of
    every floating-point output tensor that requires grad."""
    found = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
    if isinstance(found, torch.Tensor):
        return found
    tensors = [t for t in output_tensors(output) if t.is_floating_point() and t.requires_grad]
    if not tensors:
        raise TrainStepError(
            "the model's output has no tensor that requires grad, so there is nothing to differentiate: "
            "check that some parameters require grad and that the forward does not run under torch.no_grad(), "
            "or pass loss=lambda out: ... returning a scalar"
            if has_parameters else _NO_PARAMETERS
        )
    total = tensors[0].sum()
    for t in tensors[1:]:
        total = total + t.sum()
    return total


def _scalar_loss(output: Any, loss: Callable[[Any], Any] | None, has_parameters: bool = True) -> torch.Tensor:
    value = _default_loss(output, has_parameters) if loss is None else loss(output)
    if not isinstance(value, torch.Tensor):
        raise TrainStepError(f"loss must return a tensor, got {type(value).__name__}")
    if value.numel() != 1:
        raise TrainStepError(
            f"the loss has shape {tuple(value.shape)}, not a scalar; reduce it in loss=, e.g. loss=lambda out: out.mean()"
        )
    if not value.requires_grad:
        raise TrainStepError(
            "the loss does not require grad: no parameter it depends on requires grad, or the forward ran under "
            "torch.no_grad()"
            if has_parameters else _NO_PARAMETERS
        )
    return value.reshape(())


# ---- the optimizer -----------------------------------------------------------------


def _same_optimizer(optimizer: torch.optim.Optimizer, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """A new optimizer of ``optimizer``'s class over ``groups``, with no state and none of its hooks."""
    cls = type(optimizer)
    try:
        accepted = inspect.signature(cls.__init__).parameters
        defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted}
        clone = cls(groups, **defaults)
    except Exception:  # a constructor of another shape: a shallow copy with fresh state and hooks
        clone = cls.__new__(cls)
        clone.__dict__.update({k: v for k, v in optimizer.__dict__.items() if k != "step"})
        clone.state = type(optimizer.state)(dict) if isinstance(optimizer.state, dict) else {}
        for name in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks"):
            setattr(clone, name, OrderedDict())
        clone.param_groups = []
        for group in groups:
            clone.add_param_group(group)
    for new, old in zip(clone.param_groups, optimizer.param_groups):
        new.update({k: v for k, v in old.items() if k != "params"})
    return clone


def _bound_optimizer(optimizer: Any, model: nn.Module, swapped: dict[int, nn.Parameter]) -> torch.optim.Optimizer | None:
    """The optimizer the counted step runs: a copy of the user's bound to the meta parameters, or the
    factory's optimizer over them."""
    if optimizer is None or not swapped:  # a model without parameters has nothing to update
        return None
    if isinstance(optimizer, torch.optim.Optimizer):
        groups = []
        for group in optimizer.param_groups:
            params = []
            for p in group["params"]:
                if id(p) not in swapped:
                    raise TrainStepError(
                        f"the optimizer updates a tensor of shape {tuple(p.shape)} that is no parameter of the model; "
                        "pass an optimizer over the model's parameters, or a factory: optimizer=lambda params: "
                        "torch.optim.AdamW(params)"
                    )
                params.append(swapped[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
        return _same_optimizer(optimizer, groups)
    if callable(optimizer):  # a factory: torch.optim.AdamW, functools.partial(...), a lambda
        built = optimizer(model.parameters())  # the model holds the meta stand-ins now
        if not isinstance(built, torch.optim.Optimizer):
            raise TypeError(f"optimizer= factory returned {type(built).__name__}, expected a torch.optim.Optimizer")
        return built
    raise TypeError(
        f"optimizer= takes a torch.optim.Optimizer or a factory params -> Optimizer, got {type(optimizer).__name__}"
    )


def _create_state(optimizer: torch.optim.Optimizer) -> None:
    """One uncounted step, so the counted one is a steady-state step (Adam's moments, SGD's momentum exist).

    Fused kernels check the device when they create state, and meta is not one of theirs: the state is
    created by the one-tensor path, and the step counters it keeps on the CPU move to meta for the kernel.
    """
    fused = [group.get("fused") for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        if group.get("fused"):
            group["fused"] = False
    try:
        optimizer.step()
    finally:
        for group, flag in zip(optimizer.param_groups, fused):
            if flag is not None:
                group["fused"] = flag
    if any(fused):
        optimizer._need_device_dtype_check_for_fused = False  # type: ignore[attr-defined]  # SGD checks the device on each step until it passes
    for group, flag in zip(optimizer.param_groups, fused):
        if not flag:
            continue
        for p in group["params"]:
            for key, value in list(optimizer.state.get(p, {}).items()):
                if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_meta:
                    optimizer.state[p][key] = value.to(device="meta", dtype=torch.float32)


class _VoidKernelsOnMeta(PlainMode):
    """Skip in-place operators that return nothing (``_fused_adamw_``, ``_fused_sgd_``, the ``_foreach_``
    family) when all their tensors are on meta: there they change no data, nor any shape, and their
    meta kernels (where one exists) run torch's Python decompositions, per parameter (a third of the
    time of a VAR step's count). Argument checks of those kernels are skipped with them. Entered below
    :func:`capture`, which prices them first."""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if not func._schema.returns:
            tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
            if tensors and all(t.is_meta for t in tensors):
                return None
        return func(*args, **kwargs)


# ---- which module a backward operator belongs to ----------------------------------------


class _Stack:
    """The path of the innermost running submodule (forward hooks), "" outside any."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.stack: list[int] = []

    def enter(self, index: int) -> None:
        self.stack.append(index)

    def leave(self, output: Any = None) -> None:
        if self.stack:
            self.stack.pop()

    def top(self) -> str:
        return self.names[self.stack[-1]] if self.stack else ""


class _TagNodes(TorchFunctionMode):
    """Write the running module's path into the autograd node of every output made in the forward.

    ``inner=True`` also tags, at once, the untagged nodes the call made inside itself (what
    :func:`_tag_inner_nodes` does after the forward): a reentrant checkpoint's recomputation builds
    a graph that is differentiated within the backward, before any later walk could reach it."""

    def __init__(self, where: Callable[[], str], inner: bool = False) -> None:
        super().__init__()
        self.where = where
        self.tag_inner = inner

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                fresh = _MODULE not in t.grad_fn.metadata  # type: ignore[operator]  # a dict, stubbed as a method
                t.grad_fn.metadata.setdefault(_MODULE, self.where())  # type: ignore[attr-defined]  # a dict, stubbed as a method
                if self.tag_inner and fresh:
                    _tag_inner_nodes(t.grad_fn)
        return out


def _tag_inner_nodes(root: Any) -> None:
    """Nodes made inside one call (cross_entropy's log_softmax, ...) carry no tag: they get their consumer's."""
    if root is None:
        return
    seen = {root}
    todo = [root]
    while todo:
        node = todo.pop()
        tag = node.metadata.get(_MODULE, "")
        for child, _ in node.next_functions:
            if child is None or child in seen:
                continue
            seen.add(child)
            child.metadata.setdefault(_MODULE, tag)
            todo.append(child)


def _backward_module() -> str:
    node = torch._C._current_autograd_node()
    return "" if node is None else str(node.metadata.get(_MODULE, ""))  # type: ignore[attr-defined]  # a dict, stubbed as a method


# ---- composite operators run as one kernel on meta ---------------------------------------------

_SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def _stand_in(x: Any, keep_last: bool) -> Any:
    if not isinstance(x, torch.Tensor):
        return x
    dims = [min(d, 2) for d in x.shape]
    if keep_last and dims:
        dims[-1] = x.shape[-1]
    # requires_grad as the argument's: the CPU takes its flash kernel only where no mask needs a gradient
    # (the kernel has no gradient for it), the math path otherwise
    return torch.empty(dims, dtype=x.dtype, requires_grad=x.requires_grad and (x.is_floating_point() or x.is_complex()))


class _FusedKernelsOnMeta(TorchFunctionMode):
    """Operators priced as one call in the forward run as one kernel on meta, so their backward is one
    operator too, priced by its rule, and not the backward of a decomposition:

    - SDPA takes the math path on meta, whose backward adds the gradients of its two scaling ``mul``:
      run the kernel the CPU would choose for the same arguments (its fused flash kernel).
    - dropout in training mode decomposes into ``input * mask`` off CUDA, whose backward is a ``mul``
      although the forward's ``dropout`` is free: run ``native_dropout`` (CUDA's kernel), whose
      backward is free like its forward.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = None
        if func is F.scaled_dot_product_attention:
            out = _flash_on_meta(args, kwargs)
        elif func is F.dropout:
            out = _native_dropout_on_meta(args, kwargs)
        return func(*args, **kwargs) if out is None else out


def _native_dropout_on_meta(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    call = dict(zip(("input", "p", "training", "inplace"), args), **kwargs)
    x, p = call.get("input"), call.get("p", 0.5)
    if not isinstance(x, torch.Tensor) or not x.is_meta or not call.get("training", True) or call.get("inplace"):
        return None
    if not isinstance(p, (int, float)) or not 0 < p < 1:
        return None
    return torch.native_dropout(x, p, True)[0]


def _flash_on_meta(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    call = dict(zip(_SDPA_ARGS, args), **kwargs)
    q, k, v = call.get("query"), call.get("key"), call.get("value")
    if not all(isinstance(t, torch.Tensor) and t.is_meta for t in (q, k, v)) or call.get("enable_gqa"):
        return None
    flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if flash is None:
        return None
    mask, dropout, causal, scale = call.get("attn_mask"), call.get("dropout_p", 0.0), call.get("is_causal", False), call.get("scale")
    if isinstance(mask, torch.Tensor) and mask.requires_grad:
        # the flash kernel has no gradient for a mask: the CPU runs the math path (torch 2.14 answers
        # "flash" for 3-d inputs here all the same, then runs SDPA on them made 4-d, where it does not)
        return None
    try:
        from torch.nn.attention import SDPBackend

        choice = torch.ops.aten._fused_sdp_choice(
            _stand_in(q, True), _stand_in(k, True), _stand_in(v, True), _stand_in(mask, False), dropout, causal, scale=scale
        )
    except Exception:  # no choice to follow: the math path, as torch takes on meta
        return None
    if int(choice) != int(SDPBackend.FLASH_ATTENTION.value):
        return None
    # outside the try: a checkpoint's recomputation stops early by raising from inside the kernel
    out: torch.Tensor = flash(q, k, v, dropout, causal, attn_mask=mask, scale=scale)[0]
    return out


# ---- activation checkpointing: the recomputation runs under the forward's function modes --------------


@contextmanager
def _recomputation_like_forward(modes: Callable[[], list[TorchFunctionMode]]) -> Iterator[None]:
    """Run checkpointed code recomputed in the backward under ``modes()``, as its forward ran.

    The autograd engine runs the backward with an empty torch-function mode stack, so a
    checkpointed layer's recomputation would take SDPA's math path on meta where its forward
    took the fused kernel (:class:`_FusedKernelsOnMeta`), and torch's checkpoint refuses the
    mismatch of saved tensors (``CheckpointError``). The two places where torch reruns the
    checkpointed function (the non-reentrant unpack hook's runner, the reentrant
    ``CheckpointFunction.backward``) are wrapped for the backward phase only, and put back after.
    """
    import torch.utils.checkpoint as checkpointing

    def under_modes(run: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with ExitStack() as stack:
                for mode in modes():
                    stack.enter_context(mode)
                return run(*args, **kwargs)

        return wrapped

    patched: list[tuple[Any, str, Any]] = []
    runner = getattr(checkpointing, "_run_fn_with_dynamo_disabled", None)
    if callable(runner):
        patched.append((checkpointing, "_run_fn_with_dynamo_disabled", runner))
    function = getattr(checkpointing, "CheckpointFunction", None)
    if function is not None and "backward" in vars(function):
        patched.append((function, "backward", vars(function)["backward"]))
    try:
        for owner, name, original in patched:
            if isinstance(original, staticmethod):
                setattr(owner, name, staticmethod(under_modes(original.__func__)))
            else:
                setattr(owner, name, under_modes(original))
        yield
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


# ---- the step ---------------------------------------------------------------------------


def _merge(tallies: dict[str, Tally]) -> Tally:
    total = Tally(capture="dispatch")
    for tally in tallies.values():
        total.macs += tally.macs
        total.notes.extend(note for note in tally.notes if note not in total.notes)
        for store, part in ((total.by_module, tally.by_module), (total.by_operator, tally.by_operator), (total.unpriced, tally.unpriced)):
            for key, value in part.items():
                store[key] = store.get(key, 0) + value
    return total


def _run_step(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], loss: Callable[[Any], Any] | None, optimizer: Any,
    live: Liveness | None = None,
) -> tuple[dict[str, Tally], list[str]]:
    """The three phases on meta, each in its own capture; the model as it was on exit."""
    tallies: dict[str, Tally] = {}
    with ExitStack() as stack:
        lost = stack.enter_context(guard(model))  # tensors cached in attributes, train/eval flags, added attributes
        stack.enter_context(_gradients_kept(model))
        swapped = stack.enter_context(_parameters_on_meta(model))
        stack.enter_context(weights_on_meta(model))
        stack.enter_context(_no_mha_fastpath())
        stack.enter_context(torch.enable_grad())
        step_args, step_kwargs = pytree.tree_map(_meta_input, (args, kwargs))
        bound = _bound_optimizer(optimizer, model, swapped)
        if live is not None:  # peak memory: weights and inputs exist from the start
            live.seed(module_state(model), "weights")
            live.seed(input_tensors((step_args, step_kwargs)), "activations")

        modules = _Stack()
        checks = AnsweredChecks()  # transformers' packed-sequence check and its like, answered on meta
        with module_hooks(model, modules.enter, modules.leave) as names:
            modules.names.extend(names)
            # fastmeta's mode, entered first, makes the outputs of the common operators below the other modes
            with fastmeta.meta_mode(False), _StrayTensorsOnMeta(), checks, _FusedKernelsOnMeta(), _TagNodes(modules.top), \
                    capture(model, live=live) as tallies["forward"]:
                value = _scalar_loss(model(*step_args, **step_kwargs), loss, bool(swapped))
            _tag_inner_nodes(value.grad_fn)
            if live is not None:
                live.category = "gradients"
            with fastmeta.meta_mode(False), _StrayTensorsOnMeta(), checks, _FusedKernelsOnMeta(), \
                    _recomputation_like_forward(lambda: [_FusedKernelsOnMeta(), _TagNodes(modules.top, inner=True)]), \
                    capture(model, where=_backward_module, live=live) as tallies["backward"]:
                value.backward()
        del value
        if bound is None:
            tallies["optimizer"] = Tally()
        else:
            _create_state(bound)
            if live is not None:  # a steady-state step: the optimizer's state exists from the start
                device = next((p.device for p in model.parameters()), None)
                live.add_throughout(
                    (v for state in bound.state.values() for v in state.values()
                     if isinstance(v, torch.Tensor) and v.device == device), "optimizer")
                live.category = "optimizer"
            with fastmeta.meta_mode(False), _VoidKernelsOnMeta(), capture(model, live=live) as tallies["optimizer"]:
                bound.step()
    lost.extend(checks.notes())
    if optimizer is not None and not swapped:
        lost.append("the model has no parameters: no optimizer step is counted (optimizer 0)")
    return tallies, lost


def _needs_real_values(exc: Exception) -> TrainStepError | None:
    """The error to raise instead when the step failed because the model needs real values on meta."""
    text = str(exc).strip()
    if isinstance(exc, TrainStepError) or not any(words in text.lower() for words in NEEDS_VALUES):
        return None
    first = text.splitlines()[0] if text else ""
    return TrainStepError(
        f"a training step is counted on the meta device only, and this model needs real values there "
        f"({type(exc).__name__}: {first}); keep its forward free of data-dependent Python control flow "
        "(.item(), branches on tensor values), or budget its forward pass with flops(model, ...) instead"
    )


def count_train_step(
    model: nn.Module,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    loss: Callable[[Any], Any] | None = None,
    optimizer: Any = None,
    unpriced: str = "fail",
    memory: bool = False,
) -> FlopResult:
    """MACs of one training step of ``model`` on ``model(*args, **kwargs)``, counted on meta.

    ``loss(output) -> scalar`` (default: the output's ``loss``, else the sum of the
    output); ``optimizer``: a ``torch.optim.Optimizer`` over the model's parameters
    (copied, never stepped) or a factory ``params -> Optimizer``; ``None`` counts no
    optimizer step. The result's ``phases`` maps "forward" (forward and loss),
    "backward" and "optimizer" to their MACs; ``phase_modules`` holds each phase's
    per-module MACs. ``unpriced``: as for :func:`~pytest_flopbudget.counting.count`, a costly
    operator without a rule fails the count (``"fail"``) or is noted (``"warn"``). ``memory=True`` also
    measures the step's peak memory (weights, activations autograd saves, gradients, the optimizer's
    steady-state state; see docs/memory.md).
    """
    if unpriced not in UNPRICED:
        raise ValueError(f"unknown unpriced policy {unpriced!r}; choose one of {', '.join(UNPRICED)}")
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"train_step needs the torch.nn.Module whose parameters are trained, got {type(model).__name__}"
        )
    try:
        live = Liveness() if memory else None
        with run_eagerly(None, model):
            tallies, lost = _run_step(model, args, dict(kwargs or {}), loss, optimizer, live)
    except Exception as exc:
        replacement = _needs_real_values(exc)
        if replacement is None:
            raise
        raise replacement from exc
    total = _merge(tallies)
    notes = list(lost) + total.notes
    check_unpriced(total.unpriced, unpriced, notes)
    return FlopResult(
        macs=total.macs,
        params=parameter_count(model),
        by_module=total.by_module,
        by_operator=total.by_operator,
        unpriced=total.unpriced,
        counter=COUNTER,
        mode="meta",
        phases={phase: tallies[phase].macs for phase in PHASES},
        phase_modules={phase: dict(tallies[phase].by_module) for phase in PHASES},
        notes=tuple(notes),
        capture="dispatch",
        costs=tuple(cost for phase in PHASES for cost in op_costs(tallies[phase].costs, phase)),
        **(live.state() if live is not None else {}),
    )
