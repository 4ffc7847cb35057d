"""Bytes moved and peak memory, against hand counts from shapes and against torch.profiler's memory events."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils.checkpoint import checkpoint

from pytest_flopbudget import measure
from pytest_flopbudget.engine.capture.training import count_train_step

F32 = 4
COUNTERS = ("torchprofile", "flop_counter")


class Fn(nn.Module):
    def __init__(self, fn):  # type: ignore[no-untyped-def]
        super().__init__()
        self.fn = fn

    def forward(self, *args):  # type: ignore[no-untyped-def]
        return self.fn(*args)


# ---- bytes moved -----------------------------------------------------------------------------


@pytest.mark.parametrize("counter", COUNTERS)
def test_linear_reads_input_weight_bias_writes_output(counter: str) -> None:
    b, n_in, n_out = 3, 8, 5
    r = measure.using(counter=counter)(nn.Linear(n_in, n_out), torch.zeros(b, n_in))
    assert r.bytes_moved == F32 * (b * n_in + n_out * n_in + n_out) + F32 * b * n_out
    (cost,) = r.costs
    assert (cost.operator, cost.dtype, cost.macs, cost.calls) == ("aten::linear", "float32", b * n_in * n_out, 1)
    assert cost.bytes_read == F32 * (b * n_in + n_out * n_in + n_out)
    assert r.intensity == 2 * b * n_in * n_out / r.bytes_moved


@pytest.mark.parametrize("counter", COUNTERS)
def test_bf16_linear_moves_two_bytes_an_element(counter: str) -> None:
    model = nn.Linear(16, 4, bias=False).to(torch.bfloat16)
    r = measure.using(counter=counter)(model, torch.zeros(2, 16, dtype=torch.bfloat16))
    assert r.bytes_moved == 2 * (2 * 16 + 16 * 4 + 2 * 4)
    assert r.bytes_by_dtype == {"bfloat16": r.bytes_moved}


@pytest.mark.parametrize("counter", COUNTERS)
def test_conv_reads_input_and_kernel_writes_output(counter: str) -> None:
    n, c, h, w, o, k = 2, 3, 10, 10, 4, 3
    r = measure.using(counter=counter)(nn.Conv2d(c, o, k), torch.zeros(n, c, h, w))
    out = n * o * (h - k + 1) * (w - k + 1)
    assert r.bytes_moved == F32 * (n * c * h * w + o * c * k * k + o + out)
    assert r.bytes_by_category == {"conv": r.bytes_moved}


@pytest.mark.parametrize("counter", COUNTERS)
def test_sdpa_reads_q_k_v_writes_output(counter: str) -> None:
    b, heads, length, d = 2, 3, 7, 8
    q = torch.zeros(b, heads, length, d)
    r = measure.using(counter=counter)(Fn(F.scaled_dot_product_attention), q, q.clone(), q.clone())
    assert r.bytes_moved == F32 * 4 * b * heads * length * d  # q, k, v read; the output written
    assert r.bytes_by_category == {"attention": r.bytes_moved}


@pytest.mark.parametrize("counter", COUNTERS)
def test_layer_norm_reads_input_and_affine_writes_output(counter: str) -> None:
    b, length, d = 2, 5, 16
    r = measure.using(counter=counter)(nn.LayerNorm(d), torch.zeros(b, length, d))
    assert r.bytes_moved == F32 * (b * length * d + 2 * d) + F32 * b * length * d


@pytest.mark.parametrize("counter", COUNTERS)
def test_elementwise_chain_views_free_in_place_touches_once(counter: str) -> None:
    n = 24

    def chain(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = torch.relu(x * y + y)  # mul reads x, y; add reads the product and y; relu reads and writes n each
        z.add_(x)  # in place: reads z and x, writes z
        return z.view(4, 6).t()  # views: nothing moved

    r = measure.using(counter=counter)(Fn(chain), torch.zeros(n), torch.zeros(n))
    assert r.bytes_moved == F32 * n * ((2 + 1) + (2 + 1) + (1 + 1) + (2 + 1))
    assert {c.operator for c in r.costs} == {"aten::mul", "aten::add", "aten::relu", "aten::add_"}


def test_flatten_of_a_contiguous_tensor_is_a_view_of_a_transposed_one_a_copy() -> None:
    """flatten/unflatten (composites whose output may alias the input) move what their pieces move:
    nothing where they are views, the copy (``clone``; then ``_unsafe_view``, a view) where the input
    is not contiguous. The same on every torch (2.9 also has a Dimname overload of ``transpose``,
    which must not take an int dimension)."""

    def view_then_copy(x: torch.Tensor) -> torch.Tensor:
        y = x.flatten(1).unflatten(1, (3, 4))  # views
        return y.transpose(1, 2).flatten(1)  # a copy of 2 * 12 elements

    r = measure(Fn(view_then_copy), torch.zeros(2, 3, 4))
    assert r.bytes_moved == F32 * 2 * 12 * 2
    assert {c.operator for c in r.costs} == {"aten::clone"}


def test_a_str_parameter_takes_no_int() -> None:
    from pytest_flopbudget.engine.capture.dispatch import _bind

    x = torch.zeros(2, 3)
    schema = torch.ops.aten.transpose.int._schema
    assert _bind(schema, (x, 0, 1), {}) == [x, 0, 1]
    dimname = getattr(torch.ops.aten.transpose, "Dimname", None)
    if dimname is not None:
        assert _bind(dimname._schema, (x, 0, 1), {}) is None


@pytest.mark.parametrize("counter", COUNTERS)
def test_embedding_reads_the_rows_it_gathers(counter: str) -> None:
    vocab, d, b, length = 1000, 16, 2, 5
    r = measure.using(counter=counter)(nn.Embedding(vocab, d), torch.zeros(b, length, dtype=torch.long))
    rows = F32 * b * length * d
    assert r.bytes_moved == 8 * b * length + rows + rows  # indices, the rows read, the output written
    (cost,) = r.costs
    assert cost.dtype == "float32"


def test_bytes_by_module_and_category_sum_to_the_total() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    r = measure(model, torch.zeros(2, 8))
    assert r.bytes_by_module == {
        "0": F32 * (16 + 128 + 16 + 32), "1": F32 * (32 + 32), "2": F32 * (32 + 64 + 4 + 8),
    }
    assert sum(r.bytes_by_category.values()) == sum(r.bytes_module_totals().values()) == r.bytes_moved


def test_training_step_records_bytes_per_phase() -> None:
    model = nn.Linear(8, 4)
    r = count_train_step(model, (torch.zeros(2, 8),))
    phases = {c.phase for c in r.costs}
    assert phases == {"forward", "backward"}
    forward = [c for c in r.costs if c.phase == "forward" and c.operator == "aten::linear"]
    assert forward[0].bytes_read == F32 * (16 + 32 + 4)
    assert sum(c.total_macs for c in r.costs) == r.macs


def test_identical_calls_merge() -> None:
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(3)])
    r = measure.using(counter="flop_counter")(model, torch.zeros(1, 8))
    assert [(c.module, c.calls) for c in r.costs] == [("0", 1), ("1", 1), ("2", 1)]  # modules differ
    r = measure.using(counter="flop_counter")(Fn(lambda x: x.exp().exp().exp()), torch.zeros(4))
    assert [(c.operator, c.calls, c.bytes_read) for c in r.costs] == [("aten::exp", 3, 16)]


# ---- peak memory ------------------------------------------------------------------------------------


def _mlp(n_in: int = 32, hidden: int = 64, n_out: int = 16) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def _param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.mark.parametrize("counter", COUNTERS)
def test_mlp_peak_under_no_grad(counter: str) -> None:
    b, n_in, hidden, n_out = 4, 32, 64, 16
    model, x = _mlp(n_in, hidden, n_out), torch.zeros(b, n_in)
    r = measure.using(counter=counter, memory=True)(model, x)
    weights = _param_bytes(model)
    # weights and input; fc1's output and ReLU's both live while ReLU runs; fc1's is freed before fc2
    assert r.peak_bytes == weights + F32 * b * n_in + 2 * F32 * b * hidden
    assert r.peak_at == ("1", "aten::relu")
    assert r.peak_split == {"weights": weights, "activations": F32 * (b * n_in + 2 * b * hidden), "gradients": 0, "optimizer": 0}
    assert r.peak_by_module["2"] == weights + F32 * (b * n_in + b * hidden + b * n_out)
    assert r.memory_timeline == (
        weights + F32 * (b * n_in + b * hidden),
        weights + F32 * (b * n_in + 2 * b * hidden),
        weights + F32 * (b * n_in + b * hidden + b * n_out),
    )


def test_mlp_training_step_with_adamw_peak() -> None:
    b, n_in, hidden, n_out = 2, 8, 16, 4
    model, x = _mlp(n_in, hidden, n_out), torch.zeros(b, n_in)
    r = count_train_step(model, (x,), optimizer=lambda p: torch.optim.AdamW(p), memory=True)
    weights = _param_bytes(model)
    largest = F32 * n_in * hidden
    # At AdamW's update of fc1.weight (the largest tensor, updated first): weights, the input, every
    # gradient, both moments of every parameter, and its step's two temporaries sqrt(v) and sqrt(v)/c.
    assert r.peak_bytes == weights + F32 * b * n_in + weights + 2 * weights + 2 * largest
    assert r.peak_at == ("", "aten::div")
    assert r.peak_split == {
        "weights": weights, "activations": F32 * b * n_in, "gradients": weights, "optimizer": 2 * weights + 2 * largest,
    }
    assert model.weight.grad is None if hasattr(model, "weight") else True


def test_attention_peak_holds_scores_and_probabilities() -> None:
    b, heads, length, d = 1, 2, 16, 8

    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (q @ k.transpose(-2, -1)).softmax(-1) @ v

    q = torch.zeros(b, heads, length, d)
    r = measure.using(counter="flop_counter", memory=True)(Fn(attention), q, q.clone(), q.clone())
    x, s = F32 * b * heads * length * d, F32 * b * heads * length * length
    # softmax: q, k, v, the scores and the probabilities; then the scores are freed before the output
    assert r.peak_bytes == 3 * x + max(2 * s, s + x)
    assert r.peak_at == ("", "aten::_softmax")


def _blocks(d: int, n: int) -> nn.Module:
    return nn.Sequential(*[nn.Sequential(nn.Linear(d, d), nn.GELU()) for _ in range(n)])


class _Checkpointed(nn.Module):
    def __init__(self, body: nn.Module, preserve_rng_state: bool = True) -> None:
        super().__init__()
        self.body = body
        self.preserve_rng_state = preserve_rng_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.body:
            x = checkpoint(block, x, use_reentrant=False, preserve_rng_state=self.preserve_rng_state)
        return x


def test_checkpointing_lowers_the_training_peak() -> None:
    d, b, n = 64, 32, 4
    plain = _blocks(d, n)
    x = torch.zeros(b, d)
    full = count_train_step(plain, (x,), memory=True)
    ckpt = count_train_step(_Checkpointed(_blocks(d, n)), (x,), memory=True)
    assert full.macs < ckpt.macs  # the recomputed forwards
    assert ckpt.peak_bytes is not None and full.peak_bytes is not None
    weights, act = _param_bytes(plain), F32 * b * d
    # Without checkpointing autograd keeps, per block, the Linear's input and the GELU's (the Linear's
    # output): after the forward, the input, 2 tensors per block and the output are live.
    assert full.peak_bytes >= weights + act + 2 * n * act
    # With it, only the block inputs are kept through the forward, and one block's recompute in the backward.
    assert ckpt.peak_bytes < full.peak_bytes


# ---- against torch.profiler's memory events on a real CPU run ---------------------------------------


def _profiled_peak(step) -> int:  # type: ignore[no-untyped-def]
    """The most bytes allocated at once during ``step()`` above what existed before, from the allocator's
    events as torch.profiler records them (profile_memory=True)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def test_no_grad_forward_equals_the_profiler() -> None:
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.LayerNorm(64), nn.Linear(64, 16)), torch.randn(8, 32)
    with torch.no_grad():
        real = _profiled_peak(lambda: model(x))
    r = measure.using(counter="flop_counter", memory=True)(model, x)
    assert r.peak_bytes == real + _param_bytes(model) + F32 * x.numel()


def test_training_step_equals_the_profiler() -> None:
    torch.manual_seed(0)
    model, x = _mlp(32, 64, 16), torch.randn(8, 32)
    opt = torch.optim.AdamW(model.parameters())
    model(x).sum().backward()
    opt.step()  # the state exists: the profiled step is a steady-state one
    model.zero_grad(set_to_none=True)

    def step() -> None:
        loss = model(x).sum()
        loss.backward()
        del loss
        opt.step()

    real = _profiled_peak(step)
    r = count_train_step(model, (x,), optimizer=lambda p: torch.optim.AdamW(p), memory=True)
    before = _param_bytes(model) * 3 + F32 * x.numel()  # weights, two moments, the input
    # Equal but for the 0-dim CPU tensors torch makes from Python numbers for the single-tensor AdamW's
    # scalar arguments on a real CPU run (wrapped numbers: 4 or 8 bytes, a few live at once). They are no
    # operator's output, so no dispatch capture sees them, and no accelerator holds them.
    assert 0 <= real + before - r.peak_bytes <= 16


def test_checkpointed_training_step_equals_the_profiler() -> None:
    # preserve_rng_state=False: by default each checkpointed call keeps a copy of the CPU random generator's
    # state (torch.get_rng_state(), 5,056 bytes), made outside any operator, so no dispatch capture sees it
    # (host memory, never an accelerator's): with it the real run's peak is that much higher.
    torch.manual_seed(0)
    model, x = _Checkpointed(_blocks(32, 3), preserve_rng_state=False), torch.randn(8, 32)

    def step() -> None:
        loss = model(x).sum()
        loss.backward()

    real = _profiled_peak(step)
    r = count_train_step(model, (x,), memory=True)
    assert r.peak_bytes == real + _param_bytes(model) + F32 * x.numel()
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("counter", COUNTERS)
def test_generation_loop_bytes_add_up_per_step(counter: str) -> None:
    layer, steps = nn.Linear(8, 8), 3

    def generate(x: torch.Tensor) -> torch.Tensor:
        for _ in range(steps):
            x = layer(x)
        return x

    r = measure.using(counter=counter, memory=True)(generate, torch.zeros(1, 8))
    assert r.bytes_moved == steps * F32 * (8 + 64 + 8 + 8)
    assert sum(c.calls for c in r.costs) == steps
    # weights, the input, and two step outputs at once (the next is made before the last is dropped)
    assert r.peak_bytes == F32 * (64 + 8) + F32 * 8 + 2 * F32 * 8
