"""Models people ship, built from hand-written tiny configs of transformers 5 (nothing downloaded).

Every count is checked against a hand formula from the config: the matmul, convolution and
attention terms (conventions.published_macs), and both counters on the same totals.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from test_state import assert_deep_equal, deep_state

from pytest_flopbudget import measure
from pytest_flopbudget.engine.generation import prefill_and_decode

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.filterwarnings("ignore")

COUNTERS = ["torchprofile", "flop_counter"]
V, H, I, L = 64, 32, 48, 2  # vocab, hidden, intermediate, layers
HEADS, KV_HEADS = 4, 2
HEAD_DIM = H // HEADS
T = 10  # prompt tokens


def build(config_class: type, model_class: type, meta: bool, **extra: object) -> torch.nn.Module:
    config = config_class(
        vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=L, num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS, max_position_embeddings=64, **extra,
    )
    torch.manual_seed(0)
    with warnings.catch_warnings(), torch.device("meta" if meta else "cpu"):
        warnings.simplefilter("ignore")
        return model_class(config).eval()


def attention_projections(tokens: int) -> int:
    """q and o: tokens*H*H each; k and v: tokens*H*(KV_HEADS*HEAD_DIM) each."""
    return tokens * (2 * H * H + 2 * H * KV_HEADS * HEAD_DIM)


def attention(queries: int, keys: int) -> int:
    """QK^T + AV over every query head: HEADS * queries * keys * (HEAD_DIM + HEAD_DIM)."""
    return HEADS * queries * keys * 2 * HEAD_DIM


def ids(n: int = T, meta: bool = False) -> torch.Tensor:
    return torch.randint(1, V, (1, n), device="meta" if meta else "cpu")


# ---- mixture of experts: transformers' default experts path (torch._grouped_mm) ----------------

EXPERTS, TOP_K = 4, 2


def mixtral(meta: bool) -> torch.nn.Module:
    return build(transformers.MixtralConfig, transformers.MixtralForCausalLM, meta, num_local_experts=EXPERTS, num_experts_per_tok=TOP_K)


def mixtral_macs(tokens: int) -> int:
    router = tokens * H * EXPERTS
    experts = tokens * TOP_K * (H * 2 * I + I * H)  # each routed token: gate_up [H -> 2I], down [I -> H]
    lm_head = tokens * H * V
    return L * (attention_projections(tokens) + attention(tokens, tokens) + router + experts) + lm_head


@pytest.mark.parametrize("meta", [True, False], ids=["meta-built", "real-weights"])
@pytest.mark.parametrize("counter", COUNTERS)
def test_mixtral_moe_counts_tokens_times_top_k_experts(counter: str, meta: bool) -> None:
    result = measure.using(counter=counter)(mixtral(meta), ids(meta=meta))
    assert result.mode == "meta" and not result.notes
    assert result.published_macs == mixtral_macs(T)
    experts = L * T * TOP_K * (H * 2 * I + I * H)
    assert result.by_operator["aten::_grouped_mm"] == experts
    assert result.unpriced == {}


def test_mixtral_counters_agree_to_the_mac() -> None:
    trace, dispatch = (measure.using(counter=c)(mixtral(False), ids()) for c in COUNTERS)
    assert trace.macs == dispatch.macs and trace.by_module == dispatch.by_module
    assert (trace.capture, dispatch.capture) == ("trace", "dispatch")


# ---- generation ----------------------------------------------------------------------------------

NEW = 4  # new tokens: one prefill, NEW - 1 decode steps


def llama(meta: bool) -> torch.nn.Module:
    return build(transformers.LlamaConfig, transformers.LlamaForCausalLM, meta, pad_token_id=0, eos_token_id=None, bos_token_id=None)


def mlp(tokens: int) -> int:
    return tokens * 3 * H * I  # gate, up, down


def generation_macs(prompt: int, new: int) -> int:
    """Prefill over the prompt, then new-1 one-token steps; step i attends to prompt + i keys;
    logits of the last position only (a H x V head once per forward)."""
    prefill = L * (attention_projections(prompt) + attention(prompt, prompt) + mlp(prompt)) + H * V
    steps = sum(L * (attention_projections(1) + attention(1, prompt + i) + mlp(1)) + H * V for i in range(1, new))
    return prefill + steps


def test_generate_with_real_weights_counts_with_the_default_settings() -> None:
    model = llama(False)
    prompt = ids()
    result = measure(model.generate, prompt, max_new_tokens=NEW, do_sample=False)
    assert result.published_macs == generation_macs(T, NEW)
    assert result.capture == "dispatch" and any("a generate method" in note for note in result.notes)
    assert not any("trace failed" in note for note in result.notes)  # the trace never runs: straight to dispatch
    assert not result.unpriced


@pytest.mark.parametrize("counter", COUNTERS)
def test_prefill_and_decode_counts_a_meta_built_llm_like_generate(counter: str) -> None:
    model = llama(True)
    result = measure.using(counter=counter, mode="meta")(prefill_and_decode(model, NEW), ids(meta=True))
    assert result.published_macs == generation_macs(T, NEW)
    assert result.mode == "meta" and not result.unpriced


def test_prefill_and_decode_matches_generate_and_leaves_the_model_alone() -> None:
    model = llama(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prompt = ids()
    recipe = measure(prefill_and_decode(model, NEW), prompt)  # real weights, counted on meta
    real = measure(model.generate, prompt, max_new_tokens=NEW, do_sample=False)
    assert recipe.mode == "meta" and recipe.published_macs == real.published_macs
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_prefill_and_decode_wants_a_positive_step_count() -> None:
    with pytest.raises(ValueError, match="new_tokens must be a positive integer"):
        prefill_and_decode(llama(True), 0)


# ---- recurrent scans: Mamba's per-step selective scan (its pure-PyTorch path) --------------------

STATE, CONV = 16, 4


def mamba() -> torch.nn.Module:
    config = transformers.MambaConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, state_size=STATE, conv_kernel=CONV, use_mambapy=False)
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        return transformers.MambaForCausalLM(config).eval()


def mamba_macs(tokens: int) -> int:
    inner, rank = 2 * H, math.ceil(H / 16)  # expand 2, dt rank ceil(H / 16)
    per_layer = (
        tokens * H * 2 * inner  # in_proj
        + inner * (tokens + CONV - 1) * CONV  # depthwise causal conv, padded by CONV - 1, then cut
        + tokens * inner * (rank + 2 * STATE)  # x_proj -> dt, B, C
        + inner * rank * tokens  # dt_proj.weight @ dt
        + tokens * inner * STATE  # scan: one state[inner, N] @ C[N] per step
        + tokens * inner * H  # out_proj
    )
    return L * per_layer + tokens * H * V


def _tracer_keeps_sizes_in_int_lists() -> bool:
    """Whether TorchScript tracing passes a size read while tracing on as an int-list argument, as in
    Mamba's causal convolution (``padding=weight.shape[-1] - 1``). torch 2.9's tracer turns that traced
    size into an empty list (the convolution then refuses ``padding=[]``); later versions keep it."""
    def conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv1d(x, w, padding=w.shape[-1] - 1)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.trace(conv, (torch.zeros(1, 1, 3), torch.zeros(1, 1, 2)))
    except RuntimeError:
        return False
    return True


TRACES_MAMBA = _tracer_keeps_sizes_in_int_lists()


def test_mamba_scan_counts_exactly_with_both_counters() -> None:
    model, x = mamba(), ids(meta=True)
    trace, dispatch = (measure.using(counter=c)(model, x) for c in COUNTERS)
    # Where the tracer cannot trace Mamba's convolution (torch 2.9), the default counter falls back to
    # the dispatch capture, with a note saying why, and the count is the same.
    assert trace.capture == ("trace" if TRACES_MAMBA else "dispatch") and trace.published_macs == mamba_macs(T)
    if not TRACES_MAMBA:
        assert any("the trace failed" in note and "padding" in note for note in trace.notes), trace.notes
    assert dispatch.macs == trace.macs


@pytest.mark.parametrize(
    "limit, value, says",
    [
        ("TRACE_OP_LIMIT", 200, "more than 200 operators ran while tracing"),
        ("TRACE_CALL_LIMIT", 50, "one module call ran more than 50 operators itself while tracing"),
    ],
)
@pytest.mark.skipif(not TRACES_MAMBA, reason="this torch's tracer cannot trace Mamba's convolution (a traced size as padding), so no trace reaches the limits")
def test_a_long_scan_leaves_the_trace_for_the_dispatch_capture(monkeypatch: pytest.MonkeyPatch, limit: str, value: int, says: str) -> None:
    """Past the limits the default counter stops the trace (a loop being unrolled): the scan's steps run
    in the mixer's own forward (10 tokens: ~6 operators a step); the MACs stay those of the trace."""
    from pytest_flopbudget.engine import count as counting

    model, x = mamba(), ids(meta=True)
    unrolled = measure(model, x)
    monkeypatch.setattr(counting, limit, value)
    result = measure(model, x)
    assert result.capture == "dispatch" and result.macs == unrolled.macs
    assert any(says in note for note in result.notes)


# ---- training steps with gradient checkpointing, counted on meta ---------------------------------


def rms_norm(tokens: int) -> int:
    """x * rsqrt(mean(x^2) + eps) and weight * x: two multiplies per element; the mean one per row."""
    return 2 * tokens * H + tokens


def rope(tokens: int) -> int:
    """q * cos + rotate_half(q) * sin, and the same for k: two multiplies per element of q and k."""
    return 2 * tokens * (HEADS + KV_HEADS) * HEAD_DIM


def decoder_layer(tokens: int) -> int:
    """One Llama decoder layer's forward: two norms, projections, RoPE, attention, the gated MLP
    (silu(gate) * up: one multiply per intermediate element)."""
    return (
        2 * rms_norm(tokens) + attention_projections(tokens) + rope(tokens) + attention(tokens, tokens)
        + mlp(tokens) + tokens * I
    )


def llama_train_forward(tokens: int) -> int:
    """The layers, the final norm, the rotary table (inv_freq @ positions: HEAD_DIM/2 * T, then cos and
    sin scaled: T * HEAD_DIM each), the LM head; the loss (cross-entropy) is free."""
    rotary = HEAD_DIM // 2 * tokens + 2 * tokens * HEAD_DIM
    return L * decoder_layer(tokens) + rms_norm(tokens) + rotary + tokens * H * V


def llama_linears(tokens: int) -> int:
    return L * (attention_projections(tokens) + mlp(tokens)) + tokens * H * V


def train_llama() -> torch.nn.Module:
    return llama(True).train()


@pytest.mark.parametrize(
    "reentrant, early_stop",
    [(False, True), (False, False), (True, True)],
    ids=["non-reentrant", "non-reentrant-no-early-stop", "reentrant"],
)
def test_a_checkpointed_llama_training_step_counts_one_recompute_per_layer(reentrant: bool, early_stop: bool) -> None:
    """transformers' gradient checkpointing (its default non-reentrant checkpoint, and use_reentrant=True):
    no CheckpointError, no real pass; the packed-sequence check (use_cache=False) answered on meta and
    noted. The backward is the plain step's backward plus one recomputed forward per decoder layer.
    torch's non-reentrant checkpoint stops a recomputation as soon as the tensors the backward needs are
    saved again: before the layer's last matmul (down_proj) runs; without early stop, and reentrant, the
    whole layer reruns."""
    from torch.utils.checkpoint import set_checkpoint_early_stop

    from pytest_flopbudget import measure_train_step

    x = ids(meta=True)
    plain = measure_train_step(train_llama(), x, labels=x)
    model = train_llama()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    assert model.model.gradient_checkpointing
    weights = list(model.parameters())
    before = deep_state(model)
    with set_checkpoint_early_stop(early_stop):
        result = measure_train_step(model, x, labels=x, optimizer=torch.optim.AdamW(model.parameters()))

    forward = llama_train_forward(T)
    assert plain.phases["forward"] == forward and result.phases["forward"] == forward
    # the plain backward's matmuls: every Linear dX and dW (the embedding trains), attention 2x its forward
    assert plain.by_operator["aten::mm"] == 2 * llama_linears(T)
    assert plain.by_operator["aten::bmm"] == 2 * L * attention(T, T)
    stops_early = early_stop and not reentrant
    recompute = L * (decoder_layer(T) - (T * I * H if stops_early else 0))
    assert result.phases["backward"] == plain.phases["backward"] + recompute
    assert result.phases["optimizer"] == 5 * sum(p.numel() for p in model.parameters())  # AdamW, weight decay
    assert result.unpriced == {} and result.mode == "meta"
    assert any("position_ids hold one sequence per row" in note for note in result.notes)
    # the recompute is the layers' own: every module's backward grows by its forward (down_proj: not rerun
    # when the recomputation stops early)
    layer0 = {k: v for k, v in plain.phase_modules["forward"].items() if k.startswith("model.layers.0.")}
    for name, macs in layer0.items():
        rerun = 0 if stops_early and name.endswith("down_proj") else macs
        assert result.phase_modules["backward"][name] == plain.phase_modules["backward"][name] + rerun, name
    assert list(model.parameters()) == weights and all(p.grad is None for p in weights)
    assert_deep_equal(before, deep_state(model))  # every attribute, the config included


def test_a_training_step_with_an_attention_mask_assumes_no_padding() -> None:
    """A 2-D attention mask on meta: transformers asks whether it pads any token; answered 'no' (the
    mask of an unpadded batch), noted; the same counts as without the mask."""
    from pytest_flopbudget import measure_train_step

    x = ids(meta=True)
    model = train_llama()
    model.gradient_checkpointing_enable()
    without = measure_train_step(model, x, labels=x)
    masked = measure_train_step(model, x, labels=x, attention_mask=torch.ones_like(x))
    assert masked.phases == without.phases
    assert any("pads no token" in note for note in masked.notes)


def test_an_encoder_decoder_generate_goes_straight_to_the_dispatch_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whisper's generate needs real values (its end-of-sequence check): the meta pass fails and a real
    pass counts. The trace never runs (it cannot hold a decoding loop, and fails on Whisper's graph), so
    that is two passes, not three."""
    from pytest_flopbudget.engine import count as count_module

    def no_trace(*args: object, **kwargs: object) -> None:
        raise AssertionError("the trace ran")

    monkeypatch.setattr(count_module, "trace", no_trace)
    config = transformers.WhisperConfig(
        vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=8, max_source_positions=16, max_target_positions=16,
        decoder_start_token_id=1, pad_token_id=0, eos_token_id=2, bos_token_id=1,
    )
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    features = torch.randn(1, 8, 32)  # 32 frames: the encoder's stride-2 conv gives its 16 positions
    passes: list[str] = []
    run = count_module.dispatch.run
    monkeypatch.setattr(count_module.dispatch, "run", lambda fn, module, args, kwargs, meta, **kw: (passes.append("meta" if meta else "real"), run(fn, module, args, kwargs, meta, **kw))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = measure(model.generate, features, max_new_tokens=4, do_sample=False)
    assert passes == ["meta", "real"] and result.mode == "real" and result.capture == "dispatch"
    assert any("a generate method" in note for note in result.notes) and not result.unpriced
    # the encoder's two convolutions, by hand: 8 -> 32 channels, kernel 3, over 32 frames; then 32 -> 32, stride 2
    conv = {op: macs for op, macs in result.by_operator.items() if "conv" in op}
    assert sum(conv.values()) == 32 * 32 * 8 * 3 + 16 * 32 * 32 * 3, conv
