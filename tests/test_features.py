"""Backbone use: features_only outputs, out_indices, weights into a feature model, frozen BN, freeze_at, norm_eval,
re-parameterized features, ONNX export with dynamic height and width."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
from safetensors.torch import save_file

import hgzoo
from hgzoo.features import export_onnx
from hgzoo.layers import FrozenBatchNorm2d, LearnableAffine, RepDepthwiseConv, freeze_batch_norm, unfreeze_batch_norm

MODELS = hgzoo.list_models()


@pytest.mark.parametrize("name", MODELS)
def test_features_match_feature_info(name):
    """Every level has feature_info's channels and reduction (ceil) at a square and an odd non-square size; then
    convert_to_deploy() (hgzoo.reparameterize in place) leaves no BatchNorm, no unmerged multi-branch conv, and
    the same features (relative 1e-5) with non-trivial BN statistics and learnable-affine terms."""
    torch.manual_seed(0)
    model = _randomize(hgzoo.create_model(name, features_only=True)).eval()
    info = model.feature_info
    assert all(isinstance(r, int) for r in info.reduction())
    with torch.no_grad():
        for h, w in ((64, 64), (97, 130)):
            x = torch.randn(1, 3, h, w)
            feats = model(x)
            assert len(feats) == len(info)
            for f, c, r in zip(feats, info.channels(), info.reduction()):
                assert f.shape == (1, c, -(-h // r), -(-w // r)), (name, h, w, f.shape, c, r)
        assert model.convert_to_deploy() is model
        fused = model(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, RepDepthwiseConv) and hasattr(m, "branches") for m in model.modules())
    for a, b in zip(fused, feats, strict=True):
        assert (a - b).abs().max() / b.abs().max() < 1e-5, name


def test_out_indices_forms_and_errors():
    full = hgzoo.create_model("resnet18_vd", features_only=True)
    assert full.feature_info.reduction() == [4, 8, 16, 32]
    for out_indices, reduction in (((1, 2, 3), [8, 16, 32]), ((-2, -1), [16, 32])):
        assert hgzoo.create_model("resnet18_vd", features_only=True, out_indices=out_indices).feature_info.reduction() \
            == reduction
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
    # A BatchNorm2d checkpoint (with num_batches_tracked) loads strictly into a frozen model, and back.
    plain = hgzoo.create_model("resnet18_vd", num_classes=3)
    frozen = freeze_batch_norm(hgzoo.create_model("resnet18_vd", num_classes=3))
    frozen.load_state_dict(plain.state_dict())
    key = "stem.0.bn.running_var"
    torch.testing.assert_close(frozen.state_dict()[key], plain.state_dict()[key])
    plain.load_state_dict(frozen.state_dict())


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


# One variant per family (PP-HGNet and PP-HGNetV2 share a file; V2 has the SAME padding and the affine blocks).
FAMILIES = ["pphgnetv2_b0", "pplcnetv2_small", "resnet18_vd", "hrnet_w18_c"]


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN statistics and affine terms, and learnable-affine blocks away from 1 / 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 0.6 + 0.3)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            elif isinstance(m, LearnableAffine):
                m.scale.copy_(torch.rand(1, generator=g) + 0.5)
                m.bias.copy_(torch.randn(1, generator=g) * 0.1)
    return model


def _bn_state(modules) -> dict[str, torch.Tensor]:
    return {f"{i}.{k}": v.clone() for i, m in enumerate(modules) for k, v in m.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


@pytest.mark.parametrize("name", FAMILIES)
def test_freeze_at_freezes_stem_and_first_stages(name):
    torch.manual_seed(0)
    model = hgzoo.create_model(name, features_only=True, out_indices=(1, 2, 3), freeze_at=1).train()
    assert model.frozen_stages == 1
    groups = model.model.stage_modules()
    frozen, trainable = groups[:2], groups[2:]
    assert all(not m.training for g in frozen for mod in g for m in mod.modules())
    assert all(m.training for g in trainable for mod in g for m in mod.modules())
    frozen_bn, trainable_bn = _bn_state(m for g in frozen for m in g), _bn_state(m for g in trainable for m in g)

    sum(f.square().mean() for f in model(torch.randn(2, 3, 64, 96))).backward()
    for i, group in enumerate(groups):
        for mod in group:
            for pname, p in mod.named_parameters():
                if i <= 1:
                    assert not p.requires_grad and p.grad is None, (i, pname)
                else:  # every trainable parameter is used: nothing left dangling for DDP
                    assert p.requires_grad and p.grad is not None, (i, pname)
    after_frozen, after_trainable = _bn_state(m for g in frozen for m in g), _bn_state(m for g in trainable for m in g)
    for k, v in frozen_bn.items():
        torch.testing.assert_close(after_frozen[k], v, rtol=0, atol=0)
    assert any(not torch.equal(after_trainable[k], v) for k, v in trainable_bn.items() if "running_mean" in k)


def test_freeze_at_on_a_classifier_and_unfreezing():
    model = hgzoo.create_model("resnet18_vd", num_classes=3, freeze_at=0).train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert all(p.requires_grad for p in model.stages.parameters())
    assert not model.stem.training and model.stages.training
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is None for p in model.stem.parameters())
    assert all(p.grad is not None for p in model.stages.parameters())
    model.freeze_stages(4)
    assert not any(p.requires_grad for m in (model.stem, model.stages) for p in m.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.freeze_stages(-1)  # unfreezes what was frozen
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules())


def test_freeze_at_hrnet_stages_and_full_freeze():
    model = hgzoo.create_model("hrnet_w18_c", features_only=True, freeze_at=4)
    assert not any(p.requires_grad for p in model.parameters())  # stage 4 includes the incre modules
    model = hgzoo.create_model("hrnet_w18_c", features_only=True, freeze_at=3)
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"stage4", "incre_modules"}
    model = hgzoo.create_model("hrnet_w18_c", features_only=True, feature_mode="branches", freeze_at=1)
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"stage2", "transition2", "stage3", "transition3", "stage4"}


def test_freeze_at_and_norm_eval_errors():
    for bad in (5, -2):
        with pytest.raises(ValueError, match=r"valid values are -1 \(nothing frozen\), 0 \(the stem\), or 1\.\.4"):
            hgzoo.create_model("resnet18_vd", features_only=True, freeze_at=bad)
    for bad in (1.0, True, "2"):
        with pytest.raises(TypeError, match="freeze_at"):
            hgzoo.create_model("resnet18_vd", freeze_at=bad)
    with pytest.raises(TypeError, match="norm_eval must be True or False"):
        hgzoo.create_model("resnet18_vd", norm_eval="yes")
    # Stages after the last out_index are dropped, so they cannot be frozen.
    with pytest.raises(ValueError, match=r"1\.\.2 .*last out_index"):
        hgzoo.create_model("resnet18_vd", features_only=True, out_indices=(0, 1)).freeze_stages(3)
    for nothing in (None, -1):
        model = hgzoo.create_model("resnet18_vd", features_only=True, freeze_at=nothing).train()
        assert all(p.requires_grad for p in model.parameters()) and all(m.training for m in model.modules())


@pytest.mark.parametrize("features_only", [True, False])
def test_norm_eval_keeps_batch_norm_statistics(features_only):
    torch.manual_seed(0)
    model = _randomize(hgzoo.create_model("pphgnetv2_b0", features_only=features_only, norm_eval=True))
    model.train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(bn.training for bn in bns)
    before = _bn_state(bns)
    x = torch.randn(2, 3, 64, 96)
    out = model(x)
    out = out[-1] if features_only else out
    out.square().mean().backward()
    for k, v in _bn_state(bns).items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(bn.weight.grad is not None for bn in bns[-3:])  # the affine terms still train
    with torch.no_grad():  # running statistics, not batch statistics, so a train-mode forward is an eval forward
        expect = model.eval()(x)
        got = model.train()(x)
    torch.testing.assert_close(got, expect)
    model.set_norm_eval(False)
    assert all(bn.training for bn in bns)


def test_features_only_drops_what_it_never_runs():
    model = hgzoo.create_model("resnet18_vd", features_only=True, out_indices=(0, 1))
    assert len(model.model.stages) == 2
    assert model(torch.randn(1, 3, 64, 64))[-1].shape == (1, 128, 8, 8)
    full = hgzoo.create_model("hrnet_w18_c", features_only=True).eval()
    head = ("downsamples", "conv_last")
    for mode, gone in (("incre", head), ("branches", (*head, "incre_modules"))):
        for out_indices in ((0, 1, 2, 3), (1, 3)):
            model = hgzoo.create_model("hrnet_w18_c", features_only=True, feature_mode=mode, out_indices=out_indices)
            assert not any(hasattr(model.model, g) for g in gone)
            sum(f.mean() for f in model(torch.randn(1, 3, 64, 64))).backward()
            assert all(p.grad is not None for p in model.parameters()), (mode, out_indices)
    # Pruning the unused levels' fuse leaves the returned levels as they were.
    model = hgzoo.create_model("hrnet_w18_c", features_only=True, out_indices=(1, 3)).eval()
    model.load_state_dict(full.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expect = full(x)
        torch.testing.assert_close(model(x), [expect[1], expect[3]])


# HRNet at the sizes whose upsample-and-crop differs: the stride-4 map's sides are not multiples of 8.
ONNX_SIZES = {"hrnet_w18_c": ((96, 128), (128, 96)), None: ((97, 130), (128, 96))}


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_export_with_dynamic_height_and_width(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _randomize(hgzoo.create_model(name, features_only=True, out_indices=(1, 2, 3))).eval()
    deploy = hgzoo.reparameterize(copy.deepcopy(model))  # the deployment path: fused, then exported once
    path = export_onnx(deploy, tmp_path / f"{name}.onnx")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["feat0", "feat1", "feat2"]
    for batch, (h, w) in zip((1, 2), ONNX_SIZES.get(name, ONNX_SIZES[None])):
        x = torch.randn(batch, 3, h, w)
        with torch.no_grad():
            expect = model(x)
        got = session.run(None, {"x": x.numpy()})
        for g, e, r in zip(got, expect, model.feature_info.reduction()):
            assert g.shape == (batch, e.shape[1], -(-h // r), -(-w // r))
            e = e.numpy()
            assert abs(g - e).max() / abs(e).max() < 1e-4, (name, h, w, r)


def test_export_onnx_rejects_misuse(tmp_path):
    with pytest.raises(TypeError, match="features-only model"):
        export_onnx(hgzoo.create_model("resnet18_vd"), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="non-square"):
        export_onnx(hgzoo.create_model("resnet18_vd", features_only=True), tmp_path / "x.onnx", example_size=(128, 128))
