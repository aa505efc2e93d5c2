"""Names, aliases, tags and the errors a user sees for bad ones."""
from __future__ import annotations

import pytest
from torch import nn

import hgzoo
from hgzoo._registry import UnknownModelError
from hgzoo.models.resnet_vd import ResNetVd


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


# --- the family files: one weights table each, checked registration, the family record --------------------------

FAMILY_FILES = ("pphgnet", "pplcnetv2", "hrnet", "resnet_vd")


@pytest.mark.parametrize("module", FAMILY_FILES)
def test_every_weights_table_entry_has_a_builder(module):
    import importlib

    table = importlib.import_module(f"hgzoo.models.{module}").default_cfgs
    assert sorted(table) == hgzoo.list_models(module=module)
    assert sorted(f"{a}.{c.tag}" for a, cfgs in table.items() for c in cfgs) == hgzoo.list_pretrained(
        [f"{a}.*" for a in table])


def test_registration_is_checked():
    from hgzoo._registry import register_model
    from hgzoo.models.resnet_vd import default_cfgs

    def resnet18_vd() -> ResNetVd: ...

    def not_in_the_table() -> ResNetVd: ...

    def no_family() -> nn.Module: ...

    with pytest.raises(ValueError, match="registered twice"):
        register_model("ResNet18_vd", default_cfgs)(resnet18_vd)
    with pytest.raises(ValueError, match="no entry in its weights table"):
        register_model("X", default_cfgs)(not_in_the_table)
    with pytest.raises(TypeError, match="ModelFamily"):
        register_model("X", None)(no_family)
    assert not hgzoo.is_model("not_in_the_table") and not hgzoo.is_model("no_family")


def test_weights_table_keys_are_checked():
    from hgzoo.pretrained import generate_default_cfgs, paddle_cfg, timm_cfg

    with pytest.raises(ValueError, match="must be 'arch.tag'"):
        generate_default_cfgs({"resnet18_vd": paddle_cfg("ResNet18_vd_pretrained")})
    with pytest.raises(ValueError, match="keep timm's tag"):
        generate_default_cfgs({"resnet50_vd.mine": timm_cfg("resnet50d.a1_in1k", crop_pct=0.95,
                                                            interpolation="bicubic")})
    cfgs = generate_default_cfgs({"a.x": paddle_cfg("A_pretrained"), "b.y": paddle_cfg("B_pretrained"),
                                  "a.z": paddle_cfg("A_ssld_pretrained")})
    assert {k: [c.name for c in v] for k, v in cfgs.items()} == {"a": ["a.x", "a.z"], "b": ["b.y"]}


@pytest.mark.parametrize("name, family, paper", [
    ("pphgnet_small", "PP-HGNet", None), ("PPHGNetV2_B4", "PP-HGNetV2", None),
    ("pplcnetv2_base", "PP-LCNetV2", "cui2021pplcnet"), ("se_hrnet_w64_c", "HRNet", "wang2020hrnet"),
    ("hrnet_w18", "HRNet", "wang2020hrnet"), ("resnet200_vd", "ResNet-vd", "he2019bag"),
])
def test_family_records_name_and_cite_the_family(name, family, paper):
    from hgzoo._registry import PADDLECLAS_CITATION, model_family

    record = model_family(name)
    assert record.name == family and record.citations[0] == PADDLECLAS_CITATION
    assert [c.split("{")[1].split(",")[0] for c in record.citations[1:]] == ([paper] if paper else [])
