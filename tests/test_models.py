"""The model contract, checked for every registered model."""
from __future__ import annotations

import pytest
import torch

import hgzoo

# Trainable parameters as PaddleClas builds each model (BN running statistics excluded).
# PP-LCNetV2: without PaddleClas's unused pre-fused `dw_conv` placeholder (see hgzoo/models/pplcnetv2.py).
PARAMS = {
    "pphgnet_tiny": 14_735_864, "pphgnet_small": 24_360_872, "pphgnet_base": 71_578_184,
    "pphgnetv2_b0": 5_996_550, "pphgnetv2_b1": 6_343_158, "pphgnetv2_b2": 11_221_356,
    "pphgnetv2_b3": 16_292_216, "pphgnetv2_b4": 19_796_680, "pphgnetv2_b5": 39_569_064,
    "pphgnetv2_b6": 75_256_776,
    "pplcnetv2_small": 4_128_552, "pplcnetv2_base": 6_687_208, "pplcnetv2_large": 10_542_120,
    "hrnet_w18_c": 21_295_164, "hrnet_w30_c": 37_708_380, "hrnet_w32_c": 41_228_840,
    "hrnet_w40_c": 57_553_320, "hrnet_w44_c": 67_061_144, "hrnet_w48_c": 77_466_024,
    "hrnet_w64_c": 128_056_104, "se_hrnet_w64_c": 128_991_264,
    "resnet18_vd": 11_712_968, "resnet34_vd": 21_821_128, "resnet50_vd": 25_576_264,
    "resnet101_vd": 44_568_392, "resnet152_vd": 60_212_040, "resnet200_vd": 74_738_504,
}
MODELS = hgzoo.list_models()


def test_every_variant_is_registered():
    assert sorted(PARAMS) == MODELS


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN statistics and affine terms, so that fusing them is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 0.6 + 0.3)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


@pytest.mark.parametrize("name", MODELS)
def test_contract(name):
    torch.manual_seed(0)
    model = hgzoo.create_model(name, num_classes=7)
    assert model.num_classes == 7
    assert isinstance(model.get_classifier(), torch.nn.Linear)
    red = model.feature_info[-1]["reduction"]
    assert [f["reduction"] for f in model.feature_info] == sorted(f["reduction"] for f in model.feature_info)
    # feature_info describes forward_intermediates's levels: hgzoo's numbering, the 4 stages (timm's registry's
    # numbering: test_timm_contract.py::test_timm_registry_pools_and_levels)
    with torch.no_grad():
        inter = model.eval().forward_intermediates(torch.randn(1, 3, 64, 64), intermediates_only=True)
    assert len(model.feature_info) == len(inter) == 4
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == [(t.shape[1], 64 // t.shape[2])
                                                                            for t in inter]
    model.train()
    for h, w in ((64, 64), (96, 64)):
        x = torch.randn(2, 3, h, w)
        feats = model.forward_features(x)
        assert feats.shape == (2, model.num_features, -(-h // red), -(-w // red))
        assert model.forward_head(feats, pre_logits=True).shape == (2, model.head_hidden_size)
        out = model.forward_head(feats)
        assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters()), "some parameter got no gradient"

    model.reset_classifier(3)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)
    model.reset_classifier(0)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, model.head_hidden_size)


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_and_fuse(name):
    """PaddleClas's parameter count; then model.fuse() (hgzoo.reparameterize in place, the name timm's contract
    uses) leaves no BatchNorm and the same logits (relative 1e-5) as the unfused model with non-trivial BN
    statistics; a second call, as reparameterize or as convert_to_deploy, changes nothing. (A features-only
    backbone's convert_to_deploy: test_features.py::test_features_match_feature_info.)"""
    torch.manual_seed(0)
    model = hgzoo.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name], "not PaddleClas's parameter count"
    model = randomize_bn(model).eval()
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        before = model(x)
        assert model.fuse() is model
        after = model(x)
        assert hgzoo.reparameterize(model) is model and model.convert_to_deploy() is model
        again = model(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "a BatchNorm was left unfused"
    rel = (after - before).abs().max() / before.abs().max()
    assert rel < 1e-5, f"fuse changed the logits by {rel:.2e} (relative)"
    assert torch.equal(again, after), "a second fuse changed the logits"


# One variant per family: the checkpointed code path is the family's, not the variant's.
SMALLEST = ["pphgnet_tiny", "pphgnetv2_b0", "pplcnetv2_small", "hrnet_w18_c", "resnet18_vd"]


@pytest.mark.parametrize("name", SMALLEST)
def test_grad_checkpointing_gives_same_gradients(name):
    torch.manual_seed(0)
    model = hgzoo.create_model(name, num_classes=5).train()
    x = torch.randn(2, 3, 64, 64)

    def grads():
        torch.manual_seed(0)  # the same dropout / drop-path masks in both runs
        model.zero_grad()
        model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.set_grad_checkpointing(True)
    ckpt = grads()
    for a, b in zip(plain, ckpt):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", SMALLEST)
def test_drop_path_is_active_in_training_only(name):
    model = hgzoo.create_model(name, num_classes=5, drop_path_rate=0.3, drop_rate=0.0).train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    b = model(x)
    assert not torch.allclose(a, b), "drop_path_rate had no effect in training"
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize("name", ["pphgnetv2_b0", "pplcnetv2_small", "hrnet_w18_c", "resnet18_vd", "pphgnet_tiny"])
def test_in_chans(name):
    model = hgzoo.create_model(name, in_chans=1, num_classes=4).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 4)
