"""D-FINE from Hugging Face transformers on hgzoo's pretrained backbone: the weights go in through the key map,
a few training steps on scikit-image's photos, then boxes.

    python examples/dfine_transformers.py --weights pphgnetv2_b0.safetensors   # hgzoo's weights from a file
    python examples/dfine_transformers.py --pretrained --steps 30              # hgzoo's resolver (downloads once)
    python examples/dfine_transformers.py --arch resnet18_vd --pretrained       # RT-DETR's ResNet-vd backbone

The detector is transformers' ``DFineForObjectDetection`` with a small configuration (a 128-wide hybrid encoder, two
decoder layers, 30 queries) and random heads. Its backbone is transformers' own ``HGNetV2Backbone`` (or
``RTDetrResNetBackbone`` for ``resnet*_vd``), built from :func:`hgzoo.integrations.transformers.hf_backbone_config`
and filled with hgzoo's weights by :func:`~hgzoo.convert.transformers_detectors.hgzoo_to_hf`, strictly; the example
then checks that every backbone tensor equals the file's. ``--weights`` is any file hgzoo reads (hgzoo's, PaddleClas's
``.pdparams`` or timm's layout); ``--pretrained`` alone takes hgzoo's default tag of ``--arch``.

Two things differ from hgzoo's own backbone, by transformers' design: its detectors freeze every backbone BatchNorm
(statistics and affine), and its PP-HGNetV2 pads the stem max-pool with zeros where PaddleClas (and hgzoo) pad with
-inf, which changes B0-B3's features where the stem's affine block has a negative bias (see
docs/detectors_transformers.md). Images are normalized with the backbone's ImageNet mean and std.

Everything transformers builds here comes from configs written in code (no ``from_pretrained``), so nothing is
downloaded except, with ``--pretrained`` and no ``--weights``, hgzoo's weights by hgzoo's resolver.

The training data are three photos with boxes drawn by hand: enough to show the steps and the outputs, not to train a
detector. After training, the backbone is taken back out of the detector's state dict with ``hf_to_hgzoo``.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
import transformers
from torch import nn

import hgzoo
from hgzoo.convert.transformers_detectors import hf_to_hgzoo, hgzoo_to_hf
from hgzoo.integrations.transformers import hf_backbone_config
from hgzoo.pretrained import IMAGENET_MEAN, IMAGENET_STD

CLASSES = ("cat", "eye", "person", "helmet", "shuttle", "cup", "spoon")
# Boxes (x1, y1, x2, y2, in pixels) drawn by hand on scikit-image's photos.
ANNOTATIONS: dict[str, list[tuple[tuple[float, float, float, float], str]]] = {
    "chelsea": [((0, 0, 400, 300), "cat"), ((135, 85, 210, 148), "eye"), ((293, 108, 345, 165), "eye")],
    "astronaut": [((20, 15, 365, 512), "person"), ((278, 343, 508, 512), "helmet"), ((355, 0, 470, 285), "shuttle")],
    "coffee": [((172, 18, 410, 310), "cup"), ((325, 65, 425, 328), "spoon")],
}


def build_detector(arch: str, num_labels: int = len(CLASSES)) -> transformers.DFineForObjectDetection:
    """transformers' D-FINE, small, around transformers' backbone of hgzoo's ``arch`` (strides 8, 16, 32)."""
    name, kwargs = hf_backbone_config(arch, out_indices=(2, 3, 4))
    backbone = getattr(transformers, name)(**kwargs)
    channels = list(backbone.hidden_sizes[1:])
    config = transformers.DFineConfig(
        backbone_config=backbone, num_labels=num_labels, encoder_in_channels=channels, feat_strides=[8, 16, 32],
        d_model=128, encoder_hidden_dim=128, decoder_in_channels=[128] * 3, encoder_ffn_dim=256, decoder_ffn_dim=256,
        decoder_layers=2, decoder_n_points=[3, 6, 3], num_queries=30, num_denoising=10, hidden_expansion=0.34,
        depth_mult=0.34, id2label=dict(enumerate(CLASSES)), label2id={c: i for i, c in enumerate(CLASSES)})
    return transformers.DFineForObjectDetection(config)


def load_backbone(detector: nn.Module, arch: str, weights: str | None, pretrained: bool) -> dict[str, torch.Tensor]:
    """hgzoo's weights of ``arch`` (a file, or hgzoo's resolver) into the detector's backbone, strictly; returns them
    in transformers' names."""
    ours = hgzoo.create_model(arch, pretrained=pretrained or weights is not None, pretrained_file=weights,
                              features_only=True)
    theirs = hgzoo_to_hf(ours.state_dict(), arch)
    detector.model.backbone.model.load_state_dict(theirs)  # strict: every tensor, by name and shape
    return theirs


def weights_arrived(detector: nn.Module, expected: dict[str, torch.Tensor]) -> tuple[int, int]:
    """How many of the detector's backbone tensors equal ``expected`` (the frozen BatchNorms keep no batch count)."""
    state = detector.model.backbone.model.state_dict()
    same = sum(torch.equal(state[k], v) for k, v in expected.items() if k in state)
    return same, len(state)


def training_data(img_size: int) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """The photos resized to ``img_size`` square and normalized, and D-FINE's targets (class index, box as centre x,
    centre y, width, height relative to the image)."""
    import skimage.data

    images, labels = [], []
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for name, objects in ANNOTATIONS.items():
        photo = torch.from_numpy(getattr(skimage.data, name)()[..., :3].copy()).permute(2, 0, 1).float() / 255
        h, w = photo.shape[1:]
        resized = nn.functional.interpolate(photo[None], size=(img_size, img_size), mode="bilinear", antialias=True)
        images.append((resized[0] - mean) / std)
        boxes = torch.tensor([box for box, _ in objects], dtype=torch.float32) / torch.tensor([w, h, w, h])
        labels.append({"class_labels": torch.tensor([CLASSES.index(c) for _, c in objects]),
                       "boxes": torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], dim=1)})
    return torch.stack(images), labels


def train(detector: nn.Module, images: torch.Tensor, labels: list[dict], steps: int, lr: float) -> list[float]:
    """``steps`` AdamW steps on the batch; the losses."""
    optimizer = torch.optim.AdamW([p for p in detector.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    detector.train()
    losses = []
    for step in range(steps):
        t = time.perf_counter()
        loss = detector(pixel_values=images, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        print(f"step {step + 1}/{steps} ({time.perf_counter() - t:.1f} s): loss {losses[-1]:.3f}")
    return losses


@torch.no_grad()
def detect(detector: nn.Module, images: torch.Tensor, top: int) -> list[dict[str, torch.Tensor]]:
    """The ``top`` best boxes per image (x1, y1, x2, y2 in the input's pixels), with labels and scores, by
    transformers' own post-processing."""
    detector.eval()
    outputs = detector(pixel_values=images)
    processor = transformers.RTDetrImageProcessor()
    results = processor.post_process_object_detection(outputs, threshold=0.0,
                                                      target_sizes=[images.shape[-2:]] * len(images))
    return [{k: v[:top] for k, v in r.items()} for r in results]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="pphgnetv2_b0", help="pphgnetv2_b0..b6 or resnet*_vd")
    parser.add_argument("--weights", default=None, help="a weights file of --arch that hgzoo reads")
    parser.add_argument("--pretrained", action="store_true", help="hgzoo's default weights of --arch")
    parser.add_argument("--img-size", type=int, default=320, help="square input side (a multiple of 32)")
    parser.add_argument("--steps", type=int, default=3, help="training steps on the three annotated photos")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--top", type=int, default=3, help="boxes printed per photo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.img_size % 32:
        parser.error(f"--img-size must be a multiple of 32 (the backbone's stride), got {args.img_size}")

    torch.manual_seed(args.seed)
    detector = build_detector(args.arch)
    arrived = (0, 0)
    if args.weights or args.pretrained:
        expected = load_backbone(detector, args.arch, args.weights, args.pretrained)
        arrived = weights_arrived(detector, expected)
        print(f"backbone: {arrived[0]} of its {arrived[1]} tensors equal hgzoo's weights "
              f"({args.weights or 'hgzoo pretrained'})")
    else:
        print("backbone: transformers' random initialization (give --weights FILE or --pretrained)")
    images, labels = training_data(args.img_size)
    losses = train(detector, images, labels, args.steps, args.lr)
    results = detect(detector, images, args.top)
    for name, r in zip(ANNOTATIONS, results):
        print(f"{name}: " + "; ".join(f"{CLASSES[int(c)]} {s:.2f} [{', '.join(f'{v:.0f}' for v in b.tolist())}]"
                                      for c, s, b in zip(r["labels"], r["scores"], r["boxes"])))
    trained_backbone = hf_to_hgzoo(detector.state_dict(), args.arch)  # back in hgzoo's names, strictly
    return {"arrived": arrived, "losses": losses, "detections": results, "backbone": trained_backbone}


if __name__ == "__main__":
    main()
