"""Analytic MAC model of VAR, written from the architecture (not from a trace).

Every cost is a ``Cost(exact, elementwise)``:

- ``exact``: the matmul / conv terms (Linear, attention Q K^T and A V, conv, bmm, the
  nearest-code distance matmul). A trace-based counter must find these exactly.
- ``elementwise``: what torchprofile 0.1.0 additionally charges: every ``aten::mul`` at the
  numel of its output, every affine norm (GroupNorm here; the transformer's LayerNorms have
  no affine and cost 0) at numel, and ``adaptive_avg_pool2d`` (area resize) at the numel of
  its output. Additions, divisions, softmax, GELU, SiLU, exp, sort, cumsum and the bicubic /
  nearest resizes are free for it.

1 MAC = 2 FLOPs. ``batch`` is the number of images (generation runs 2 * batch rows).

Training step (VAR's trainer; ``train_forward``, ``train_backward``, ``adamw_step``), per sample:

    backward exact = 2 * (transformer forward exact) - (L - 1) Cv C
            (every Linear computes dW and dX, attention dQ dK dV dP = 2x its forward;
             word_embed needs no dX: its input comes from the frozen VQVAE)
    backward elementwise = d * (14 L C + H) + 2 L C + L
            (per block: the 4 modulation muls have both operands trainable, 2 L C each;
             q * exp(s) 2 L C; each F.normalize of q and k: a mul in the norm's and in the
             division's backward, 2 L C each; exp's backward H; head_nm 2 L C; the loss weight L)
    optimizer (fused AdamW, per parameter element) = 5 decayed + 4 not decayed
            (lerp, mul, addcmul, addcdiv; the decoupled decay p *= 1 - lr wd)

Transformer forward, per sample, for depth d, width C = 64 d, H = d heads, L tokens,
V = 4096, Cv = 32:

    exact = d * (12 L C^2 + 2 L^2 C + 6 C^2) + (L - 1) Cv C + L C V + 2 C^2
            (qkv 3, proj 1, fc1 4, fc2 4 -> 12 L C^2;  attention H L L (64 + 64) = 2 L^2 C;
             AdaLN once per sample; d36-s: the 6 C^2 is paid once, not per block)
    elementwise = (5 d + 1) L C
            (per block: LN * (1 + scale) twice, gamma * branch twice, q * exp(s) once;
             head: LN * (1 + scale))
"""

from __future__ import annotations

from dataclasses import dataclass

from flopmath import Cost, conv, group_norm, resnet
from model import (
    BASE_CHANNELS,
    CHANNEL_MULT,
    NUM_CLASSES,
    VAE_CHANNELS,
    VOCAB_SIZE,
    patch_nums_for,
)

QKV_PROJ_MLP = 3 + 1 + 4 + 4  # multiples of C^2 per token in a block


@dataclass(frozen=True)
class VarShape:
    depth: int
    resolution: int
    shared_adaln: bool

    @property
    def width(self) -> int:
        return 64 * self.depth

    @property
    def heads(self) -> int:
        return self.depth

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return patch_nums_for(self.resolution)

    @property
    def length(self) -> int:
        return sum(pn * pn for pn in self.patch_nums)

    @property
    def latent_side(self) -> int:
        return self.resolution // 16


def var_shape(depth: int, resolution: int = 256) -> VarShape:
    return VarShape(depth, resolution, shared_adaln=depth == 36)


# --------------------------------------------------------------------------- transformer


def blocks_cost(shape: VarShape, rows: int, queries: int, keys: int) -> Cost:
    """All d blocks on ``queries`` new tokens attending to ``keys`` tokens, AdaLN included."""
    c, d = shape.width, shape.depth
    linear = QKV_PROJ_MLP * rows * queries * c * c
    attention = rows * shape.heads * queries * keys * (64 + 64)
    ada_per_block = 0 if shape.shared_adaln else rows * c * 6 * c
    ada_shared = rows * c * 6 * c if shape.shared_adaln else 0
    elementwise = 5 * rows * queries * c
    per_block = Cost(linear + attention + ada_per_block, elementwise)
    return per_block.times(d) + Cost(ada_shared, 0)


def head_cost(shape: VarShape, rows: int, queries: int) -> Cost:
    """head_nm (AdaLN C -> 2C once per row, modulation) and head Linear(C -> V)."""
    c = shape.width
    return Cost(rows * c * 2 * c + rows * queries * c * VOCAB_SIZE, rows * queries * c)


def transformer_forward(shape: VarShape, batch: int = 1) -> Cost:
    """The training forward on all L tokens with the full L x L masked attention."""
    length = shape.length
    word_embed = Cost(batch * (length - 1) * VAE_CHANNELS * shape.width, 0)
    return word_embed + blocks_cost(shape, batch, length, length) + head_cost(shape, batch, length)


# --------------------------------------------------------------------------- VQVAE


def attention(side: int, channels: int) -> Cost:
    positions = side * side
    exact = conv(side, channels, 3 * channels, 1) + 2 * positions * positions * channels
    return Cost(exact + conv(side, channels, channels, 1), 0) + group_norm(side, channels)


def middle(side: int, channels: int) -> Cost:
    return resnet(side, channels, channels) + attention(side, channels) + resnet(side, channels, channels)


def encoder(resolution: int) -> Cost:
    """Encoder plus quant_conv, for one image."""
    widths = [BASE_CHANNELS * m for m in CHANNEL_MULT]
    side, c_in = resolution, BASE_CHANNELS
    cost = Cost(conv(side, 3, BASE_CHANNELS, 3), 0)
    for level, width in enumerate(widths):
        last = level == len(widths) - 1
        for i in range(2):
            cost += resnet(side, c_in if i == 0 else width, width)
            cost += attention(side, width) if last else Cost()
        if not last:
            side //= 2
            cost += Cost(conv(side, width, width, 3), 0)
        c_in = width
    cost += middle(side, widths[-1]) + group_norm(side, widths[-1])
    cost += Cost(conv(side, widths[-1], VAE_CHANNELS, 3), 0)
    return cost + Cost(conv(side, VAE_CHANNELS, VAE_CHANNELS, 3), 0)


def decoder(resolution: int) -> Cost:
    """post_quant_conv plus decoder, for one image (latent side = resolution / 16)."""
    widths = [BASE_CHANNELS * m for m in CHANNEL_MULT]
    side = resolution // 16
    cost = Cost(conv(side, VAE_CHANNELS, VAE_CHANNELS, 3) + conv(side, VAE_CHANNELS, widths[-1], 3), 0)
    cost += middle(side, widths[-1])
    c_in = widths[-1]
    for level in reversed(range(len(widths))):
        width = widths[level]
        for i in range(3):
            cost += resnet(side, c_in if i == 0 else width, width)
            cost += attention(side, width) if level == len(widths) - 1 else Cost()
        if level != 0:
            side *= 2
            cost += Cost(conv(side, width, width, 3), 0)
        c_in = width
    cost += group_norm(side, widths[0]) + Cost(conv(side, widths[0], 3, 3), 0)
    return cost


def phi(side: int) -> Cost:
    """phi(h) = 0.5 h + 0.5 conv(h) on the full latent: one conv and two muls."""
    return Cost(conv(side, VAE_CHANNELS, VAE_CHANNELS, 3), 2 * side * side * VAE_CHANNELS)


def area_resize(side: int) -> Cost:
    return Cost(0, side * side * VAE_CHANNELS)


def teacher_forcing(shape: VarShape) -> Cost:
    """Quantisation of scales 0 .. K-2 and the area-downsampled inputs, for one image."""
    pns, full = shape.patch_nums, shape.latent_side
    cost = Cost()
    for step, pn in enumerate(pns[:-1]):
        cost += area_resize(pn) if pn != full else Cost()
        cost += Cost(pn * pn * VAE_CHANNELS * VOCAB_SIZE, 0)  # distances to every code
        cost += phi(full)
        nxt = pns[step + 1]
        cost += area_resize(nxt) if nxt != full else Cost()
    return cost


def image_forward(shape: VarShape, batch: int = 1) -> Cost:
    """Images -> encoder -> quantisation -> teacher-forcing input -> transformer."""
    vqvae = encoder(shape.resolution) + teacher_forcing(shape)
    return vqvae.times(batch) + transformer_forward(shape, batch)


# --------------------------------------------------------------------------- generation


def generation_step(shape: VarShape, step: int, batch: int) -> Cost:
    """Step k: 2B rows, pn_k^2 queries against all tokens so far (KV cache), AdaLN again."""
    pns = shape.patch_nums
    queries = pns[step] ** 2
    keys = sum(pn * pn for pn in pns[: step + 1])
    rows = 2 * batch
    cost = blocks_cost(shape, rows, queries, keys) + head_cost(shape, rows, queries)
    cost += Cost(0, 2 * batch * queries * VOCAB_SIZE)  # guidance: (1 + t) * cond - t * uncond
    cost += phi(shape.latent_side).times(batch)
    if step + 1 < len(pns):
        nxt = pns[step + 1]
        cost += area_resize(nxt).times(batch) if nxt != shape.latent_side else Cost()
        cost += Cost(batch * nxt * nxt * VAE_CHANNELS * shape.width, 0)  # word_embed
    return cost


def generation(shape: VarShape, batch: int = 1) -> Cost:
    """All K steps, then the decoder and the final * 0.5 to [0, 1]."""
    cost = Cost()
    for step in range(len(shape.patch_nums)):
        cost += generation_step(shape, step, batch)
    final_scale = Cost(0, 3 * shape.resolution * shape.resolution)
    return cost + (decoder(shape.resolution) + final_scale).times(batch)


def bicubic_outputs(shape: VarShape, batch: int = 1) -> int:
    """Elements written by the bicubic upsamples (scales 0 .. K-2 to the full latent).

    The same in the image forward and in generation. torchprofile 0.1.0 leaves
    ``aten::upsample_bicubic2d`` unpriced; a counter that charges 16 MACs per output
    element (pytest-flopbudget's rules) adds ``16 * bicubic_outputs``.
    """
    side = shape.latent_side
    return batch * (len(shape.patch_nums) - 1) * VAE_CHANNELS * side * side


# --------------------------------------------------------------------------- training step


def image_codes(shape: VarShape) -> Cost:
    """VAR's ``f_to_idxBl_or_fhat`` on one image: every one of the K scales is quantised (area resize but
    at the last, distances to every code, bicubic back but at the last, phi on the full latent)."""
    pns, full = shape.patch_nums, shape.latent_side
    cost = Cost()
    for step, pn in enumerate(pns):
        last = step == len(pns) - 1
        cost += Cost() if last else area_resize(pn)
        cost += Cost(pn * pn * VAE_CHANNELS * VOCAB_SIZE, 0) + phi(full)
    return cost


def var_input(shape: VarShape) -> Cost:
    """``idxBl_to_var_input``: for scales 0 .. K-2 phi on the bicubic-upsampled codes, then f_hat
    area-resized to the next scale (the last resize keeps the full size and is still an area pool)."""
    pns, full = shape.patch_nums, shape.latent_side
    cost = Cost()
    for step in range(len(pns) - 1):
        cost += phi(full) + area_resize(pns[step + 1])
    return cost


def train_bicubic_outputs(shape: VarShape, batch: int = 1) -> int:
    """Bicubic upsamples of a training step: K-1 while quantising, K-1 again rebuilding the input."""
    return 2 * bicubic_outputs(shape, batch)


def train_forward(shape: VarShape, batch: int = 1) -> Cost:
    """Images -> codes of all scales -> teacher-forcing input -> transformer -> weighted cross-entropy.

    The cross-entropy (log-softmax, gather) is free; ``loss.mul(lw)`` is L muls per image and the
    final ``mean`` over the batch one MAC (a mean costs its output's numel)."""
    vqvae = encoder(shape.resolution) + image_codes(shape) + var_input(shape)
    return vqvae.times(batch) + transformer_forward(shape, batch) + Cost(0, batch * shape.length + 1)


def train_backward(shape: VarShape, batch: int = 1) -> Cost:
    """The transformer's backward (the VQVAE is frozen and its output needs no gradient)."""
    c, d, length = shape.width, shape.depth, shape.length
    word_embed = batch * (length - 1) * VAE_CHANNELS * c
    exact = 2 * transformer_forward(shape, batch).exact - word_embed
    elementwise = batch * (d * 14 * length * c + 2 * length * c + length) + d * shape.heads
    return Cost(exact, elementwise)


def parameter_groups(shape: VarShape) -> tuple[int, int]:
    """(decayed, not decayed) parameter elements of VAR's two AdamW groups (``filter_params``)."""
    c, d = shape.width, shape.depth
    # per block: ada_lin 6C^2, mat_qkv 3C^2, proj C^2, fc1 4C^2, fc2 4C^2 decayed; their biases
    # (6C, C, 4C, C), q_bias and v_bias (C each) and scale_mul (H) not. d36-s (shared AdaLN): one
    # ada_lin (6C^2 decayed, 6C not) for all blocks, and per block ada_gss (6C, a no-decay key) instead
    ada_blocks, ada_shared = (0, 6 * c * c) if shape.shared_adaln else (6 * c * c, 0)
    decayed = d * (12 * c * c + ada_blocks) + ada_shared + VAE_CHANNELS * c + (NUM_CLASSES + 1) * c + 2 * c * c + VOCAB_SIZE * c
    not_decayed = d * (14 * c + shape.heads) + c + c + shape.length * c + len(shape.patch_nums) * c + 2 * c + VOCAB_SIZE
    if shape.shared_adaln:
        not_decayed += 6 * c
    return decayed, not_decayed


def adamw_step(shape: VarShape) -> Cost:
    decayed, not_decayed = parameter_groups(shape)
    return Cost(0, 5 * decayed + 4 * not_decayed)
