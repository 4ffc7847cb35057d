"""torchvision: classification models and a detector, random weights.

Published GMACs: the ``_ops`` figure ("GFLOPS", which torchvision counts as multiply-adds) in the
``meta`` of each model's weights enum, read from the installed torchvision at run time.
"""

from __future__ import annotations

# (builder function name, weights enum name, input height/width, note)
MODELS = [
    ("resnet50", "ResNet50_Weights", 224, ""),
    ("vit_b_16", "ViT_B_16_Weights", 224, ""),
    ("convnext_tiny", "ConvNeXt_Tiny_Weights", 224, ""),
    ("mobilenet_v3_large", "MobileNet_V3_Large_Weights", 224, ""),
    ("efficientnet_b0", "EfficientNet_B0_Weights", 224, ""),
    ("efficientnet_v2_s", "EfficientNet_V2_S_Weights", 384, ""),
    ("swin_t", "Swin_T_Weights", 224, ""),
    ("swin_v2_t", "Swin_V2_T_Weights", 256, ""),
    ("maxvit_t", "MaxVit_T_Weights", 224, ""),
    ("regnet_y_400mf", "RegNet_Y_400MF_Weights", 224, ""),
    ("densenet121", "DenseNet121_Weights", 224, ""),
    ("inception_v3", "Inception_V3_Weights", 299, ""),
    ("shufflenet_v2_x1_0", "ShuffleNet_V2_X1_0_Weights", 224, ""),
    ("squeezenet1_1", "SqueezeNet1_1_Weights", 224, ""),
]

DETECTOR = "fasterrcnn_mobilenet_v3_large_320_fpn"
DETECTOR_WEIGHTS = "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights"


def published(weights_enum: str) -> float | None:
    from torchvision import models
    from torchvision.models import detection

    enum = getattr(models, weights_enum, None) or getattr(detection, weights_enum, None)
    if enum is None:
        return None
    first = next(iter(enum))
    return first.meta.get("_ops")


def build(arg):
    import torch
    from torchvision import models

    from .common import on_meta

    name, size = arg
    kwargs = {"init_weights": True} if name == "inception_v3" else {}
    model = on_meta(lambda: getattr(models, name)(weights=None, **kwargs)).eval()
    return model, (torch.randn(1, 3, size, size, device="meta"),), {}


def build_detector(where: str):
    """The detector in eval mode on one 3x480x640 image (a list of images, as torchvision takes them).
    ``where`` is "meta" (built on meta) or "real" (random weights on the CPU: the count swaps them
    for meta and falls back to a real pass where the model needs values)."""
    import torch
    from torchvision.models import detection

    from .common import on_meta, real

    def make():
        return getattr(detection, DETECTOR)(weights=None, weights_backbone=None)

    if where == "meta":
        model = on_meta(make).eval()
        image = torch.randn(3, 480, 640, device="meta")
    else:
        torch.manual_seed(0)
        model = real(make).eval()
        image = torch.rand(3, 480, 640)
    return model, ([image],), {}


def entries():
    from .common import Entry

    source = "torchvision weights enum meta['_ops'] (GFLOPS = GMACs)"
    for name, weights, size, note in MODELS:
        yield Entry(
            name=f"torchvision/{name}", family="torchvision", group="classification",
            builder="zoo.torchvision_models:build", builder_arg=(name, size),
            published=f"zoo.torchvision_models:published:{weights}", published_source=source, note=note or f"1x3x{size}x{size}",
        )
    for where in ("meta", "real"):
        yield Entry(
            name=f"torchvision/{DETECTOR}" + ("" if where == "meta" else "-real-weights"),
            family="torchvision", group="detection",
            builder="zoo.torchvision_models:build_detector", builder_arg=where,
            published=None,
            note="eval, one 3x480x640 image" + ("" if where == "meta" else ", random weights on the CPU"),
        )
