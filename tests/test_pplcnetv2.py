"""PP-LCNetV2 specifics: structure, the placeholder-key policy, Paddle's dropout, re-parameterization."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hgzoo
from hgzoo.convert.paddle import convert_paddle_state_dict
from hgzoo.layers import RepDepthwiseConv, SqueezeExcite
from hgzoo.models.pplcnetv2 import PPLCNetV2, RepDepthwiseSeparable, make_divisible

# PaddleClas's own trainable counts, which include the unused pre-fused `dw_conv` of every rep block.
PADDLE_PARAMS = {"pplcnetv2_small": 4_193_448, "pplcnetv2_base": 6_800_360, "pplcnetv2_large": 10_716_840}
NAMES = sorted(PADDLE_PARAMS)


def _blocks(model: PPLCNetV2) -> list[RepDepthwiseSeparable]:
    return [m for m in model.modules() if isinstance(m, RepDepthwiseSeparable)]


def test_make_divisible():
    assert [make_divisible(v) for v in (24, 32 * 0.75, 64 * 1.25, 1024 * 1.25, 3)] == [24, 24, 80, 1280, 8]


@pytest.mark.parametrize("name", NAMES)
def test_count_differs_from_paddleclas_by_exactly_the_placeholders(name):
    model = hgzoo.create_model(name)
    placeholders = sum(c * k * k + c for c, k in (
        (b.dw_conv.channels, b.dw_conv.kernel_size) for b in _blocks(model) if isinstance(b.dw_conv, RepDepthwiseConv)
    ))
    assert sum(p.numel() for p in model.parameters()) + placeholders == PADDLE_PARAMS[name]


def test_structure_of_base():
    model = hgzoo.create_model("pplcnetv2_base")
    stem_block = model.stem[1]
    assert not isinstance(stem_block.dw_conv, RepDepthwiseConv) and not stem_block.use_shortcut
    assert isinstance(stem_block.dw_conv.act, nn.ReLU) and isinstance(stem_block.act, nn.Identity)
    for i, stage in enumerate(model.stages):
        for j, block in enumerate(stage):
            rep = isinstance(block.dw_conv, RepDepthwiseConv)
            assert rep == (i >= 2)
            if rep:  # act after the branch sum; 5/3/1 branches at stride 1, no 1x1 at stride 2
                assert isinstance(block.act, nn.ReLU)
                assert [b.conv.kernel_size[0] for b in block.dw_conv.branches] == ([5, 3] if j == 0 else [5, 3, 1])
            assert isinstance(block.se, SqueezeExcite) == (i == 2)
            assert block.split_pw == (i == 2)
            assert block.use_shortcut == (i == 3 and j > 0)
    assert [f["num_chs"] for f in model.feature_info] == [128, 256, 512, 1024]
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]


def test_key_map_drops_only_the_rep_placeholders():
    km = PPLCNetV2.paddle_key_map
    assert km.is_dropped("stages.2.0.dw_conv.weight") and km.is_dropped("stages.3.1.dw_conv.bias")
    for key in ("stem.1.dw_conv.conv.weight", "stages.0.0.dw_conv.bn.weight", "stages.1.1.dw_conv.bn.bias",
                "stages.2.0.dw_conv_list.0.conv.weight", "stages.2.0.dw_conv_list.1.bn.bias"):
        assert not km.is_dropped(key), key
    assert km.rename("stages.2.0.dw_conv_list.1.bn._variance") == "stages.2.0.dw_conv.branches.1.bn.running_var"
    assert km.rename("last_conv.weight") == "head.last_conv.weight" and km.rename("fc.bias") == "head.fc.bias"


def _as_paddle(model: PPLCNetV2) -> dict[str, np.ndarray]:
    """Our state dict written with PaddleClas's names, placeholders included (what a .pdparams holds)."""
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        pk = k.replace(".dw_conv.branches.", ".dw_conv_list.").replace("running_mean", "_mean")
        pk = pk.replace("running_var", "_variance").replace("head.", "")
        out[pk] = (v.t() if k == "head.fc.weight" else v).numpy()
    for name, m in model.named_modules():
        if isinstance(m, RepDepthwiseConv):
            base = name[: -len(".dw_conv")]
            out[f"{base}.dw_conv.weight"] = np.zeros((m.channels, 1, m.kernel_size, m.kernel_size), np.float32)
            out[f"{base}.dw_conv.bias"] = np.zeros((m.channels,), np.float32)
    return out


def test_paddle_names_round_trip():
    torch.manual_seed(0)
    model = hgzoo.create_model("pplcnetv2_small")
    sd = convert_paddle_state_dict(_as_paddle(model), model)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(sd[k], v, rtol=0, atol=0)


def test_head_dropout_is_downscale_in_infer():
    torch.manual_seed(0)
    model = hgzoo.create_model("pplcnetv2_small", num_classes=4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pre = model.forward_head(model.forward_features(x), pre_logits=True)  # already scaled by (1 - p)
        head = model.head
        raw = head.flatten(head.act(head.last_conv(head.global_pool(model.forward_features(x)))))
        torch.testing.assert_close(pre, raw * 0.8)
        torch.testing.assert_close(model(x), head.fc(raw * 0.8))


def test_reparameterize_fuses_branches():
    torch.manual_seed(0)
    model = hgzoo.create_model("pplcnetv2_small").eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.3, 0.9)
                m.bias.normal_(0, 0.2)
    x = torch.randn(1, 3, 97, 64)
    with torch.no_grad():
        before = model(x)
        hgzoo.reparameterize(model)
        after = model(x)
    reps = [m for m in model.modules() if isinstance(m, RepDepthwiseConv)]
    assert reps and all(m.fused is not None and not hasattr(m, "branches") for m in reps)
    assert (after - before).abs().max() / before.abs().max() < 1e-5


def test_drop_path_only_on_residual_blocks():
    model = hgzoo.create_model("pplcnetv2_base", drop_path_rate=0.2)
    with_dp = [b for b in _blocks(model) if not isinstance(b.drop_path, nn.Identity)]
    assert with_dp == [b for b in _blocks(model) if b.use_shortcut] and with_dp[-1].drop_path.p == pytest.approx(0.2)


def test_options():
    model = hgzoo.create_model("pplcnetv2_small", use_last_conv=False, num_classes=3)
    assert model.head_hidden_size == 768 and model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    model = hgzoo.create_model("pplcnetv2_small", act_layer=nn.Hardswish, class_expand=640)
    assert model.head_hidden_size == 640 and not any(isinstance(m, nn.ReLU) for m in model.modules())
    with pytest.raises(TypeError, match="dropout_prob"):
        hgzoo.create_model("pplcnetv2_small", dropout_prob=0.1)
