"""Backbone use: features_only outputs, out_indices, loading weights into a feature model, frozen BN."""
from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file

import hgzoo
from hgzoo.layers import FrozenBatchNorm2d, freeze_batch_norm, unfreeze_batch_norm

MODELS = hgzoo.list_models()


@pytest.mark.parametrize("name", MODELS)
def test_features_match_feature_info(name):
    model = hgzoo.create_model(name, features_only=True).eval()
    info = model.feature_info
    assert all(isinstance(r, int) for r in info.reduction())
    with torch.no_grad():
        for h, w in ((64, 64), (97, 130)):
            feats = model(torch.randn(1, 3, h, w))
            assert len(feats) == len(info)
            for f, c, r in zip(feats, info.channels(), info.reduction()):
                assert f.shape == (1, c, -(-h // r), -(-w // r)), (name, h, w, f.shape, c, r)


def test_out_indices_forms_and_errors():
    full = hgzoo.create_model("resnet18_vd", features_only=True)
    assert full.feature_info.reduction() == [4, 8, 16, 32]
    assert hgzoo.create_model("resnet18_vd", features_only=True, out_indices=(1, 2, 3)).feature_info.reduction() == [8, 16, 32]
    assert hgzoo.create_model("resnet18_vd", features_only=True, out_indices=(-2, -1)).feature_info.reduction() == [16, 32]
    assert hgzoo.create_model("resnet18_vd", features_only=True, out_indices=2).feature_info.reduction() == [16, 32]
    with pytest.raises(ValueError, match=r"valid indices are 0\.\.3"):
        hgzoo.create_model("resnet18_vd", features_only=True, out_indices=(1, 4))
    with pytest.raises(TypeError, match="features_only"):
        hgzoo.create_model("resnet18_vd", out_indices=(1, 2))


@pytest.mark.parametrize("name", ["pphgnetv2_b0", "pplcnetv2_small", "resnet18_vd"])
def test_weights_load_into_feature_model_without_noise(name, tmp_path):
    torch.manual_seed(0)
    clf = hgzoo.create_model(name).eval()
    save_file(clf.state_dict(), str(tmp_path / "w.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no re-init warning: the head is dropped knowingly
        feat = hgzoo.create_model(name, features_only=True, pretrained_file=tmp_path / "w.safetensors").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(feat(x)[-1], clf.forward_features(x))
    assert not any(k.startswith("model.head.") for k in feat.state_dict())


def test_frozen_batch_norm_keeps_stats_and_round_trips():
    model = freeze_batch_norm(hgzoo.create_model("resnet18_vd", num_classes=3)).train()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    opt.step()
    after = model.state_dict()
    for k, v in before.items():
        if ".bn." in k:
            torch.testing.assert_close(after[k], v)
    back = unfreeze_batch_norm(model)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in back.modules())
    torch.testing.assert_close(back.state_dict()["stem.0.bn.running_var"], before["stem.0.bn.running_var"])


def test_hrnet_offers_incre_and_branch_features():
    x = torch.randn(1, 3, 96, 128)
    incre = hgzoo.create_model("hrnet_w18_c", features_only=True).eval()
    branches = hgzoo.create_model("hrnet_w18_c", features_only=True, feature_mode="branches").eval()
    assert incre.feature_info.channels() == [128, 256, 512, 1024]
    assert branches.feature_info.channels() == [18, 36, 72, 144]
    assert branches.feature_info.reduction() == incre.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        for model in (incre, branches):
            outs = model(x)
            assert [o.shape[1] for o in outs] == model.feature_info.channels()
    with pytest.raises(ValueError, match="'incre' or 'branches'"):
        hgzoo.create_model("hrnet_w18_c", features_only=True, feature_mode="nope")
