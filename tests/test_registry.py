"""Names, aliases, tags and the errors a user sees for bad ones."""
from __future__ import annotations

import pytest

import hgzoo
from hgzoo._registry import UnknownModelError


def test_list_models_wildcard():
    assert hgzoo.list_models("pphgnetv2_*") == [f"pphgnetv2_b{i}" for i in range(7)]
    assert "resnet50_vd" in hgzoo.list_models()


@pytest.mark.parametrize(
    "alias, name",
    [("PPHGNet_small", "pphgnet_small"), ("HRNet_W18_C", "hrnet_w18_c"), ("ResNet50_vd", "resnet50_vd"),
     ("PPHGNetV2_B4", "pphgnetv2_b4"), ("PPLCNetV2_base", "pplcnetv2_base"), ("SE_HRNet_W64_C", "se_hrnet_w64_c")],
)
def test_paddle_spellings_are_aliases(alias, name):
    assert hgzoo.is_model(alias)
    model = hgzoo.create_model(alias, num_classes=3)
    assert model is not None and hgzoo.get_pretrained_cfg(alias) == hgzoo.get_pretrained_cfg(name)


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownModelError, match="pphgnet_small"):
        hgzoo.create_model("pphgnet_smal")
    assert not hgzoo.is_model("resnet50_vdx")


def test_unknown_tag_lists_existing_tags():
    with pytest.raises(UnknownModelError, match=r"pphgnet_small\.ssld_in1k"):
        hgzoo.create_model("pphgnet_small.nonexistent_tag")


def test_unknown_keyword_raises_type_error_naming_it():
    with pytest.raises(TypeError, match="not_an_option"):
        hgzoo.create_model("resnet18_vd", not_an_option=1)


def test_pretrained_cfgs_are_complete():
    for tag in hgzoo.list_pretrained():
        cfg = hgzoo.get_pretrained_cfg(tag)
        assert cfg.name == tag
        assert cfg.sources, f"{tag} names no source"  # which ones, exactly: tests/test_timm_weights.py
        if cfg.paddle_url:  # PaddleClas's weights, with PaddleClas's preprocessing
            assert cfg.paddle_url.startswith("https://") and cfg.paddle_url.endswith(".pdparams")
            assert cfg.size_rounding == "paddle" and cfg.resize_short in (232, 236, 256, 320)
            assert cfg.crop_size in (224, 320)
        else:  # timm's trainings and HRNet's originals, with timm's preprocessing
            assert cfg.size_rounding == "torchvision" and cfg.resize_backend == "pil"
        assert cfg.interpolation in ("bilinear", "bicubic") and cfg.resize_backend in ("cv2", "pil")
    every_arch_has_weights = {t.split(".")[0] for t in hgzoo.list_pretrained()}
    assert every_arch_has_weights == set(hgzoo.list_models())


def test_pphgnet_preprocessing_matches_paddleclas():
    small = hgzoo.get_pretrained_cfg("pphgnet_small")
    assert (small.resize_short, small.interpolation) == (236, "bicubic")
    tiny = hgzoo.get_pretrained_cfg("pphgnet_tiny")
    assert (tiny.resize_short, tiny.interpolation) == (232, "bicubic")
    assert hgzoo.get_pretrained_cfg("resnet50_vd").resize_short == 256
