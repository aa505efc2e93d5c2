"""examples/detection.py: Faster R-CNN with torchvision's FPN on an hgzoo backbone trains what is not
frozen, leaves the frozen stages and every BatchNorm statistic (norm_eval) untouched, and detects."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("skimage")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "detection.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("hgzoo_example_detection", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


detection = _load_example()
# Fewer proposals and sampled RoIs than torchvision's defaults: the same code paths, a faster CPU test.
FAST = {"rpn_pre_nms_top_n_train": 300, "rpn_post_nms_top_n_train": 300, "rpn_pre_nms_top_n_test": 300,
        "rpn_post_nms_top_n_test": 100, "box_batch_size_per_image": 128, "box_score_thresh": 0.0}


@torch.no_grad()
def _calibrate_batch_norm(model, images: list[torch.Tensor]) -> None:
    """Give the random backbone the BatchNorm statistics pretrained weights would have (of its inputs): its
    initial ones (mean 0, variance 1) normalize nothing, and eval-mode scores then saturate."""
    batch = model.transform(images)[0].tensors
    bns = [m for m in model.backbone.body.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a plain average
        bn.train()
    model.backbone.body(batch)
    for bn in bns:
        bn.momentum = 0.1
        bn.eval()


def _check_detections(result: dict[str, torch.Tensor], image: torch.Tensor, num_classes: int,
                      at_least: int = 1) -> None:
    assert set(result) == {"boxes", "labels", "scores"}
    n = len(result["scores"])
    assert at_least <= n <= 100
    assert result["boxes"].shape == (n, 4) and result["labels"].shape == (n,)
    assert result["labels"].dtype == torch.int64 and result["boxes"].dtype == torch.float32
    boxes, (h, w) = result["boxes"], image.shape[-2:]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert ((result["labels"] >= 1) & (result["labels"] < num_classes)).all()
    scores = result["scores"]
    assert ((scores >= 0) & (scores <= 1)).all() and (scores[:-1] >= scores[1:]).all()


def test_training_step_trains_only_what_is_not_frozen_then_detects():
    torch.manual_seed(0)
    model = detection.build_detector("pphgnetv2_b0", out_indices=(1, 2, 3), freeze_at=1, norm_eval=True,
                                     img_size=224, **FAST)
    assert model.backbone.out_channels == 256
    images, targets = detection.training_data()
    _calibrate_batch_norm(model, images)
    body = "backbone.body.model."
    frozen = (body + "stem.", body + "stages.0.")  # freeze_at=1: the stem and the first stage
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = dict(model.named_parameters())
    assert all(not params[k].requires_grad for k in params if k.startswith(frozen))

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005, momentum=0.9,
                                weight_decay=1e-4)
    losses = detection.train_step(model, optimizer, images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(math.isfinite(v) for v in losses.values()), losses

    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not [k for k in changed if k.startswith(frozen)], "a frozen parameter or buffer changed"
    bn_stats = [k for k in before if k.startswith("backbone.body.") and k.endswith(("running_mean", "running_var"))]
    assert bn_stats and not changed.intersection(bn_stats), "norm_eval: BatchNorm statistics changed"
    for stage in (1, 2, 3):  # the stages that are not frozen train
        prefix = f"{body}stages.{stage}."
        names = [k for k in params if k.startswith(prefix)]
        assert names and all(params[k].grad is not None for k in names), stage
        assert any(k in changed for k in names), stage
    fpn = [k for k in params if k.startswith("backbone.fpn.")]
    assert fpn and all(k in changed for k in fpn)
    assert all(params[k].grad is None for k in params if k.startswith(frozen))

    image = detection.load_image("chelsea")
    _check_detections(detection.detect(model, image), image, len(detection.CLASSES))


def test_command_line(capsys):
    # A random backbone under norm_eval: the scores may all saturate to 0, so no detection is required.
    result = detection.main(["--model", "resnet18_vd", "--img-size", "128", "--steps", "1", "--image", "coffee",
                             "--freeze-at", "2", "--norm-eval", "--score-thresh", "0",
                             "--box-batch-size", "64"])
    out = capsys.readouterr().out
    assert "frozen stages 2, norm_eval True" in out
    assert "step 1/1" in out and "loss_classifier" in out and "coffee:" in out
    _check_detections(result, detection.load_image("coffee"), len(detection.CLASSES), at_least=0)
