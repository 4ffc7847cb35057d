"""diffusers: UNets, DiT-style transformers and a VAE, from hand-written configs of released models.

Random weights on meta, eval mode. Flux keeps its widths with fewer blocks (the note says how many).
Published: DiT-XL/2 at 256x256, 118.64 GMACs ("Gflops"), Table 1 of the DiT paper (Peebles and Xie,
"Scalable Diffusion Models with Transformers", 2023), the figure the project's README conventions
table quotes; it counts matmul, conv and attention plus one per LayerNorm element.
"""

from __future__ import annotations

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8,
)
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
DIT_XL_2 = dict(
    num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
    sample_size=32, patch_size=2, num_embeds_ada_norm=1000, norm_type="ada_norm_zero",
)
PIXART_ALPHA_512 = dict(
    num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
    sample_size=64, patch_size=2, cross_attention_dim=1152, caption_channels=4096,
    norm_type="ada_norm_single", use_additional_conditions=False,
)
SD3_MEDIUM = dict(
    sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
    num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
    pooled_projection_dim=2048, pos_embed_max_size=192,
)
FLUX_DEV_SHAPE = dict(
    patch_size=1, in_channels=64, num_layers=2, num_single_layers=4, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
SD_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)

MODELS = {
    "unet-sd15": ("unet", "UNet2DConditionModel", SD15_UNET, None, "SD 1.5 UNet, 64x64 latent, 77 tokens"),
    "unet-sdxl": ("unet", "UNet2DConditionModel", SDXL_UNET, None, "SDXL UNet, 128x128 latent, 77 tokens"),
    "dit-xl-2": ("dit", "DiTTransformer2DModel", DIT_XL_2, 118.64, "DiT-XL/2, 32x32 latent (256x256), class-conditional"),
    "pixart-alpha-512": ("dit", "PixArtTransformer2DModel", PIXART_ALPHA_512, None,
                         "PixArt-alpha 512 shape, 64x64 latent, 120 T5 tokens"),
    "sd3-medium": ("dit", "SD3Transformer2DModel", SD3_MEDIUM, None, "SD3-medium shape, 128x128 latent, 154 tokens"),
    "flux-dev-2+4": ("dit", "FluxTransformer2DModel", FLUX_DEV_SHAPE, None,
                     "Flux.1-dev widths, 2 of 19 double and 4 of 38 single blocks, 1024x1024 (4096 tokens), 512 text tokens"),
    "autoencoderkl-sd": ("vae", "AutoencoderKL", SD_VAE, None, "SD VAE, encode and decode of 1x3x512x512"),
}


def build(name: str):
    import diffusers
    import torch

    from .common import on_meta

    group, cls, config, _, _ = MODELS[name]
    model = on_meta(lambda: getattr(diffusers, cls)(**config)).eval()
    m = dict(device="meta")
    t = torch.tensor([999], **m)
    if name == "unet-sd15":
        return model, (torch.randn(1, 4, 64, 64, **m), t), {"encoder_hidden_states": torch.randn(1, 77, 768, **m)}
    if name == "unet-sdxl":
        return model, (torch.randn(1, 4, 128, 128, **m), t), {
            "encoder_hidden_states": torch.randn(1, 77, 2048, **m),
            "added_cond_kwargs": {"text_embeds": torch.randn(1, 1280, **m), "time_ids": torch.randn(1, 6, **m)},
        }
    if name == "dit-xl-2":
        return model, (torch.randn(1, 4, 32, 32, **m),), {"timestep": t, "class_labels": torch.tensor([1], **m)}
    if name == "pixart-alpha-512":
        return model, (torch.randn(1, 4, 64, 64, **m),), {
            "encoder_hidden_states": torch.randn(1, 120, 4096, **m), "timestep": t,
            "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
        }
    if name == "sd3-medium":
        return model, (torch.randn(1, 16, 128, 128, **m),), {
            "encoder_hidden_states": torch.randn(1, 154, 4096, **m),
            "pooled_projections": torch.randn(1, 2048, **m), "timestep": t,
        }
    if name == "flux-dev-2+4":
        return model, (torch.randn(1, 4096, 64, **m),), {
            "encoder_hidden_states": torch.randn(1, 512, 4096, **m),
            "pooled_projections": torch.randn(1, 768, **m), "timestep": torch.tensor([1.0], **m),
            "img_ids": torch.zeros(4096, 3, **m), "txt_ids": torch.zeros(512, 3, **m),
            "guidance": torch.tensor([3.5], **m),
        }
    if name == "autoencoderkl-sd":
        return model, (torch.randn(1, 3, 512, 512, **m),), {}
    raise ValueError(name)


def entries():
    from .common import Entry

    for name, (group, cls, _, published, note) in MODELS.items():
        yield Entry(name=f"diffusers/{name}", family="diffusers", group=group,
                    builder="zoo.diffusers_models:build", builder_arg=name, published=published,
                    published_source="DiT paper, Table 1 (Gflops = GMACs)" if published else None,
                    note=f"{cls}: {note}")
