"""timm: a sample of architectures covering every model module (family) of timm, built on meta.

Each entry: (model name, timm module, published GMACs or None). The input is one image at the
model's default resolution (``pretrained_cfg["input_size"]``), batch 1.

Published GMACs: ``infer_gmacs`` of timm's own benchmark table at the same resolution,
``results/benchmark-infer-amp-nchw-pt291-cu128-4090.csv`` in huggingface/pytorch-image-models
(commit aa4b5850c1543fa488abf260f18390eda46cf85d), printed to two decimals. ``None`` where that
table has no row for the model at its default resolution.
"""

from __future__ import annotations

PUBLISHED_SOURCE = (
    "timm benchmark table, huggingface/pytorch-image-models "
    "results/benchmark-infer-amp-nchw-pt291-cu128-4090.csv (infer_gmacs, batch 1, default resolution)"
)

MODELS = [
    ("beit_base_patch16_224", "beit", 17.58),
    ("haloregnetz_b", "byoanet", 1.97),
    ("botnet26t_256", "byoanet", 3.32),
    ("mobileone_s0", "byobnet", 0.28),
    ("gernet_s", "byobnet", 0.75),
    ("resnet33ts", "byobnet", 4.76),
    ("repvgg_a0", "byobnet", 1.36),
    ("cait_xxs24_224", "cait", 2.53),
    ("coat_lite_tiny", "coat", 1.6),
    ("convit_tiny", "convit", 1.26),
    ("convmixer_1024_20_ks9_p14", "convmixer", 5.55),
    ("convmixer_768_32", "convmixer", 19.55),
    ("convnext_atto", "convnext", 0.55),
    ("convnext_tiny", "convnext", 4.47),
    ("convnextv2_atto", "convnext", 0.55),
    ("cpubone_b0_bfrobust", "cpubone", None),
    ("crossvit_tiny_240", "crossvit", 1.57),
    ("csatv2", "csatv2", 1.39),
    ("cs3darknet_focus_s", "cspnet", 0.69),
    ("cspresnet50", "cspnet", 4.54),
    ("cspdarknet53", "cspnet", 6.57),
    ("cspnext_tiny", "cspnext", None),
    ("davit_tiny", "davit", 4.54),
    ("deepseek_vit_412m", "deepseek_vit", None),
    ("deit_tiny_patch16_224", "deit", 1.26),
    ("deit3_small_patch16_224", "deit", 4.61),
    ("densenet121", "densenet", 2.87),
    ("dla34", "dla", 3.07),
    ("dla46x_c", "dla", 0.54),
    ("dpn48b", "dpn", 1.69),
    ("edgenext_xx_small", "edgenext", 0.26),
    ("efficientformer_l1", "efficientformer", 1.3),
    ("efficientformerv2_s0", "efficientformer_v2", 0.41),
    ("efficientnet_b0", "efficientnet", 0.4),
    ("tf_efficientnet_b0", "efficientnet", 0.4),
    ("efficientnetv2_rw_t", "efficientnet", 1.93),
    ("tf_efficientnetv2_b0", "efficientnet", 0.54),
    ("mobilenetv2_100", "efficientnet", 0.31),
    ("mixnet_s", "efficientnet", 0.25),
    ("tinynet_e", "efficientnet", 0.03),
    ("mnasnet_100", "efficientnet", 0.33),
    ("fbnetc_100", "efficientnet", 0.4),
    ("efficientnet_lite0", "efficientnet", 0.4),
    ("mobilenetv1_100", "efficientnet", 0.58),
    ("efficientvim_m1", "efficientvim", None),
    ("efficientvit_b0", "efficientvit_mit", 0.1),
    ("efficientvit_m0", "efficientvit_msra", 0.08),
    ("eva02_tiny_patch14_224", "eva", 1.7),
    ("vit_small_patch16_rope_224", "eva", 4.61),
    ("fasternet_t0", "fasternet", 0.34),
    ("fastvit_t8", "fastvit", 0.69),
    ("focalnet_tiny_srf", "focalnet", 4.42),
    ("gcvit_xxtiny", "gcvit", 2.14),
    ("gemma4_vit_167m", "gemma4_vit", None),
    ("ghostnet_100", "ghostnet", 0.15),
    ("ghostnetv2_100", "ghostnet", 0.18),
    ("hardcorenas_a", "hardcorenas", 0.23),
    ("hgnetv2_b0", "hgnet", 0.33),
    ("hgnet_tiny", "hgnet", 4.54),
    ("hiera_tiny_224", "hiera", 4.91),
    ("hieradet_small", "hieradet_sam2", 8.51),
    ("hrnet_w18_small", "hrnet", 1.61),
    ("iformer_t", "iformer", None),
    ("inception_next_atto", "inception_next", 0.5),
    ("inception_resnet_v2", "inception_resnet_v2", 13.18),
    ("inception_v3", "inception_v3", 5.73),
    ("inception_v4", "inception_v4", 12.28),
    ("lcnetv2_small", "lcnetv2", None),
    ("levit_128s", "levit", 0.3),
    ("levit_conv_128s", "levit", 0.3),
    ("lowformer_b0", "lowformer", None),
    ("mambaout_femto", "mambaout", 1.16),
    ("maxvit_pico_rw_256", "maxxvit", 1.83),
    ("coatnet_nano_rw_224", "maxxvit", 2.41),
    ("maxvit_tiny_tf_224", "maxxvit", 5.6),
    ("poolformer_s12", "metaformer", 1.82),
    ("caformer_s18", "metaformer", 4.13),
    ("convformer_s18", "metaformer", 3.96),
    ("mixer_s32_224", "mlp_mixer", 1.0),
    ("gmlp_ti16_224", "mlp_mixer", 1.34),
    ("resmlp_12_224", "mlp_mixer", 3.01),
    ("mobilenetv3_small_050", "mobilenetv3", 0.03),
    ("mobilenetv3_large_100", "mobilenetv3", 0.23),
    ("lcnet_050", "mobilenetv3", 0.05),
    ("mobilenetv4_conv_small", "mobilenetv3", 0.19),
    ("mobilenetv4_hybrid_medium", "mobilenetv3", 1.29),
    ("mobilenetv5_base", "mobilenetv5", 20.05),
    ("mobilevit_xxs", "mobilevit", 0.42),
    ("mobilevitv2_050", "mobilevit", 0.48),
    ("mvitv2_tiny", "mvitv2", 4.7),
    ("naflexvit_base_patch16_gap", "naflexvit", 55.86),
    ("nasnetalarge", "nasnet", 23.89),
    ("nest_tiny", "nest", 5.83),
    ("nextvit_small", "nextvit", 5.8),
    ("nf_regnet_b0", "nfnet", 0.37),
    ("dm_nfnet_f0", "nfnet", 7.21),
    ("nf_resnet50", "nfnet", 5.46),
    ("pit_ti_224", "pit", 0.7),
    ("pnasnet5large", "pnasnet", 25.04),
    ("pvt_v2_b0", "pvt_v2", 0.57),
    ("qwen3_vit_88m", "qwen3_vit", None),
    ("rdnet_tiny", "rdnet", 5.06),
    ("regnetx_002", "regnet", 0.2),
    ("regnety_002", "regnet", 0.2),
    ("regnetz_005", "regnet", 0.52),
    ("repghostnet_050", "repghost", 0.05),
    ("repvit_m0_9", "repvit", 0.82),
    ("res2net50_48w_2s", "res2net", 4.18),
    ("resnest14d", "resnest", 2.76),
    ("resnet18", "resnet", 1.82),
    ("resnet50", "resnet", 4.11),
    ("resnet10t", "resnet", 0.7),
    ("seresnet18", "resnet", 1.82),
    ("resnext50_32x4d", "resnet", 4.26),
    ("ecaresnet26t", "resnet", 3.35),
    ("resnetv2_18", "resnetv2", 1.82),
    ("resnetv2_50x1_bit", "resnetv2", 4.23),
    ("rexnet_100", "rexnet", 0.41),
    ("selecsls42", "selecsls", 2.94),
    ("legacy_seresnet18", "senet", 1.82),
    ("sequencer2d_s", "sequencer", 4.96),
    ("shvit_s1", "shvit", 0.24),
    ("skresnet18", "sknet", 1.82),
    ("starnet_s050", "starnet", 0.09),
    ("swiftformer_xs", "swiftformer", 0.61),
    ("swin_tiny_patch4_window7_224", "swin_transformer", 4.51),
    ("swinv2_tiny_window8_256", "swin_transformer_v2", 5.96),
    ("swinv2_cr_tiny_224", "swin_transformer_v2_cr", 4.66),
    ("tiny_vit_5m_224", "tiny_vit", 1.27),
    ("tnt_s_patch16_224", "tnt", 5.25),
    ("tresnet_m", "tresnet", 5.75),
    ("twins_svt_small", "twins", 2.94),
    ("twins_pcpvt_small", "twins", 3.83),
    ("vgg11", "vgg", 7.61),
    ("visformer_tiny", "visformer", 1.27),
    ("vit_tiny_patch16_224", "vision_transformer", 1.26),
    ("vit_small_patch32_224", "vision_transformer", 1.15),
    ("vit_base_patch16_224", "vision_transformer", 17.58),
    ("vit_medium_patch16_gap_256", "vision_transformer", 10.59),
    ("flexivit_small", "vision_transformer", 5.35),
    ("vit_tiny_r_s16_p8_224", "vision_transformer_hybrid", 0.44),
    ("vit_relpos_small_patch16_224", "vision_transformer_relpos", 4.59),
    ("samvit_base_patch16_224", "vision_transformer_sam", 17.54),
    ("vitamin_small_224", "vitamin", 5.92),
    ("volo_d1_224", "volo", 6.94),
    ("ese_vovnet19b_dw", "vovnet", 1.34),
    ("legacy_xception", "xception", 8.4),
    ("xception41p", "xception_aligned", 9.25),
    ("xcit_nano_12_p16_224", "xcit", 0.56),
]


def build(name: str):
    """The model on meta with random weights, and its example input: (model, args, kwargs)."""
    import timm
    import torch

    from .common import on_meta

    model = on_meta(lambda: timm.create_model(name, pretrained=False))
    model.eval()
    size = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
    x = torch.randn(1, *size, device="meta")
    return model, (x,), {}


def entries():
    from .common import Entry

    for name, module, published in MODELS:
        yield Entry(
            name=f"timm/{name}", family="timm", group=module,
            builder="zoo.timm_models:build", builder_arg=name,
            published=published, published_source=PUBLISHED_SOURCE if published is not None else None,
        )
