"""Training steps counted on meta: forward, backward and optimizer against hand counts.

Conventions (rules.py): a matmul's backward computes dX = dY W (same MACs as the forward)
only when the input needs a gradient, and dW = dY^T X only when the weight requires grad;
bias gradients are sums (free). Elementwise: one MAC per multiply per element.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import OrderedDict
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as checkpointing

from pytest_flopbudget import measure_train_step
from pytest_flopbudget.engine.capture.training import TrainStepError
from pytest_flopbudget.results.result import PHASES

N, D0, D1, D2 = 6, 5, 7, 3  # batch, widths of a 2-layer MLP


def mlp(d0: int = D0, d1: int = D1, d2: int = D2) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d0, d1), nn.ReLU(), nn.Linear(d1, d2))


@pytest.mark.parametrize("how", ["torch.compile(module)", "module.compile()"])
def test_a_compiled_model_steps_eagerly_with_its_eager_counts(how: str) -> None:
    """A ``torch.compile``d model's training step is counted running eagerly: dynamo compiles no
    graph (seconds of compiling, and under ``-W error`` a dynamo error), and every phase, module
    name included, is the eager model's."""
    from torch._dynamo.utils import counters

    model = mlp()
    eager = measure_train_step(model, torch.randn(N, D0))
    if how == "torch.compile(module)":
        target: nn.Module = torch.compile(model)  # type: ignore[assignment]
    else:
        model.compile()
        target = model
    frames = sum(counters["frames"].values())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        result = measure_train_step(target, torch.randn(N, D0))
    assert sum(counters["frames"].values()) == frames  # nothing compiled
    forward = N * D0 * D1 + N * D1 * D2
    assert result.phases == eager.phases and result.phases["forward"] == forward
    assert result.phase_modules == eager.phase_modules and set(result.by_module) == {"0", "2"}


def test_two_layer_mlp() -> None:
    result = measure_train_step(mlp(), torch.randn(N, D0))
    forward = N * D0 * D1 + N * D1 * D2
    # layer 2: dX (its input, the hidden layer, feeds layer 1's weight) and dW; layer 1: dW only (x needs no grad)
    backward = N * D2 * D1 + N * D2 * D1 + N * D1 * D0
    assert result.phases == {"forward": forward, "backward": backward, "optimizer": 0}
    assert result.macs == forward + backward
    assert result.unpriced == {}
    assert result.by_operator == {"aten::linear": forward, "aten::mm": backward}


def test_square_mlp_step_is_two_and_a_half_forwards() -> None:
    d = 16
    result = measure_train_step(mlp(d, d, d), torch.randn(N, d))
    forward = 2 * N * d * d
    assert result.phases["forward"] == forward
    assert 2 * result.macs == 5 * forward  # 1x forward + 1.5x backward, not the "3x" rule of thumb


def test_frozen_first_layer_is_one_and_a_half_forwards() -> None:
    d = 16
    model = mlp(d, d, d)
    model[0].requires_grad_(False)
    result = measure_train_step(model, torch.randn(N, d))
    forward = 2 * N * d * d
    # nothing upstream of layer 2 needs a gradient: only layer 2's dW = N d d
    assert result.phases["backward"] == N * d * d
    assert 2 * result.macs == 3 * forward
    assert [p.requires_grad for p in model.parameters()] == [False, False, True, True]


def test_input_that_requires_grad_gets_its_gradient() -> None:
    x = torch.randn(N, D0, requires_grad=True)
    result = measure_train_step(mlp(), x)
    backward = 2 * N * D2 * D1 + N * D1 * D0 + N * D1 * D0  # ... plus layer 1's dX
    assert result.phases["backward"] == backward
    assert x.grad is None


def test_a_non_leaf_input_that_requires_grad_gets_its_gradient() -> None:
    """``x * 1.0`` of a leaf that requires grad: the step computes dX as well as dW."""
    leaf = torch.randn(4, 10, requires_grad=True)
    result = measure_train_step(nn.Linear(10, 10), leaf * 1.0)
    linear = 4 * 10 * 10
    assert result.phases == {"forward": linear, "backward": linear + linear, "optimizer": 0}  # dW and dX
    assert leaf.grad is None  # nothing flows back into the caller's graph


class Product(nn.Module):
    """No parameters: the inputs are what is differentiated."""

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (x @ w).relu()


def test_a_model_without_parameters_counts_the_gradients_of_its_inputs() -> None:
    b, k, n = 4, 10, 3
    matmul = b * k * n
    x_only = measure_train_step(Product(), torch.randn(b, k, requires_grad=True), torch.randn(k, n))
    assert x_only.phases == {"forward": matmul, "backward": matmul, "optimizer": 0}  # dX = dY W^T; relu's is free
    both = measure_train_step(
        Product(), torch.randn(b, k, requires_grad=True), torch.randn(k, n, requires_grad=True),
        optimizer=lambda params: torch.optim.AdamW(params),
    )
    assert both.phases == {"forward": matmul, "backward": 2 * matmul, "optimizer": 0}  # dX and dW = X^T dY
    assert any("no parameters" in note and "no optimizer step" in note for note in both.notes)
    with pytest.raises(TrainStepError, match="no parameters and no input requires grad"):
        measure_train_step(Product(), torch.randn(b, k), torch.randn(k, n))


def test_backward_is_attributed_to_the_modules() -> None:
    result = measure_train_step(mlp(), torch.randn(N, D0))
    assert result.phase_modules["forward"] == {"0": N * D0 * D1, "2": N * D1 * D2}
    assert result.phase_modules["backward"] == {"0": N * D1 * D0, "2": 2 * N * D2 * D1}
    assert result.by_module == {"0": 2 * N * D0 * D1, "2": 3 * N * D1 * D2}
    assert result.module_totals() == {"backward/*": N * D1 * D0 + 2 * N * D2 * D1, "forward/*": N * D0 * D1 + N * D1 * D2}


class Checkpointed(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.block = mlp(d, d, d)
        self.head = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(checkpointing.checkpoint(self.block, x, use_reentrant=False))


def test_activation_checkpointing_counts_the_recomputation() -> None:
    d = 8
    plain = measure_train_step(nn.Sequential(mlp(d, d, d), nn.Linear(d, d)), torch.randn(N, d))
    result = measure_train_step(Checkpointed(d), torch.randn(N, d))
    forward = 3 * N * d * d
    backward = 2 * N * d * d + 2 * N * d * d + N * d * d  # head dX dW, block.2 dX dW, block.0 dW
    assert plain.phases["backward"] == backward
    # The backward reruns block.0 (N d d) to recover the saved tensors; it stops early once block.2's
    # inputs are saved again, before block.2's own matmul runs (torch's default early stop).
    assert result.phases == {"forward": forward, "backward": backward + N * d * d, "optimizer": 0}
    assert result.phase_modules["backward"]["block.0"] == N * d * d + N * d * d
    with checkpointing.set_checkpoint_early_stop(False):
        whole = measure_train_step(Checkpointed(d), torch.randn(N, d))
    assert whole.phases["backward"] == backward + 2 * N * d * d  # the whole block reruns


class CheckpointedAttention(nn.Module):
    """Attention (SDPA's fused kernel on meta, as on the CPU) inside a checkpoint."""

    def __init__(self, d: int, heads: int, reentrant: bool) -> None:
        super().__init__()
        self.attention = Attention(d, heads)
        self.reentrant = reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpointing.checkpoint(self.attention, x, use_reentrant=self.reentrant)


@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_attention_inside_a_checkpoint_recomputes_its_forward(reentrant: bool) -> None:
    """The recomputation runs SDPA's fused kernel as the forward did (the backward runs with no torch
    function mode of its own): no CheckpointError, and the recompute costs one forward of the block.
    The non-reentrant checkpoint stops once the tensors are saved again: the output projection's
    input is saved before its matmul, so that matmul is not rerun."""
    b, t, d, h = 2, 10, 32, 4
    attention = b * h * t * t * (d // h + d // h)
    proj = b * t * d * d
    x = torch.randn(b, t, d, requires_grad=True)  # the reentrant checkpoint needs an input that requires grad
    result = measure_train_step(CheckpointedAttention(d, h, reentrant), x)
    assert result.phases["forward"] == 4 * proj + attention
    plain = 2 * 4 * proj + 2 * attention  # every projection dX and dW, the attention's 4 gradient matmuls
    recompute = 4 * proj + attention - (0 if reentrant else proj)
    assert result.phases["backward"] == plain + recompute
    assert result.by_operator["aten::_scaled_dot_product_flash_attention_for_cpu_backward"] == 2 * attention
    assert result.unpriced == {}


class TinyLM(nn.Module):
    def __init__(self, vocab: int, d: int, tied: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.head = nn.Linear(d, vocab, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))


@pytest.mark.parametrize("tied", [False, True])
def test_embeddings(tied: bool) -> None:
    vocab, d, b, t = 50, 8, 2, 5
    ids = torch.randint(0, vocab, (b, t))
    result = measure_train_step(TinyLM(vocab, d, tied), ids, loss=lambda logits: F.cross_entropy(logits.view(-1, vocab), ids.view(-1)))
    head = b * t * d * vocab
    # forward: the lookup is free, the head one matmul; backward: head dW and dX (the embedding table
    # trains, so its output needs a gradient); the embedding's backward is a scatter-add (free)
    assert result.phases == {"forward": head, "backward": 2 * head, "optimizer": 0}
    assert result.unpriced == {}


def test_frozen_embedding_needs_no_gradient_of_its_output() -> None:
    vocab, d, b, t = 50, 8, 2, 5
    model = TinyLM(vocab, d, tied=False)
    model.embed.requires_grad_(False)
    result = measure_train_step(model, torch.randint(0, vocab, (b, t)))
    assert result.phases["backward"] == b * t * d * vocab  # head dW only


class Attention(nn.Module):
    """Separate q, k, v projections, SDPA, an output projection."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).flatten(2))


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_attention_backward(masked: bool, device: str) -> None:
    b, t, d, h = 2, 10, 32, 4
    with torch.device(device):
        model = Attention(d, h)
        x = torch.randn(b, t, d)
        mask = torch.zeros(t, t) if masked else None
    result = measure_train_step(model, x, mask)
    attention = b * h * t * t * (d // h + d // h)  # QK^T + AV
    proj = b * t * d * d  # each of q, k, v, out
    assert result.phases["forward"] == 4 * proj + attention
    # out: dX dW; attention: dP, dV, dQ, dK (2x its forward); q, k, v: dW only (x needs no grad)
    assert result.phases["backward"] == 2 * proj + 2 * attention + 3 * proj
    assert result.phase_modules["backward"] == {"out": 2 * proj, "": 2 * attention, "q": proj, "k": proj, "v": proj}
    assert result.unpriced == {}


class RelativeBias(Attention):
    """Attention with a learned mask (a relative position bias, as in T5, SAM and timm's relpos ViTs)."""

    def __init__(self, d: int, heads: int, t: int) -> None:
        super().__init__(d, heads)
        self.bias = nn.Parameter(torch.zeros(1, heads, t, t))  # 4-d: a 3-d mask keeps the CPU on the math path anyway

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x, self.bias)


class RelativeBias3d(RelativeBias):
    """The same with heads folded into the batch (3-d q, k, v and mask, as timm's SAM ViT): torch 2.14's
    kernel choice answers "flash" for 3-d inputs whatever the mask."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, h, d // h).transpose(1, 2).reshape(b * h, t, d // h)

        bias = self.bias.expand(b, h, t, t).reshape(b * h, t, t)
        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), attn_mask=bias)
        return self.out(y.view(b, h, t, d // h).transpose(1, 2).flatten(2))


@pytest.mark.parametrize("layout", [RelativeBias, RelativeBias3d])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_attention_with_a_learned_mask_takes_the_math_path_as_the_cpu_does(device: str, layout: type[RelativeBias]) -> None:
    """A mask that needs a gradient keeps the CPU off its flash kernel, which has no gradient for the
    mask (the count raised "not differentiable with respect to argument 'attn_mask'"): the step runs
    the math path, whose backward is the two matmuls' gradients and those of its scaling of q and k."""
    b, t, d, h = 2, 10, 32, 4
    with torch.device(device):
        model = layout(d, h, t)
        x = torch.randn(b, t, d)
    result = measure_train_step(model, x)
    attention = b * h * t * t * (d // h + d // h)
    proj = b * t * d * d
    scaling = 2 * b * t * d  # q and k each multiplied by sqrt(scale), one MAC an element
    assert result.phases["forward"] == 4 * proj + attention
    assert result.phases["backward"] == 2 * proj + 2 * attention + scaling + 3 * proj
    assert result.phase_modules["backward"] == {"out": 2 * proj, "": 2 * attention + scaling, "q": proj, "k": proj, "v": proj}
    assert result.by_operator["aten::bmm"] == 2 * attention and result.unpriced == {}


def test_conv_backward() -> None:
    b, c, h, w, k = 2, 3, 8, 8, 3
    model = nn.Sequential(nn.Conv2d(c, 4, k, padding=1), nn.ReLU(), nn.Conv2d(4, 5, k, padding=1))
    result = measure_train_step(model, torch.randn(b, c, h, w))
    conv1 = b * 4 * h * w * c * k * k  # numel(out) * Cin * k * k
    conv2 = b * 5 * h * w * 4 * k * k
    assert result.phases["forward"] == conv1 + conv2
    assert result.phases["backward"] == 2 * conv2 + conv1  # conv2: d input, d weight; conv1: d weight
    assert result.by_operator["aten::convolution_backward"] == 2 * conv2 + conv1


def test_layer_norm_backward() -> None:
    b, d = 4, 6
    model = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))
    result = measure_train_step(model, torch.randn(b, d))
    # forward: linear b d d, the affine weight b d; backward: LN's input and weight gradients multiply
    # by the weight and by x-hat (b d each), the linear's dW (its input needs none)
    assert result.phases == {"forward": b * d * d + b * d, "backward": 2 * b * d + b * d * d, "optimizer": 0}


# ---- the optimizer ------------------------------------------------------------------------------

IMPLEMENTATIONS = [pytest.param({"foreach": False}, id="for-loop"), pytest.param({"foreach": True}, id="foreach"), pytest.param({"fused": True}, id="fused")]


def parameters_of(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    ("make", "per_element"),
    [
        # lerp (exp_avg) + mul, addcmul (exp_avg_sq) + addcdiv (update) + p *= 1 - lr wd
        (lambda p, **kw: torch.optim.AdamW(p, weight_decay=0.05, **kw), 5),
        (lambda p, **kw: torch.optim.AdamW(p, weight_decay=0.0, **kw), 4),
        # Adam's weight decay is a scaled add g += wd p
        (lambda p, **kw: torch.optim.Adam(p, weight_decay=0.1, **kw), 5),
        (lambda p, **kw: torch.optim.Adam(p, amsgrad=True, **kw), 4),  # the max is free
        # p += -lr g: one scaled add
        (lambda p, **kw: torch.optim.SGD(p, lr=0.1, **kw), 1),
        # momentum buf *= m (the gradient is added unscaled), then the update
        (lambda p, **kw: torch.optim.SGD(p, lr=0.1, momentum=0.9, **kw), 2),
        # ... plus weight decay and nesterov's g += m buf
        (lambda p, **kw: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True, **kw), 4),
    ],
    ids=["adamw", "adamw-no-decay", "adam-decay", "adam-amsgrad", "sgd", "sgd-momentum", "sgd-nesterov-decay"],
)
def test_optimizer_step(make: Any, per_element: int, impl: dict) -> None:
    model = mlp()
    optimizer = make(model.parameters(), **impl)
    result = measure_train_step(model, torch.randn(N, D0), optimizer=optimizer)
    assert result.phases["optimizer"] == per_element * parameters_of(model)
    assert result.unpriced == {}
    assert len(optimizer.state) == 0  # the user's optimizer never stepped


def test_optimizer_factory_and_param_groups() -> None:
    model = mlp()
    biases = [model[0].bias, model[2].bias]
    weights = [model[0].weight, model[2].weight]
    groups = [{"params": weights, "weight_decay": 0.05}, {"params": biases, "weight_decay": 0.0}]
    result = measure_train_step(model, torch.randn(N, D0), optimizer=torch.optim.AdamW(groups))
    assert result.phases["optimizer"] == 5 * (D0 * D1 + D1 * D2) + 4 * (D1 + D2)
    by_factory = measure_train_step(model, torch.randn(N, D0), optimizer=lambda params: torch.optim.AdamW(params, weight_decay=0.05))
    assert by_factory.phases["optimizer"] == 5 * parameters_of(model)


def test_frozen_parameters_are_not_updated() -> None:
    model = mlp()
    model[0].requires_grad_(False)
    result = measure_train_step(model, torch.randn(N, D0), optimizer=torch.optim.AdamW(model.parameters()))
    assert result.phases["optimizer"] == 5 * (D1 * D2 + D2)  # parameters without a gradient are skipped


def test_the_users_optimizer_state_is_untouched() -> None:
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), foreach=True)
    model(torch.randn(N, D0)).sum().backward()
    optimizer.step()
    before = optimizer.state_dict()
    snapshot = {k: {n: v.clone() if isinstance(v, torch.Tensor) else v for n, v in s.items()} for k, s in before["state"].items()}
    grads = [p.grad.clone() for p in model.parameters()]
    weights = [p.detach().clone() for p in model.parameters()]
    measure_train_step(model, torch.randn(N, D0), optimizer=optimizer)
    after = optimizer.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for key, state in snapshot.items():
        for name, value in state.items():
            assert torch.equal(after["state"][key][name], value)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert all(torch.equal(p.detach(), w) for p, w in zip(model.parameters(), weights))
    assert all(not p.is_meta for p in model.parameters())


def test_optimizer_over_other_tensors_is_refused() -> None:
    stray = nn.Parameter(torch.zeros(3))
    with pytest.raises(TrainStepError, match="no parameter of the model"):
        measure_train_step(mlp(), torch.randn(N, D0), optimizer=torch.optim.SGD([stray], lr=0.1))


# ---- model state and the loss ------------------------------------------------------------------


def test_model_on_meta_keeps_its_parameters_and_gradients() -> None:
    with torch.device("meta"):
        model = mlp()
    params = list(model.parameters())
    result = measure_train_step(model, torch.randn(N, D0, device="meta"), optimizer=torch.optim.AdamW(model.parameters()))
    assert result.phases["backward"] == 2 * N * D2 * D1 + N * D1 * D0
    assert list(model.parameters()) == params
    assert all(p.grad is None for p in params)


class Boom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("boom")


def test_a_model_that_raises_leaves_everything_as_it_was() -> None:
    model = Boom()
    model.lin.weight.grad = torch.ones(4, 4)
    weight = model.lin.weight
    with pytest.raises(ValueError, match="boom"):
        measure_train_step(model, torch.randn(2, 4))
    assert model.lin.weight is weight and not weight.is_meta
    assert torch.equal(weight.grad, torch.ones(4, 4))


def test_a_failing_loss_leaves_everything_as_it_was() -> None:
    model = mlp()
    weights = list(model.parameters())

    def bad_loss(out: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no loss today")

    with pytest.raises(RuntimeError, match="no loss today"):
        measure_train_step(model, torch.randn(N, D0), loss=bad_loss)
    assert list(model.parameters()) == weights
    assert all(p.grad is None and not p.is_meta for p in weights)


@dataclasses.dataclass
class Output(OrderedDict):
    """Shaped like a transformers ModelOutput: a dict with attribute access."""

    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is not None:
                self[f.name] = getattr(self, f.name)


class WithLabels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(D0, D1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Output:
        logits = self.lin(x)
        loss = None if labels is None else (logits * logits).mean() + F.cross_entropy(logits, labels)
        return Output(logits=logits, loss=loss)


def test_default_loss_is_the_outputs_loss_else_its_sum() -> None:
    x, labels = torch.randn(N, D0), torch.zeros(N, dtype=torch.long)
    with_loss = measure_train_step(WithLabels(), x, labels=labels)
    summed = measure_train_step(WithLabels(), x)
    linear = N * D0 * D1  # forward; the backward's dW costs the same (x needs no grad)
    assert summed.phases == {"forward": linear, "backward": linear, "optimizer": 0}
    # the output's loss: logits * logits (N D1, and 2 N D1 in its backward), a mean (1), cross-entropy (free)
    assert with_loss.phases == {"forward": linear + N * D1 + 1, "backward": linear + 2 * N * D1, "optimizer": 0}


def test_loss_callable_and_its_errors() -> None:
    model = mlp()
    x = torch.randn(N, D0)
    mse = measure_train_step(model, x, loss=lambda out: (out * out).mean())
    # out * out: N D2 multiplies; its backward 2 (dy * out, twice); mean: 1 output element
    assert mse.phases["forward"] == N * D0 * D1 + N * D1 * D2 + N * D2 + 1
    with pytest.raises(TrainStepError, match="not a scalar"):
        measure_train_step(model, x, loss=lambda out: out)
    frozen = mlp().requires_grad_(False)
    with pytest.raises(TrainStepError, match="nothing to differentiate"):
        measure_train_step(frozen, x)


def test_phases_sum_to_the_total() -> None:
    model = mlp()
    result = measure_train_step(model, torch.randn(N, D0), optimizer=torch.optim.AdamW(model.parameters()))
    assert list(result.phases) == list(PHASES)
    assert sum(result.phases.values()) == result.macs
    assert result.counter == "dispatch" and result.mode == "meta"
    assert sum(result.by_module.values()) == result.macs
    assert result.params == parameters_of(model)


def test_batch_norm_and_dropout_in_training_mode() -> None:
    b, c, h, w = 2, 3, 8, 8
    model = nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.1), nn.Flatten(), nn.Linear(4 * h * w, 10))
    running = model[1].running_mean.clone()
    result = measure_train_step(model, torch.randn(b, c, h, w))
    conv, norm, linear = b * 4 * h * w * c * 3 * 3, b * 4 * h * w, b * 4 * h * w * 10
    # dropout is free both ways (its fused kernel; off CUDA torch would multiply by the mask);
    # the norm's input and weight gradients cost its forward each; conv: dW only (x needs no grad)
    assert result.phases == {"forward": conv + norm + linear, "backward": conv + 2 * norm + 2 * linear, "optimizer": 0}
    assert result.unpriced == {}
    assert model.training and torch.equal(model[1].running_mean, running) and model[1].num_batches_tracked == 0


class Caching(nn.Module):
    """Keeps its last activation in a plain attribute, as caches do."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(D0, D1)
        self.cache: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        self.cache.append(y)
        self.last = y
        return y


def test_tensors_cached_in_attributes_are_put_back() -> None:
    model = Caching()
    measure_train_step(model, torch.randn(N, D0))
    assert model.cache == [] and not hasattr(model, "last")
    out = model(torch.randn(N, D0))  # a real forward still works
    assert not out.is_meta and len(model.cache) == 1


def test_transformers_causal_lm_with_labels() -> None:
    transformers = pytest.importorskip("transformers")
    vocab, hidden, inter, layers, heads, tokens = 64, 32, 48, 2, 4, 8
    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, tie_word_embeddings=False,
    )
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    ids = torch.zeros(1, tokens, dtype=torch.long, device="meta")
    result = measure_train_step(model, ids, labels=ids, optimizer=torch.optim.AdamW(model.parameters()))
    assert result.unpriced == {}
    head_dim = hidden // heads
    # per layer: q, k, v, o (T h h each), gate, up (T h i), down (T i h), attention H T T (2 hd); the head T h V
    linears = layers * (4 * tokens * hidden * hidden + 3 * tokens * hidden * inter) + tokens * hidden * vocab
    attention = layers * heads * tokens * tokens * 2 * head_dim
    by_op = result.by_operator
    assert by_op["aten::linear"] == linears and by_op["aten::scaled_dot_product_attention"] == attention
    # the embedding table trains, so every Linear computes dX and dW, and the attention its 4 gradient matmuls
    assert by_op["aten::mm"] == 2 * linears
    assert by_op["aten::_scaled_dot_product_flash_attention_for_cpu_backward"] == 2 * attention
    assert result.phases["optimizer"] == 5 * sum(p.numel() for p in model.parameters())  # AdamW, weight decay 0.01


def test_repr_shows_the_phases() -> None:
    result = measure_train_step(mlp(), torch.randn(N, D0))
    forward, backward = N * D0 * D1 + N * D1 * D2, 2 * N * D2 * D1 + N * D1 * D0
    assert f"forward={forward:,}, backward={backward:,}, optimizer=0" in repr(result)


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(D0, D1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        return y if y.sum().item() > 0 else -y


def test_a_model_that_needs_real_values_says_so() -> None:
    model = DataDependent()
    with pytest.raises(TrainStepError, match=r"counted on the meta device only.*\.item\(\) cannot be called on meta tensors"):
        measure_train_step(model, torch.randn(N, D0))
    assert not model.lin.weight.is_meta
