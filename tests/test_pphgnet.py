"""PP-HGNet / PP-HGNetV2 specifics: structure, the head, and the "SAME" padding of the V2 stem."""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import PARITY_SIZES, REF_SCRIPT, logits, reference_python, relative_error
from torch import nn

import hgzoo
from hgzoo.layers import ConvBNAct, Dropout, EffectiveSE, LearnableAffine, LearnableDownsample, pad_same
from hgzoo.models.pphgnet import HGBlock, HGBlockV2, LightConvBNAct, MaxPool2dSame, PPHGNetV2

TOL = 1e-4


def _zero_pad_pool(x: torch.Tensor) -> torch.Tensor:
    """The wrong reading of Paddle's 2x2 "SAME" max-pool: zero padding."""
    return F.max_pool2d(pad_same(x, 2, 1, value=0.0), 2, 1)


def test_same_maxpool_matches_paddle():
    # Observed with paddle 3.3.1: MaxPool2D(kernel_size=2, stride=1, ceil_mode=True, padding="SAME") on a
    # strictly decreasing negative input returns the input unchanged: the right/bottom padding never wins.
    x = -torch.arange(1, 16, dtype=torch.float32).reshape(1, 1, 3, 5)
    y = MaxPool2dSame(2, 1)(x)
    torch.testing.assert_close(y, x)
    assert not torch.equal(_zero_pad_pool(x), x)  # zero padding would put 0s on the last row and column


@pytest.mark.parametrize("name", ["pphgnet_tiny", "pphgnetv2_b0", "pphgnetv2_b4"])
def test_feature_info(name):
    model = hgzoo.create_model(name).eval()
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        x = model.forward_stem(x)
        for info, stage in zip(model.feature_info, model.stages):
            x = stage(x)
            assert x.shape[1:] == (info["num_chs"], 64 // info["reduction"], 96 // info["reduction"])


def test_v1_structure():
    model = hgzoo.create_model("pphgnet_base")
    assert isinstance(model.stages[0].downsample, nn.Identity)
    assert all(isinstance(s.downsample, LearnableDownsample) for s in model.stages[1:])
    for stage in model.stages:
        blocks = list(stage.blocks)
        assert all(isinstance(b, HGBlock) and isinstance(b.att, EffectiveSE) for b in blocks)
        assert [b.residual for b in blocks] == [False] + [True] * (len(blocks) - 1)
        assert all(len(b.layers) == 7 for b in blocks)
    assert not any(isinstance(m, LearnableAffine) for m in model.modules())
    # Paddle's dropout convention: times (1 - p) at eval.
    assert isinstance(model.head.dropout, Dropout) and model.head.dropout.p == 0.2
    assert model.head.dropout.mode == "downscale_in_infer"
    assert hgzoo.create_model("pphgnet_small").head.dropout.p == 0.0
    assert model.head.last_conv.bias is None and model.head.last_conv.out_channels == 2048


@pytest.mark.parametrize("name, use_lab", [("pphgnetv2_b0", True), ("pphgnetv2_b3", True), ("pphgnetv2_b4", False)])
def test_v2_structure(name, use_lab):
    model = hgzoo.create_model(name)
    for i, stage in enumerate(model.stages):
        for block in stage.blocks:
            assert isinstance(block, HGBlockV2)
            light = [isinstance(layer, LightConvBNAct) for layer in block.layers]
            assert all(light) if i >= 2 else not any(light)
            if i >= 2:  # 1x1 without activation (so no affine block), then a depthwise 5x5
                layer = block.layers[0]
                assert isinstance(layer.conv1.act, nn.Identity) and isinstance(layer.conv1.lab, nn.Identity)
                dw = layer.conv2.conv
                assert dw.kernel_size == (5, 5) and dw.groups == dw.in_channels
    # One affine block per activated conv-BN, plus one after the head's activation; none in the downsamples.
    n_act = sum(isinstance(m, ConvBNAct) and isinstance(m.act, nn.ReLU) for m in model.modules())
    n_lab = sum(isinstance(m, LearnableAffine) for m in model.modules())
    assert n_lab == ((n_act + 1) if use_lab else 0)
    assert all(isinstance(s.downsample.lab, nn.Identity) for s in model.stages[1:])
    assert isinstance(model.stem.pool, MaxPool2dSame)


def test_key_map():
    km = PPHGNetV2.paddle_key_map
    assert km.rename("lab.scale") == "head.act.lab.scale"
    assert km.rename("stem.stem1.lab.bias") == "stem.stem1.lab.bias"
    assert km.rename("last_conv.weight") == "head.last_conv.weight" and km.rename("fc.bias") == "head.fc.bias"
    assert km.rename("stages.1.downsample.bn._variance") == "stages.1.downsample.bn.running_var"


def test_drop_path_rates_rise_linearly():
    model = hgzoo.create_model("pphgnetv2_b5", drop_path_rate=0.1)
    blocks = [b for s in model.stages for b in s.blocks]
    rates = [getattr(b.drop_path, "p", 0.0) for b in blocks]
    assert rates[-1] == pytest.approx(0.1)
    assert all(r == 0.0 for b, r in zip(blocks, rates) if not b.residual)
    assert [r for r in rates if r] == sorted(r for r in rates if r)


# --- The "SAME" max-pool's -inf padding, against PaddleClas -----------------------------------------


@pytest.mark.parity
def test_zero_pool_padding_with_shared_reference(paddle_reference):
    """With the shared parity reference (seed 0), stem1's affine block has scale > 0 and bias > 0, so every
    value entering the pool is >= bias > 0 and zero padding can never win the max: the two paddings give
    bit-identical logits and this reference cannot tell them apart. The next test uses a reference whose
    affine bias is negative. Should the shared reference change so that values can be negative, this test
    requires the zero padding to break parity."""
    pdparams, ref = paddle_reference.get("pphgnetv2_b0")
    model = hgzoo.create_model("pphgnetv2_b0", pretrained_file=pdparams).eval()
    lab = model.stem.stem1.lab
    h, w = PARITY_SIZES[1]
    x, y_ref = ref[f"x_{h}x{w}"], ref[f"y_{h}x{w}"]
    right = logits(model, x)
    model.stem.pool.forward = _zero_pad_pool
    wrong = logits(model, x)
    if lab.scale.item() > 0 and lab.bias.item() > 0:
        np.testing.assert_array_equal(wrong, right)
    else:
        assert relative_error(wrong, y_ref) > TOL


@pytest.fixture(scope="module")
def reference_with_negative_stem_bias(tmp_path_factory):
    """PaddleClas's PPHGNetV2_B0 randomized with seed 2, whose stem1 affine bias is negative (-0.28)."""
    python = reference_python()
    if python is None:
        pytest.skip("the PaddleClas reference environment is missing: run tests/reference/setup.sh")
    out = tmp_path_factory.mktemp("paddle_ref_seed2")
    sizes = ",".join(f"{h}x{w}" for h, w in PARITY_SIZES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([python, str(REF_SCRIPT), "--out", str(out), "--seed", "2", "--tries", "1", "--sizes", sizes,
                           "PPHGNetV2_B0"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the PaddleClas reference failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    data = np.load(out / "PPHGNetV2_B0.npz")
    return out / "PPHGNetV2_B0.pdparams", {k: data[k] for k in data.files}


@pytest.mark.parity
def test_zero_pool_padding_breaks_parity(reference_with_negative_stem_bias):
    pdparams, ref = reference_with_negative_stem_bias
    model = hgzoo.create_model("pphgnetv2_b0", pretrained_file=pdparams).eval()
    assert model.stem.stem1.lab.bias.item() < 0, "the reference no longer exercises negative pool inputs"
    for h, w in PARITY_SIZES:
        assert relative_error(logits(model, ref[f"x_{h}x{w}"]), ref[f"y_{h}x{w}"]) < TOL
    model.stem.pool.forward = _zero_pad_pool
    for h, w in PARITY_SIZES:
        err = relative_error(logits(model, ref[f"x_{h}x{w}"]), ref[f"y_{h}x{w}"])
        assert err > 10 * TOL, f"zero padding of the stem max-pool changed the logits by only {err:.2e} at {h}x{w}"


@pytest.mark.parity
def test_same_conv_pads_right_and_bottom(paddle_reference):
    """Padding the 2x2 stem convs on the left/top instead breaks parity."""
    pdparams, ref = paddle_reference.get("pphgnetv2_b0")
    model = hgzoo.create_model("pphgnetv2_b0", pretrained_file=pdparams).eval()
    for conv in (model.stem.stem2a, model.stem.stem2b):
        conv.same_pad = False
        conv.conv.padding = (0, 0)
        inner = conv.conv.forward
        conv.conv.forward = lambda x, inner=inner: inner(F.pad(x, (1, 0, 1, 0)))
    h, w = PARITY_SIZES[1]
    err = relative_error(logits(model, ref[f"x_{h}x{w}"]), ref[f"y_{h}x{w}"])
    assert err > 10 * TOL
