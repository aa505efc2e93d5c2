"""One answer to "which preprocessing": ``PretrainedCfg.transforms()`` against PaddleClas's PIL pipeline computed here
with Pillow and numpy, and every caller (checkpoint, export, train.py) against the one resolver."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from image_samples import photos
from PIL import Image

import hgzoo
from hgzoo.checkpoint import data_config
from hgzoo.deploy.images import eval_transform
from hgzoo.preprocessing import resolve_preprocessing


def paddleclas_pil_eval(img: np.ndarray, resize_short: int, crop: int, mean, std) -> np.ndarray:
    """PaddleClas's ResizeImage(resize_short, backend="pil", interpolation="bicubic"), CropImage, NormalizeImage and
    ToCHWImage, written from their definitions: the other side ``int(round(side * resize_short / short))``, PIL's
    bicubic resize, the crop offset ``(side - crop) // 2``, ``(x / 255 - mean) / std``."""
    h, w = img.shape[:2]
    percent = resize_short / min(h, w)
    size = (int(round(w * percent)), int(round(h * percent)))
    resized = np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))
    top, left = (resized.shape[0] - crop) // 2, (resized.shape[1] - crop) // 2
    out = resized[top:top + crop, left:left + crop].astype(np.float32) / 255
    return ((out - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).transpose(2, 0, 1)


@pytest.mark.parametrize("tag, resize_short", [("pphgnet_small.ssld_in1k", 236), ("pphgnet_tiny.ssld_in1k", 232)])
def test_transforms_are_paddleclas_pil_pipeline(tag, resize_short):
    """A PP-HGNet tag's ``transforms()`` is PaddleClas's PIL evaluation pipeline, to within one level of 255 (torch's
    antialiased kernel follows Pillow's); a transform at another crop is told apart (the check can fail). The
    resize sizes are those of PaddleClas's PPHGNet_small.yaml and PPHGNet_tiny.yaml evaluation configs."""
    cfg = hgzoo.get_pretrained_cfg(tag)
    assert (cfg.resize_short, cfg.interpolation, cfg.resize_backend) == (resize_short, "bicubic", "pil")
    img = photos(("chelsea",))["chelsea"]
    ref = paddleclas_pil_eval(img, cfg.resize_short, cfg.crop_size, cfg.mean, cfg.std)
    ours = cfg.transforms()(torch.from_numpy(img).permute(2, 0, 1)).numpy()
    level = 1.0 / 255 / min(cfg.std)
    assert ours.shape == ref.shape and np.abs(ours - ref).max() <= level + 1e-5
    other = cfg.transforms(resize_short=resize_short + 8)(torch.from_numpy(img).permute(2, 0, 1)).numpy()
    assert other.shape == ref.shape and np.abs(other - ref).max() > 10 * level


def test_one_resolver_for_every_caller():
    """The tag's settings, a stored configuration on top, then overrides; the non-RGB rule once: every caller gets
    the same answer for the same question."""
    model = hgzoo.create_model("pplcnetv2_small", num_classes=4, in_chans=1)
    cfg = model.pretrained_cfg
    expected = {"resize_short": 219, "crop_size": 192, "interpolation": "bilinear", "resize_backend": "cv2",
                "size_rounding": "paddle", "mean": (0.5,), "std": (0.5,)}  # 192 * 256 / 224 = 219.4
    assert resolve_preprocessing(cfg, None, 1, crop_size=192) == expected
    assert cfg.data_config(in_chans=1, crop_size=192) == expected
    assert data_config(None, model, crop_size=192) == expected
    tf = eval_transform(cfg, 192, 1)
    assert [op for op in tf.transforms[-1].transforms if hasattr(op, "size")][0].size == 219
    stored = {"resize_short": 40, "crop_size": 32, "mean": [0.25], "std": [0.5], "unknown": 1}
    got = resolve_preprocessing(cfg, stored, 1, crop_size=64)
    assert (got["crop_size"], got["resize_short"], got["mean"]) == (64, 80, (0.25,))  # keeps the stored ratio
    with pytest.raises(TypeError, match="unknown key"):
        resolve_preprocessing(cfg, mean_=0)
    with pytest.raises(ValueError, match="3 values; the model takes 1 channels"):
        resolve_preprocessing(cfg, None, 1, mean=(0.1, 0.2, 0.3), std=(1, 1, 1))


def test_train_and_published_configs_come_from_the_resolver():
    """train.py's evaluation settings and a published folder's configuration are the resolver's."""
    from hgzoo.train.data import eval_data_config

    cfg = hgzoo.get_pretrained_cfg("pphgnet_small.ssld_in1k")
    run = {"img_size": 160, "eval_resize_short": None, "eval_interpolation": None, "eval_resize_backend": None,
           "mean": None, "std": None, "in_chans": 3}
    dc = eval_data_config(run, cfg)
    assert dc == resolve_preprocessing(cfg, crop_size=160) and dc["resize_short"] == round(160 * 236 / 224)
    moved = cfg.with_data_config(dc)
    assert (moved.crop_size, moved.resize_short, moved.data_config()) == (160, dc["resize_short"], dc)
