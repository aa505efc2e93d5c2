"""output_stride 16 / 8 (dilated stages) of PP-HGNet, PP-HGNetV2 and ResNet-vd, against the a-trous identity.

No dilated HGNet exists in timm or PaddleClas to compare with. The oracle is the identity dilation is built on: with
"same"-size zero padding, a stage whose stride-2 downsample keeps stride 1 and whose later kxk convs dilate by 2 gives,
on the same weights, a map whose even pixels are the undilated map: ``os16[..., ::2, ::2] == os32`` for the last
stage; for output_stride 8, ``[::2, ::2]`` for stage 3 and ``[::4, ::4]`` for stage 4 (whose downsample must then
run at dilation 2). Per-pixel layers (1x1 convs, BN, activations, affine blocks) keep it; a global pool does not
(v1's ESE gate averages the denser map: see the v1 case).
"""
from __future__ import annotations

import functools

import pytest
import torch
from conftest import randomize_bn

import hgzoo
from hgzoo.layers import EffectiveSE

SIZES = ((128, 128), (96, 160))


@functools.cache
def _weights(name: str, constant_ese: bool = True) -> dict[str, torch.Tensor]:
    """The undilated model's weights (randomized BN). ``constant_ese``: v1's ESE gates get zero conv weights (a
    per-channel constant gate, sigmoid of the random bias), the one layer the identity cannot hold through."""
    torch.manual_seed(0)
    model = randomize_bn(hgzoo.create_model(name, num_classes=0), affine=True)
    if constant_ese:
        for m in model.modules():
            if isinstance(m, EffectiveSE):
                torch.nn.init.zeros_(m.conv.weight)
    return model.state_dict()


def _fresh_model(name: str, output_stride: int = 32, constant_ese: bool = True) -> torch.nn.Module:
    model = hgzoo.create_model(name, num_classes=0, output_stride=output_stride).eval()
    model.load_state_dict(_weights(name, constant_ese))  # strict: the dilated model has the same keys and shapes
    return model


_model = functools.cache(_fresh_model)  # for the tests that do not change the model


def _atrous_errors(dilated: torch.nn.Module, base: torch.nn.Module, hw: tuple[int, int]) -> list[float]:
    """Per stage, max |dilated[::s, ::s] - base| / max |base|, s the ratio of the two models' reductions."""
    x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, ref = (m.forward_intermediates(x, intermediates_only=True) for m in (dilated, base))
    errors = []
    for a, b, fa, fb in zip(ours, ref, dilated.feature_info, base.feature_info):
        s = fb["reduction"] // fa["reduction"]
        a = a[..., ::s, ::s]
        assert a.shape == b.shape
        errors.append(float((a - b).abs().max() / b.abs().max()))
    return errors


@pytest.mark.parametrize("output_stride", [16, 8])
@pytest.mark.parametrize("name", ["pphgnet_tiny", "pphgnetv2_b0"])
def test_atrous_identity(name, output_stride):
    """Every stage of the dilated model, subsampled by its lost stride, equals the undilated one (v2: the depthwise
    5x5 convs of stages 3-4; v1: the 3x3 convs; both: the stride-1 downsample, at dilation 2 in os8's stage 4)."""
    dilated = _model(name, output_stride)
    assert [f["reduction"] for f in dilated.feature_info] == ([4, 8, 16, 16] if output_stride == 16 else [4, 8, 8, 8])
    for hw in SIZES:
        assert max(_atrous_errors(dilated, _model(name), hw)) < 1e-5, hw


def test_atrous_identity_resnet_vd():
    """ResNet-vd's output_stride (timm's ResNet-d, tested against timm in test_timm_contract) on the same identity.
    Only os16 at even sizes: timm's dilated shortcut pools 2x2 at stride 1 undilated, which is the a-trous form of
    the stride-2 pool in the first dilated stage only (not in os8's stage 4, nor at odd sizes: ceil_mode)."""
    assert max(_atrous_errors(_model("resnet18_vd", 16), _model("resnet18_vd"), (128, 128))) < 1e-5


def _undilate_blocks(model: torch.nn.Module) -> None:
    for m in model.stages[-1].blocks.modules():
        if isinstance(m, torch.nn.Conv2d) and m.dilation != (1, 1):
            m.dilation, m.padding = (1, 1), ((m.kernel_size[0] - 1) // 2,) * 2


def _undilate_downsample(model: torch.nn.Module) -> None:
    conv = model.stages[-1].downsample.conv
    assert conv.dilation == (2, 2)
    conv.dilation, conv.padding = (1, 1), (1, 1)


@pytest.mark.parametrize(("output_stride", "break_it"), [(16, _undilate_blocks), (8, _undilate_downsample)])
def test_atrous_identity_can_fail(output_stride, break_it):
    """The oracle goes red on a wrongly dilated model of the same shapes: the last stage's 5x5 convs at dilation 1,
    or os8's stage-4 downsample at dilation 1 instead of the previous stage's 2. And on v1 with its ESE gates as
    trained (they pool the whole map: a dilated SE network is not a subsample of the undilated one)."""
    model = _fresh_model("pphgnetv2_b0", output_stride)
    break_it(model)
    assert _atrous_errors(model, _model("pphgnetv2_b0"), (64, 64))[-1] > 1e-3
    v1 = _atrous_errors(_model("pphgnet_tiny", 16, constant_ese=False), _model("pphgnet_tiny", constant_ese=False),
                        (64, 64))
    assert max(v1[:3]) < 1e-5 and v1[3] > 1e-3


@pytest.mark.parametrize("output_stride", [16, 8])
def test_features_only_and_weights(output_stride):
    """features_only's out_indices report and give the dilated strides; the undilated model's state dict loads
    strictly (pretrained weights); the fused model keeps its dilations."""
    name = "pphgnetv2_b0"
    model = hgzoo.create_model(name, features_only=True, out_indices=(1, 2, 3), output_stride=output_stride).eval()
    reductions = [8, 16, 16] if output_stride == 16 else [8, 8, 8]
    assert model.feature_info.reduction() == reductions
    full = _fresh_model(name, output_stride)  # loads the undilated model's state dict, strictly
    assert full.state_dict().keys() == _weights(name).keys()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats = model(x)
        assert [f.shape[2:] for f in feats] == [(64 // r, 96 // r) for r in reductions]
        before = full.forward_features(x)
        after = full.fuse().forward_features(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4 * float(before.abs().max()))


def test_output_stride_refused():
    for name in ("pphgnet_tiny", "pphgnetv2_b0"):
        for output_stride in (4, 12):
            with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32, got"):
                hgzoo.create_model(name, output_stride=output_stride)
    for name, hint in (("hrnet_w18_c", "HRNet keeps every resolution"), ("pplcnetv2_base", r"\(8 or 16\)$")):
        with pytest.raises(ValueError, match=f"only PP-HGNet, PP-HGNetV2, ResNet-vd dilate .*{hint}"):
            hgzoo.create_model(name, output_stride=16)
    with pytest.raises(ValueError, match="padding='same' is built for dilation 1 only"):
        hgzoo.layers.ConvBNAct(8, 8, 2, padding="same", dilation=2)
