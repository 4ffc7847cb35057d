"""Plain pytest checks of the VAR rebuild: shapes, parameter counts, FLOPs vs the analytic model.

FLOPs against the analytic model are checked in test_var_flops.py, on the counts the suite measures.
"""

from __future__ import annotations

import pytest
import torch
from model import (
    PUBLISHED_PARAMS,
    RELEASED,
    VARGenerate,
    VARImageForward,
    VARTrainStep,
    block_causal_mask,
    build_released,
    build_var,
    build_vqvae,
    dummy_inputs,
    var_optimizer,
)

from pytest_flopbudget import (
    fast_meta,  # meta passes without torch's Python meta kernels (same shapes)
)

NAMES = list(RELEASED)
EXACT_PARAMS = {
    "d16": 310_283_520,
    "d20": 600_917_136,
    "d24": 1_033_399_360,
    "d30": 2_010_020_356,
    "d36-s": 2_353_893_904,
}


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def params_from_shapes(depth: int, resolution: int) -> int:
    """The parameter count implied by the facts sheet's layer list, written out by hand."""
    c, heads, vocab, cv, classes, levels = 64 * depth, depth, 4096, 32, 1001, 10
    length = 680 if resolution == 256 else 2240
    attn = 3 * c * c + c + c + heads + (c * c + c)  # mat_qkv (no bias), q_bias, v_bias, scale, proj
    mlp = (c * 4 * c + 4 * c) + (4 * c * c + c)  # fc1, fc2
    shared = depth == 36
    ada_block = 6 * c if shared else c * 6 * c + 6 * c  # (1,1,6,C) gss, or Linear(C -> 6C)
    ada_shared = c * 6 * c + 6 * c if shared else 0
    embeddings = (cv * c + c) + classes * c + c + length * c + levels * c  # word, class, pos_start, pos, lvl
    head = (c * 2 * c + 2 * c) + (c * vocab + vocab)  # head_nm AdaLN, head
    return depth * (attn + mlp + ada_block) + ada_shared + embeddings + head


def floor_two_digits(count: int) -> int:
    """Keep the first two significant digits: 2_353_893_904 -> 2_300_000_000."""
    scale = 10 ** (len(str(count)) - 2)
    return count // scale * scale


def meta_inputs(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return dummy_inputs(RELEASED[name][1])


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_shapes(name: str) -> None:
    model = build_released(name)
    assert count_params(model) == params_from_shapes(*RELEASED[name]) == EXACT_PARAMS[name]


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_rounds_to_published(name: str) -> None:
    exact, published = EXACT_PARAMS[name], PUBLISHED_PARAMS[name]
    assert floor_two_digits(exact) == published  # d36-s is 2.354B: rounding would say 2.4B


def test_models_stay_on_meta() -> None:
    var, vqvae = build_released("d30"), build_vqvae()
    tensors = [*var.parameters(), *var.buffers(), *vqvae.parameters()]
    assert all(t.is_meta for t in tensors)


def test_vqvae_layers() -> None:
    vqvae = build_vqvae()
    assert tuple(vqvae.quantize.embedding.weight.shape) == (4096, 32)
    assert len(vqvae.quantize.phis) == 4
    assert count_params(vqvae) == 108_948_355


# --------------------------------------------------------------------------- generation


def test_generation_runs_every_step_with_kv_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step attends from its new tokens to every token so far, for both guidance rows."""
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        calls.append((q.shape[0], q.shape[-2], k.shape[-2]))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    var, vqvae = build_released("d16"), build_vqvae()
    decoded = []
    vqvae.decoder.register_forward_hook(lambda mod, args, out: decoded.append(tuple(out.shape)))
    labels, _, _ = meta_inputs("d16")
    with torch.no_grad(), fast_meta():
        image = VARGenerate(vqvae, var)(labels)
    assert len(calls) == var.depth * len(var.patch_nums)
    cumulative = [sum(p * p for p in var.patch_nums[: k + 1]) for k in range(len(var.patch_nums))]
    assert sorted(set(calls)) == [(2, pn * pn, total) for pn, total in zip(var.patch_nums, cumulative)]
    assert decoded == [(1, 3, 256, 256)] and tuple(image.shape) == (1, 3, 256, 256)


# --------------------------------------------------------------------------- shapes and behaviour


def test_meta_shapes() -> None:
    labels, tokens, images = meta_inputs("d16")
    var, vqvae = build_released("d16"), build_vqvae()
    with torch.no_grad(), fast_meta():
        assert tuple(vqvae(images).shape) == (1, 679, 32)
        assert tuple(var(labels, tokens).shape) == (1, 680, 4096)
        assert tuple(VARImageForward(vqvae, var)(images, labels).shape) == (1, 680, 4096)


def test_block_causal_mask() -> None:
    mask = block_causal_mask((1, 2, 3))[0, 0]
    assert tuple(mask.shape) == (14, 14)
    assert (mask[:5, 5:] == float("-inf")).all()  # scales 0 and 1 never see scale 2
    assert (mask[1:5, :5] == 0).all()  # scale 1 sees itself and scale 0
    assert (mask[5:] == 0).all()


@pytest.fixture(scope="module")
def small_cpu_models() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return build_var(2, device="cpu"), build_vqvae(device="cpu", base_channels=32)  # small: quick on CPU


def test_cpu_masked_forward_equals_kv_cache(small_cpu_models) -> None:
    var, _ = small_cpu_models
    labels, tokens = torch.tensor([3, 1000]), torch.randn(2, 679, 32)
    with torch.no_grad():
        full = var(labels, tokens)
        cond = var.class_emb(labels)
        sos = cond.unsqueeze(1) + var.pos_start
        x = torch.cat((sos, var.word_embed(tokens)), dim=1) + var.level_positions()
        var.set_kv_cache(True)
        steps, start = [], 0
        for pn in var.patch_nums:
            steps.append(var.run_blocks(x[:, start : start + pn * pn], cond, None))
            start += pn * pn
        var.set_kv_cache(False)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)


def test_cpu_forward_is_block_causal(small_cpu_models) -> None:
    var, _ = small_cpu_models
    labels, tokens = torch.tensor([7]), torch.randn(1, 679, 32)
    changed = tokens.clone()
    changed[:, 90:] += 1.0  # tokens 91.. (scales 6..9)
    with torch.no_grad():
        before, after = var(labels, tokens), var(labels, changed)
    torch.testing.assert_close(before[:, :91], after[:, :91])
    assert not torch.allclose(before[:, 91:], after[:, 91:])


def test_cpu_image_forward_and_generation(small_cpu_models) -> None:
    var, vqvae = small_cpu_models
    images, labels = torch.rand(1, 3, 256, 256) * 2 - 1, torch.tensor([3])
    with torch.no_grad():
        logits = VARImageForward(vqvae, var)(images, labels)
        generated = VARGenerate(vqvae, var)(labels)
    assert tuple(logits.shape) == (1, 680, 4096) and torch.isfinite(logits).all()
    assert tuple(generated.shape) == (1, 3, 256, 256)
    assert generated.min() >= 0 and generated.max() <= 1
    assert all(block.attn.cached_k is None for block in var.blocks)  # cache cleared afterwards


def test_cpu_training_input_equals_the_forward_input(small_cpu_models) -> None:
    """The trainer's two steps (codes of all scales, then the input rebuilt from them) give the same
    teacher-forcing input as quantising and building it in one pass."""
    _, vqvae = small_cpu_models
    images = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        latent = vqvae.encode(images)
        codes = vqvae.quantize.image_codes(latent)
        rebuilt = vqvae.quantize.var_input(codes)
        direct = vqvae.quantize.teacher_forcing_input(latent)
    assert [tuple(c.shape) for c in codes] == [(1, pn * pn) for pn in vqvae.quantize.patch_nums]
    torch.testing.assert_close(rebuilt, direct)


def test_cpu_training_step_trains_the_transformer_only() -> None:
    torch.manual_seed(0)
    var, vqvae = build_var(2, device="cpu"), build_vqvae(device="cpu", base_channels=32)
    step, optimizer = VARTrainStep(vqvae, var), var_optimizer(var)
    images, labels = torch.rand(1, 3, 256, 256) * 2 - 1, torch.tensor([3])
    loss = step(images, labels)
    assert loss.dim() == 0 and 0 < loss.item() < 20  # cross-entropy over 4096 codes: about ln 4096 = 8.3 at init
    loss.backward()
    assert all(p.grad is not None for p in var.parameters())
    assert all(p.grad is None and not p.requires_grad for p in vqvae.parameters())
    before = var.head.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, var.head.weight)
    decayed, not_decayed = (len(group["params"]) for group in optimizer.param_groups)
    assert decayed + not_decayed == len(list(var.parameters()))
    assert optimizer.param_groups[0]["weight_decay"] == 0.05 and optimizer.param_groups[1]["weight_decay"] == 0.0
