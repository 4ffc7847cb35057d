"""transformers: dense and MoE decoders, encoder-decoders, an encoder, vision models, from hand-written configs.

Each configuration has the shapes of a released model (widths, heads, key/value heads, vocabulary,
expert counts), written out here so nothing is fetched; where a model is deep (Mixtral, Qwen3-MoE,
DeepSeek-V3, Mistral) the number of layers is cut, as the entry's note says. Random weights on meta,
the default attention implementation, eval mode, float32 (the MoE models bfloat16: their experts
run ``torch._grouped_mm``, which takes no float32 on meta). No published figure is used: model cards of these
models print parameter counts, not MACs at a stated input.
"""

from __future__ import annotations

# name -> (group, config class, model class, config kwargs, input kind, input size, note)
LLAMA_3_2_1B = dict(
    vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
    num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
    rope_theta=500000.0, tie_word_embeddings=True, rms_norm_eps=1e-5,
)
LLAMA_3_1_8B = dict(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
    rope_theta=500000.0, tie_word_embeddings=False, rms_norm_eps=1e-5,
)
QWEN2_5_0_5B = dict(
    vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
    num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
    rope_theta=1000000.0, tie_word_embeddings=True, rms_norm_eps=1e-6,
)
QWEN3_0_6B = dict(
    vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
    num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
    rope_theta=1000000.0, tie_word_embeddings=True, rms_norm_eps=1e-6,
)
GEMMA_3_1B = dict(
    vocab_size=262144, hidden_size=1152, intermediate_size=6912, num_hidden_layers=26,
    num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=512,
    query_pre_attn_scalar=256, max_position_embeddings=32768, rms_norm_eps=1e-6,
)
GPT2_SMALL = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
MISTRAL_7B = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=4,
    num_attention_heads=32, num_key_value_heads=8, sliding_window=4096, max_position_embeddings=32768,
    rope_theta=10000.0,
)
MIXTRAL_8X7B = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=2,
    num_attention_heads=32, num_key_value_heads=8, num_local_experts=8, num_experts_per_tok=2,
    max_position_embeddings=32768, rope_theta=1000000.0,
)
QWEN3_30B_A3B = dict(
    vocab_size=151936, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
    num_hidden_layers=4, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
    num_experts=128, num_experts_per_tok=8, decoder_sparse_step=1, norm_topk_prob=True,
    max_position_embeddings=40960, rope_theta=1000000.0,
)
DEEPSEEK_V3 = dict(
    vocab_size=129280, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
    num_hidden_layers=3, first_k_dense_replace=1, num_attention_heads=128, num_key_value_heads=128,
    n_routed_experts=256, n_shared_experts=1, num_experts_per_tok=8, n_group=8, topk_group=4,
    routed_scaling_factor=2.5, norm_topk_prob=True, q_lora_rank=1536, kv_lora_rank=512,
    qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128, max_position_embeddings=163840,
)
T5_BASE = dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
BART_BASE = dict(
    vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
    decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024,
)
WHISPER_SMALL = dict(
    vocab_size=51865, num_mel_bins=80, d_model=768, encoder_layers=12, decoder_layers=12,
    encoder_attention_heads=12, decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
    max_source_positions=1500, max_target_positions=448,
)
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072)
VIT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                image_size=224, patch_size=16, num_labels=1000)

MODELS = {
    "llama-3.2-1b": ("dense", "LlamaConfig", "LlamaForCausalLM", LLAMA_3_2_1B, "tokens", 512,
                     "Llama-3.2-1B shape, 512 tokens"),
    "llama-3.1-8b": ("dense", "LlamaConfig", "LlamaForCausalLM", LLAMA_3_1_8B, "tokens", 512,
                     "Llama-3.1-8B shape, 512 tokens"),
    "qwen2.5-0.5b": ("dense", "Qwen2Config", "Qwen2ForCausalLM", QWEN2_5_0_5B, "tokens", 512,
                     "Qwen2.5-0.5B shape, 512 tokens"),
    "qwen3-0.6b": ("dense", "Qwen3Config", "Qwen3ForCausalLM", QWEN3_0_6B, "tokens", 512,
                   "Qwen3-0.6B shape, 512 tokens"),
    "gemma-3-1b": ("dense", "Gemma3TextConfig", "Gemma3ForCausalLM", GEMMA_3_1B, "tokens", 1024,
                   "Gemma-3-1B shape (sliding window 512), 1024 tokens"),
    "gpt2": ("dense", "GPT2Config", "GPT2LMHeadModel", GPT2_SMALL, "tokens", 512, "GPT-2 small, 512 tokens"),
    "mistral-7b-4l": ("dense", "MistralConfig", "MistralForCausalLM", MISTRAL_7B, "tokens", 6144,
                      "Mistral-7B-v0.1 shape, 4 of 32 layers, sliding window 4096, 6144 tokens"),
    "mixtral-8x7b-2l": ("moe", "MixtralConfig", "MixtralForCausalLM", MIXTRAL_8X7B, "tokens", 512,
                        "Mixtral-8x7B shape, 2 of 32 layers, 512 tokens, bf16"),
    "qwen3-30b-a3b-4l": ("moe", "Qwen3MoeConfig", "Qwen3MoeForCausalLM", QWEN3_30B_A3B, "tokens", 512,
                         "Qwen3-30B-A3B shape, 4 of 48 layers, 512 tokens, bf16"),
    "deepseek-v3-3l": ("moe", "DeepseekV3Config", "DeepseekV3ForCausalLM", DEEPSEEK_V3, "tokens", 256,
                       "DeepSeek-V3 shape, 3 of 61 layers (1 dense, 2 MoE), 256 tokens, bf16"),
    "t5-base": ("encoder-decoder", "T5Config", "T5ForConditionalGeneration", T5_BASE, "seq2seq", (512, 128),
                "T5-base, 512 encoder and 128 decoder tokens"),
    "bart-base": ("encoder-decoder", "BartConfig", "BartForConditionalGeneration", BART_BASE, "seq2seq",
                  (512, 128), "BART-base, 512 encoder and 128 decoder tokens"),
    "whisper-small": ("encoder-decoder", "WhisperConfig", "WhisperForConditionalGeneration", WHISPER_SMALL,
                      "audio", (3000, 64), "Whisper-small, 30 s of 80 mel bins, 64 decoder tokens"),
    "bert-base": ("encoder", "BertConfig", "BertModel", BERT_BASE, "tokens", 512, "BERT-base, 512 tokens"),
    "vit-base-patch16-224": ("vision", "ViTConfig", "ViTForImageClassification", VIT_BASE, "image", 224,
                             "ViT-B/16, 1x3x224x224, 1000 classes"),
    "sam-vit-base": ("vision", "SamConfig", "SamModel", None, "sam", 1024,
                     "SAM ViT-B image encoder and mask decoder, 1x3x1024x1024, one point"),
}


def sam_config():
    import transformers

    vision = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, output_channels=256,
                  image_size=1024, patch_size=16, global_attn_indexes=[2, 5, 8, 11], window_size=14)
    return transformers.SamConfig(vision_config=vision)


def build(name: str):
    import torch
    import transformers

    from .common import on_meta

    group, config_cls, model_cls, kwargs, kind, size, _ = MODELS[name]
    config = sam_config() if kwargs is None else getattr(transformers, config_cls)(**kwargs)
    model = on_meta(lambda: getattr(transformers, model_cls)(config)).eval()
    if group == "moe":
        # transformers runs the experts with torch._grouped_mm, whose meta kernel takes bf16/fp16 only
        model = model.to(torch.bfloat16)
    meta = dict(device="meta")
    if kind == "tokens":
        ids = torch.randint(0, 1000, (1, size), **meta)
        return model, (ids,), {}
    if kind == "seq2seq":
        enc, dec = size
        return model, (), {"input_ids": torch.randint(0, 1000, (1, enc), **meta),
                           "decoder_input_ids": torch.randint(0, 1000, (1, dec), **meta)}
    if kind == "audio":
        frames, dec = size
        return model, (), {"input_features": torch.randn(1, config.num_mel_bins, frames, **meta),
                           "decoder_input_ids": torch.randint(0, 1000, (1, dec), **meta)}
    if kind == "image":
        return model, (), {"pixel_values": torch.randn(1, 3, size, size, **meta)}
    if kind == "sam":
        return model, (), {"pixel_values": torch.randn(1, 3, size, size, **meta),
                           "input_points": torch.randn(1, 1, 1, 2, **meta)}
    raise ValueError(kind)


def entries():
    from .common import Entry

    for name, (group, _, model_cls, _, _, _, note) in MODELS.items():
        yield Entry(name=f"transformers/{name}", family="transformers", group=group,
                    builder="zoo.transformers_models:build", builder_arg=name, note=f"{model_cls}: {note}")
