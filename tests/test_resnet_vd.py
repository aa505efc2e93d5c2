"""ResNet-vd specifics: parameter counts, the vd shortcut at odd sizes, the per-depth key map, structure."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import PARITY_SIZES

import hgzoo
from hgzoo.models.resnet_vd import VARIANTS, Bottleneck, ResNetVdShortcut

# PaddleClas 2.6's own trainable parameter counts (BN running statistics excluded).
PADDLE_PARAMS = {
    "resnet18_vd": 11_712_968, "resnet34_vd": 21_821_128, "resnet50_vd": 25_576_264,
    "resnet101_vd": 44_568_392, "resnet152_vd": 60_212_040, "resnet200_vd": 74_738_504,
}


def test_every_variant_is_tested():
    assert sorted(PADDLE_PARAMS) == hgzoo.list_models("resnet*_vd") == sorted(VARIANTS)


@pytest.mark.parametrize("name", sorted(PADDLE_PARAMS))
def test_parameter_count_equals_paddleclas(name):
    model = hgzoo.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PADDLE_PARAMS[name]


def _paddle_same_exclusive_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """Paddle's AvgPool2D(2, 2, padding="SAME", ceil_mode=True) written out: zero-pad the odd row/column on
    the bottom/right, sum each 2x2 window, divide by the number of real (unpadded) pixels in it."""
    h, w = x.shape[-2:]
    pad = (0, w % 2, 0, h % 2)
    sums = F.avg_pool2d(F.pad(x, pad), 2, 2, divisor_override=1)
    counts = F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), pad), 2, 2, divisor_override=1)
    return sums / counts


@pytest.mark.parametrize("hw", [(7, 9), (8, 8), (25, 33), (13, 16)])
def test_shortcut_pool_is_paddles_same_exclusive_pool(hw):
    x = torch.randn(2, 3, *hw)
    pool = ResNetVdShortcut(3, 4, stride=2).pool
    torch.testing.assert_close(pool(x), _paddle_same_exclusive_avg_pool(x))


@pytest.mark.parametrize("name", ["resnet18_vd", "resnet50_vd"])
def test_main_path_and_shortcut_agree_at_odd_sizes(name):
    model = hgzoo.create_model(name).eval()
    for h, w in PARITY_SIZES + ((33, 47),):
        assert model.forward_features(torch.randn(1, 3, h, w)).shape[1] == model.num_features


def test_structure_of_resnet50_vd():
    model = hgzoo.create_model("resnet50_vd")
    assert [m.conv.stride for m in model.stem] == [(2, 2), (1, 1), (1, 1)]
    assert [m.conv.out_channels for m in model.stem] == [32, 32, 64]
    first = [stage[0] for stage in model.stages]
    # Every stage starts with a projection shortcut; only the first stage's has no pool (stride 1).
    assert all(isinstance(b.downsample, ResNetVdShortcut) for b in first)
    assert isinstance(first[0].downsample.pool, torch.nn.Identity)
    assert all(isinstance(b.downsample.pool, torch.nn.AvgPool2d) for b in first[1:])
    assert all(b.downsample.conv.conv.stride == (1, 1) for b in first)
    # The stride sits on the bottleneck's 3x3 conv.
    assert all(isinstance(b, Bottleneck) for b in first)
    assert [b.conv2.conv.stride for b in first] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert all(b.conv1.conv.stride == (1, 1) for b in first)
    assert not any(isinstance(stage[1].downsample, ResNetVdShortcut) for stage in model.stages)


def test_key_map_numbers_blocks_per_stage():
    r50 = hgzoo.create_model("resnet50_vd", num_classes=0).paddle_key_map
    r152 = hgzoo.create_model("resnet152_vd", num_classes=0).paddle_key_map
    assert r50.rename("blocks.3.short.conv.weight") == "stages.1.0.downsample.conv.conv.weight"
    assert r50.rename("blocks.7.conv2.bn._variance") == "stages.2.0.conv3.bn.running_var"
    assert r50.rename("blocks.15.conv0.conv.weight") == "stages.3.2.conv1.conv.weight"
    assert r50.rename("blocks.1.conv1.bn.weight") == "stages.0.1.conv2.bn.weight"
    assert r152.rename("blocks.10.conv1.bn._mean") == "stages.1.7.conv2.bn.running_mean"
    assert r152.rename("stem.2.bn.bias") == "stem.2.bn.bias"
    assert r152.rename("fc.weight") == "head.fc.weight"
