"""Faster R-CNN with an hgzoo backbone and torchvision's FPN: training steps and an inference on real photos.

    python examples/detection.py                                    # pphgnetv2_b0, random init, one step
    python examples/detection.py --model resnet50_vd --pretrained --steps 30 --img-size 512
    python examples/detection.py --model hrnet_w18_c --feature-mode branches --pretrained --image photo.jpg

With ``--pretrained`` the backbone is ``hgzoo.create_model(name, pretrained=True, features_only=True,
out_indices=(1, 2, 3), freeze_at=1, norm_eval=True)``: strides 8, 16 and 32, the stem and the first stage
frozen, and every BatchNorm kept in eval mode (a detector trains on a few large images per GPU, too few
for batch statistics). That is torchvision's own recipe for its ResNet-FPN detectors
(``trainable_backbone_layers=3``, frozen BN), and mmdetection's ``frozen_stages=1, norm_eval=True``.
Without weights nothing is frozen by default (``--freeze-at``, ``--norm-eval`` override).
torchvision's FPN adds a max-pooled stride-64 level.

The training data are two of scikit-image's photos with boxes drawn by hand (a person and a helmet; a cup
and a spoon): enough to show one training step and the detector's outputs, not to train a detector. With
``--pretrained --steps 30`` the detector learns those four boxes.
"""
from __future__ import annotations

import argparse
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

import hgzoo
from hgzoo.pretrained import IMAGENET_MEAN, IMAGENET_STD

CLASSES = ("__background__", "person", "helmet", "cup", "spoon")
# Boxes (x1, y1, x2, y2, in pixels) drawn by hand on scikit-image's photos.
ANNOTATIONS: dict[str, list[tuple[tuple[float, float, float, float], str]]] = {
    "astronaut": [((20, 15, 365, 512), "person"), ((278, 343, 508, 512), "helmet")],
    "coffee": [((172, 18, 410, 310), "cup"), ((325, 65, 425, 328), "spoon")],
}


class BackboneWithFPN(nn.Module):
    """An hgzoo features-only backbone followed by torchvision's FPN, with the ``out_channels`` attribute
    torchvision's detectors read. ``forward`` returns the FPN maps in a dict: ``"0"``, ``"1"``, ... (one per
    backbone level, finest first) and ``"pool"`` (the extra max-pooled level)."""

    def __init__(self, backbone: nn.Module, out_channels: int = 256) -> None:
        super().__init__()
        self.body = backbone
        self.fpn = FeaturePyramidNetwork(backbone.feature_info.channels(), out_channels,
                                         extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def build_detector(
    model_name: str = "pphgnetv2_b0",
    *,
    pretrained: bool = False,
    out_indices: int | Sequence[int] = (1, 2, 3),
    feature_mode: str | None = None,
    freeze_at: int | None = 1,
    norm_eval: bool = True,
    img_size: int = 512,
    num_classes: int = len(CLASSES),
    **detector_kwargs,
) -> FasterRCNN:
    """Faster R-CNN on ``BackboneWithFPN(hgzoo.create_model(model_name, features_only=True, ...))``.

    Images are resized so that their short side is ``img_size`` (the long side at most 5/3 of it) and
    normalized with the backbone's own mean and std. One anchor size per level, four times its stride.
    ``detector_kwargs`` go to torchvision's ``FasterRCNN`` (``box_batch_size_per_image``, ...).
    """
    backbone = hgzoo.create_model(model_name, pretrained=pretrained, features_only=True, out_indices=out_indices,
                                  feature_mode=feature_mode, freeze_at=freeze_at, norm_eval=norm_eval)
    strides = backbone.feature_info.reduction()
    strides.append(2 * strides[-1])  # the FPN's max-pooled level
    anchors = AnchorGenerator(sizes=tuple((4 * s,) for s in strides), aspect_ratios=((0.5, 1.0, 2.0),) * len(strides))
    roi_pool = MultiScaleRoIAlign([str(i) for i in range(len(strides) - 1)], output_size=7, sampling_ratio=2)
    cfg = backbone.pretrained_cfg
    return FasterRCNN(
        BackboneWithFPN(backbone), num_classes=num_classes, min_size=img_size, max_size=img_size * 5 // 3,
        image_mean=list(cfg.mean if cfg else IMAGENET_MEAN), image_std=list(cfg.std if cfg else IMAGENET_STD),
        rpn_anchor_generator=anchors, box_roi_pool=roi_pool, **detector_kwargs,
    )


def load_image(name_or_path: str) -> torch.Tensor:
    """A float RGB image (3, H, W) in [0, 1]: one of scikit-image's photos by name, or an image file."""
    import skimage.data

    if hasattr(skimage.data, name_or_path) and not name_or_path.startswith("_"):
        array = getattr(skimage.data, name_or_path)()
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"skimage.data.{name_or_path} is not an RGB photo; try astronaut, coffee or chelsea")
        return torch.from_numpy(array).permute(2, 0, 1).float() / 255
    from torchvision.io import ImageReadMode, decode_image

    if not Path(name_or_path).is_file():
        raise FileNotFoundError(f"{name_or_path!r} is neither an image file nor a scikit-image photo "
                                "(astronaut, coffee, chelsea, ...)")
    return decode_image(name_or_path, mode=ImageReadMode.RGB).float() / 255


def training_data() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The annotated photos and their targets, as torchvision's detectors take them."""
    images, targets = [], []
    for name, objects in ANNOTATIONS.items():
        images.append(load_image(name))
        targets.append({
            "boxes": torch.tensor([box for box, _ in objects], dtype=torch.float32),
            "labels": torch.tensor([CLASSES.index(label) for _, label in objects], dtype=torch.int64),
        })
    return images, targets


def train_step(model: FasterRCNN, optimizer: torch.optim.Optimizer, images: list[torch.Tensor],
               targets: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """One optimizer step on the batch; returns the losses."""
    model.train()
    losses = model(images, targets)
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()
    return {k: v.detach().item() for k, v in losses.items()}


@torch.no_grad()
def detect(model: FasterRCNN, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Boxes (x1, y1, x2, y2 in the image's pixels), labels and scores, best first."""
    model.eval()
    return model([image])[0]


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(i) for i in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,3, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="pphgnetv2_b0", help="any hgzoo model (python -m hgzoo models)")
    parser.add_argument("--pretrained", action="store_true", help="ImageNet weights for the backbone")
    parser.add_argument("--img-size", type=int, default=512, help="short side the detector resizes images to")
    parser.add_argument("--out-indices", default=(1, 2, 3), type=_int_list,
                        help="backbone levels fed to the FPN, comma-separated (default: 1,2,3)")
    parser.add_argument("--feature-mode", default=None, help="HRNet: incre (default) or branches")
    parser.add_argument("--freeze-at", type=int, default=None,
                        help="freeze the stem and this many stages (-1: nothing, 0: the stem); "
                             "default: 1 with --pretrained, else -1")
    parser.add_argument("--norm-eval", action=argparse.BooleanOptionalAction, default=None,
                        help="keep the backbone's BatchNorms in eval mode; default: on with --pretrained, else off "
                             "(a random backbone's running statistics are their initial values)")
    parser.add_argument("--steps", type=int, default=1, help="training steps on the two annotated photos")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--image", default="astronaut", help="photo to detect in: a scikit-image name or a file")
    parser.add_argument("--score-thresh", type=float, default=0.05, help="smallest score kept")
    parser.add_argument("--box-batch-size", type=int, default=512,
                        help="RoIs sampled per image for the box head's loss (torchvision's default: 512)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    image = load_image(args.image)  # a wrong path fails before any work
    freeze_at = args.freeze_at if args.freeze_at is not None else (1 if args.pretrained else -1)
    norm_eval = args.norm_eval if args.norm_eval is not None else args.pretrained
    model = build_detector(args.model, pretrained=args.pretrained, out_indices=args.out_indices,
                           feature_mode=args.feature_mode, freeze_at=freeze_at, norm_eval=norm_eval,
                           img_size=args.img_size, box_score_thresh=args.score_thresh,
                           box_batch_size_per_image=args.box_batch_size)
    backbone = model.backbone.body
    trainable = [p for p in model.parameters() if p.requires_grad]
    print(f"{args.model}: levels {backbone.feature_info}, frozen stages {backbone.frozen_stages}, "
          f"norm_eval {backbone.norm_eval}; {sum(p.numel() for p in trainable) / 1e6:.2f}M trainable parameters")

    optimizer = torch.optim.SGD(trainable, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    images, targets = training_data()
    for step in range(args.steps):
        t = time.perf_counter()
        losses = train_step(model, optimizer, images, targets)
        print(f"step {step + 1}/{args.steps} ({time.perf_counter() - t:.1f} s): total {sum(losses.values()):.4f}, "
              + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))

    result = detect(model, image)
    print(f"{args.image}: {len(result['scores'])} detections with score >= {args.score_thresh}, the best 10:")
    if not len(result["scores"]) and not args.pretrained:
        print("  (a random backbone's BatchNorm statistics are still near their initial values after a few steps; "
              "try --pretrained)")
    for box, label, score in zip(result["boxes"][:10], result["labels"][:10], result["scores"][:10]):
        print(f"  {CLASSES[label]:>7s} {score:.3f}  [{', '.join(f'{v:.0f}' for v in box.tolist())}]")
    return result


if __name__ == "__main__":
    main()
