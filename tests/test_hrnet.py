"""HRNet specifics: the fuse key map, odd input sizes, the two feature views.

PaddleClas's HRNet upsamples coarse branches by the bare scale factor, so it raises unless each side
of the stride-4 map is a multiple of 8 (inputs of 221-224 or 253-256 pixels, ...). The parity tests
(tests/test_parity.py, with HRNet's own "can fail" case) therefore use 224x224 and the odd, non-square 221x253 for
this family.
"""
from __future__ import annotations

import pytest
import torch

import hgzoo
from hgzoo._registry import paddle_name
from hgzoo.models.hrnet import HighResolutionModule, HRNet, _upsample_to, fuse_conv_order

NAMES = hgzoo.list_models("*hrnet*")


def test_all_variants_registered():
    assert NAMES == ["hrnet_w18_c", "hrnet_w30_c", "hrnet_w32_c", "hrnet_w40_c", "hrnet_w44_c", "hrnet_w48_c",
                     "hrnet_w64_c", "se_hrnet_w64_c"]
    assert paddle_name("se_hrnet_w64_c") == "SE_HRNet_W64_C"
    assert hgzoo.get_pretrained_cfg("hrnet_w18_c").tag == "ssld_in1k"
    assert hgzoo.get_pretrained_cfg("hrnet_w48_c").tag == "ssld_in1k"


def test_fuse_conv_order_is_paddleclas_flat_order():
    assert fuse_conv_order(2) == [(0, 1, 0), (1, 0, 0)]
    assert fuse_conv_order(3) == [(0, 1, 0), (0, 2, 0), (1, 0, 0), (1, 2, 0), (2, 0, 0), (2, 0, 1), (2, 1, 0)]
    assert len(fuse_conv_order(4)) == 16 and fuse_conv_order(4)[10:13] == [(3, 0, 0), (3, 0, 1), (3, 0, 2)]


@pytest.mark.parametrize("paddle_key, ours", [
    ("conv_layer1_1.conv.weight", "stem.0.conv.weight"),
    ("conv_layer1_2.bn._variance", "stem.1.bn.running_var"),
    ("layer1.0.conv_down.bn._mean", "layer1.0.downsample.bn.running_mean"),
    ("layer1.2.se.fc_squeeze.weight", "layer1.2.se.conv1.weight"),
    ("conv_tr1_1.conv.weight", "transition1.0.conv.weight"),
    ("conv_tr1_2.bn.bias", "transition1.1.bn.bias"),
    ("conv_tr3.conv.weight", "transition3.conv.weight"),
    ("st2.stage_func_list.0.basic_block_list.1.3.conv2.bn.weight", "stage2.0.branches.1.3.conv2.bn.weight"),
    ("st2.stage_func_list.0.fuse_func.residual_func_list.1.conv.weight", "stage2.0.fuse_layers.1.0.0.conv.weight"),
    ("st3.stage_func_list.3.fuse_func.residual_func_list.5.bn.bias", "stage3.3.fuse_layers.2.0.1.bn.bias"),
    ("st4.stage_func_list.2.fuse_func.residual_func_list.1.conv.weight", "stage4.2.fuse_layers.0.2.0.conv.weight"),
    ("st4.stage_func_list.2.fuse_func.residual_func_list.15.conv.weight", "stage4.2.fuse_layers.3.2.0.conv.weight"),
    ("st4.stage_func_list.0.basic_block_list.3.0.se.fc_excitation.bias", "stage4.0.branches.3.0.se.conv2.bias"),
    ("last_cls.func_list.3.conv_down.conv.weight", "incre_modules.3.downsample.conv.weight"),
    ("cls_head_conv_list.2.bn._mean", "downsamples.2.bn.running_mean"),
    ("conv_last.conv.weight", "conv_last.conv.weight"),
    ("fc.weight", "head.fc.weight"),
])
def test_key_map(paddle_key, ours):
    assert HRNet.paddle_key_map.rename(paddle_key) == ours


def test_fuse_paths():
    m = HighResolutionModule((8, 16, 32, 64))
    paths = m.fuse_layers
    assert isinstance(paths[2][2], torch.nn.Identity)
    assert [len(paths[3][j]) for j in range(3)] == [3, 2, 1]  # i - j stride-2 convs from a finer branch
    assert [c.conv.stride[0] for c in paths[3][0]] == [2, 2, 2]
    assert [isinstance(c.act, torch.nn.ReLU) for c in paths[3][0]] == [True, True, False]
    assert paths[3][0][1].conv.out_channels == 8 and paths[3][0][2].conv.out_channels == 64
    assert paths[0][3][0].conv.kernel_size == (1, 1) and isinstance(paths[0][3][0].act, torch.nn.Identity)


@pytest.mark.parametrize("side", [49, 50, 7, 1])
def test_upsample_maps_pixel_i_to_i_div_scale(side):
    for scale in (2, 4, 8):
        coarse = torch.randn(1, 2, -(-side // scale), -(-(side + 3) // scale))
        up = _upsample_to(coarse, scale, (side, side + 3))
        rows = torch.arange(side) // scale
        cols = torch.arange(side + 3) // scale
        torch.testing.assert_close(up, coarse[:, :, rows][:, :, :, cols], rtol=0, atol=0)


def _tiny(**kw) -> HRNet:
    torch.manual_seed(0)
    return HRNet(width=8, **kw)


@pytest.mark.parametrize("size", [(193, 257), (64, 96), (33, 35)])
def test_feature_views(size):
    model = _tiny(has_se=True).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        branches = model.forward_branches(x)
        incre = model.forward_incre(x)
        feats = model.forward_features(x)
    for views, info in ((branches, model.branch_feature_info), (incre, model.feature_info)):
        assert len(views) == len(info) == 4
        for t, f in zip(views, info):
            r = f["reduction"]
            assert t.shape == (2, f["num_chs"], -(-size[0] // r), -(-size[1] // r))
    assert [f["num_chs"] for f in model.feature_info] == [128, 256, 512, 1024]
    assert [f["num_chs"] for f in model.branch_feature_info] == [8, 16, 32, 64]
    assert feats.shape == (2, 2048, -(-size[0] // 32), -(-size[1] // 32))

    # feature_info's module names are hookable and give the same tensors.
    hooked = {}
    for f in model.feature_info:
        model.get_submodule(f["module"]).register_forward_hook(
            lambda mod, inp, out, name=f["module"]: hooked.__setitem__(name, out))
    stage4_out = []
    model.get_submodule(model.branch_feature_info[0]["module"]).register_forward_hook(
        lambda mod, inp, out: stage4_out.append(out))
    with torch.no_grad():
        model(x)
    for t, f in zip(incre, model.feature_info):
        torch.testing.assert_close(hooked[f["module"]], t)
    for t, f in zip(branches, model.branch_feature_info):
        torch.testing.assert_close(stage4_out[0][f["index"]], t)


def test_grad_checkpointing_same_gradients_with_drop_path():
    model = _tiny(has_se=True, num_classes=5, drop_path_rate=0.2).train()
    x = torch.randn(2, 3, 97, 65)

    def grads():
        torch.manual_seed(0)
        model.zero_grad()
        model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.set_grad_checkpointing(True)
    for a, b in zip(plain, grads()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_drop_path_schedule():
    model = _tiny(drop_path_rate=0.36)
    rate = lambda block: getattr(block.drop_path, "p", 0.0)  # noqa: E731
    assert [rate(b) for b in model.layer1] == pytest.approx([0.0, 0.01, 0.02, 0.03])
    last = model.stage4[-1]
    for branch in last.branches:  # parallel branches share their depth's rate
        assert [rate(b) for b in branch] == [rate(b) for b in last.branches[0]]
    assert [rate(b) for b in model.incre_modules] == pytest.approx([0.36] * 4)


def test_head_dropout_is_identity_at_eval():
    model = _tiny(drop_rate=0.5).eval()
    ref = _tiny(drop_rate=0.0).eval()
    ref.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x))
