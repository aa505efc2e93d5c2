"""hgzoo's layers and training helpers against the maintained libraries that have them (issue 26): torchvision's
FrozenBatchNorm2d, StochasticDepth and SqueezeExcitation, torch's conv-BN fusion, EMA and soft-target
cross-entropy, and timm's RandAugment, EMA, DropPath and soft-target loss. Where hgzoo keeps its own, the test
shows what the library's version would change."""
from __future__ import annotations

import io
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import functional as F_tv

from hgzoo.data.mixup import MixUpCutMix, one_hot_smooth
from hgzoo.data.randaugment import RandAugment, parse_randaugment
from hgzoo.layers import (
    ConvBNAct,
    DropPath,
    FrozenBatchNorm2d,
    SqueezeExcite,
    freeze_batch_norm,
    fuse_conv_bn,
    unfreeze_batch_norm,
)
from hgzoo.train.utils import ModelEMA

timm = pytest.importorskip("timm")


def _bn(channels: int, seed: int = 0) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(torch.rand(channels, generator=g) + 0.5)
    bn.num_batches_tracked.fill_(7)
    return bn.eval()


# ------------------------------------------------------------------------------------------ FrozenBatchNorm2d

def test_frozen_batch_norm_is_torchvisions_and_takes_a_batch_norm_state_dict():
    assert FrozenBatchNorm2d is torchvision.ops.FrozenBatchNorm2d
    assert FrozenBatchNorm2d(4).eps == nn.BatchNorm2d(4).eps == 1e-5
    bn, x = _bn(8), torch.randn(2, 8, 5, 5)
    frozen = FrozenBatchNorm2d(8)
    frozen.load_state_dict(bn.state_dict())  # strict, num_batches_tracked included: dropped by the loader
    assert "num_batches_tracked" not in frozen.state_dict()
    torch.testing.assert_close(frozen(x), bn(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(AssertionError):  # the check sees a wrong eps
        torch.testing.assert_close(FrozenBatchNorm2d(8, eps=0.5).eval()(x), bn(x), rtol=1e-6, atol=1e-6)


def test_freeze_and_unfreeze_batch_norm_keep_the_outputs():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), _bn(8, 1), nn.ReLU(), nn.Conv2d(8, 4, 1), _bn(4, 2)).eval()
    x = torch.randn(2, 3, 9, 9)
    ref = model(x)
    frozen = freeze_batch_norm(model)
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules()) == 2
    torch.testing.assert_close(frozen(x), ref, rtol=1e-6, atol=1e-6)
    back = unfreeze_batch_norm(frozen).eval()
    assert sum(isinstance(m, nn.BatchNorm2d) for m in back.modules()) == 2
    torch.testing.assert_close(back(x), ref, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------ DropPath

@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_drop_path_equals_torchvision_and_timm_on_the_same_seed(p):
    x = torch.randn(16, 4, 3, 3)
    outs = []
    for layer in (DropPath(p), torchvision.ops.StochasticDepth(p, "row"), timm.layers.DropPath(p)):
        torch.manual_seed(0)
        outs.append(layer.train()(x))
        assert torch.equal(layer.eval()(x), x)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    torch.testing.assert_close(outs[0], outs[2], rtol=0, atol=0)
    assert torch.isfinite(outs[0]).all()  # p = 1 drops every sample (1 / keep would be a NaN)
    if p == 0.3:
        torch.manual_seed(1)
        assert not torch.equal(DropPath(p).train()(x), outs[0])  # the check sees another mask


def test_drop_path_scripts():
    x = torch.randn(4, 2, 3, 3)
    scripted = torch.jit.script(DropPath(0.2).eval())
    assert torch.equal(scripted(x), x)


# ------------------------------------------------------------------------------------------ SqueezeExcite

@pytest.mark.parametrize("act", [nn.ReLU, nn.Hardswish])
def test_squeeze_excite_computes_torchvisions_se_under_other_key_names(act):
    torch.manual_seed(0)
    ours = SqueezeExcite(24, 6, act)
    theirs = torchvision.ops.SqueezeExcitation(24, 6, activation=act)
    sd = ours.state_dict()
    theirs.load_state_dict({k.replace("conv1", "fc1").replace("conv2", "fc2"): v for k, v in sd.items()})
    x = torch.randn(2, 24, 7, 7)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
    # What torchvision's would change: every checkpoint key of the SE (PP-LCNetV2, SE-HRNet).
    assert set(sd) == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"}
    assert set(theirs.state_dict()).isdisjoint(sd)


def test_timms_se_rounds_the_reduced_channels_where_paddleclas_does_not():
    # SE-HRNet reduces by 16 with a floor; timm's SEModule rounds to a multiple of 8 unless given rd_channels.
    assert timm.layers.SEModule(18, rd_ratio=1 / 16).fc1.out_channels == 8 != max(18 // 16, 1)


# ------------------------------------------------------------------------------------------ conv-BN fusion

@pytest.mark.parametrize("bias,groups,frozen", [(False, 1, False), (True, 1, False), (False, 4, True)])
def test_fuse_conv_bn_equals_torchs(bias, groups, frozen):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, padding=1, groups=groups, bias=bias).eval()
    bn = _bn(12)
    ref = torch.nn.utils.fuse_conv_bn_eval(conv, bn)
    if frozen:
        bn = freeze_batch_norm(nn.Sequential(bn))[0].eval()
    w, b = fuse_conv_bn(conv, bn)
    torch.testing.assert_close(w, ref.weight.detach(), rtol=0, atol=0)
    torch.testing.assert_close(b, ref.bias.detach(), rtol=0, atol=0)
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(F.conv2d(x, w, b, padding=1, groups=groups), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_conv_bn_act_reparameterize_keeps_the_output():
    torch.manual_seed(0)
    block = ConvBNAct(4, 8, 3, 2).eval()
    block.bn = _bn(8)
    x = torch.randn(2, 4, 9, 9)
    ref = block(x)
    block.reparameterize()
    assert isinstance(block.bn, nn.Identity)
    torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ EMA

def _train_steps(model: nn.Module, emas: list, steps: int = 5) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(steps):
        loss = model(torch.randn(4, 3, 8, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        for ema in emas:
            ema.update(model)


def test_model_ema_equals_timms_model_ema_v3():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    ours, theirs, slower = ModelEMA(model, 0.9), timm.utils.ModelEmaV3(model, decay=0.9), ModelEMA(model, 0.99)
    _train_steps(model, [ours, theirs, slower])
    got, want = ours.module.state_dict(), theirs.module.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        if want[k].is_floating_point():
            torch.testing.assert_close(got[k], want[k], rtol=1e-6, atol=1e-7, msg=k)
        else:  # num_batches_tracked: copied, as timm's
            assert torch.equal(got[k], want[k]) and int(got[k]) == 5, k
    assert not torch.allclose(got["0.weight"], model[0].weight)  # an average, not a copy of the model
    with pytest.raises(AssertionError):  # the check sees another decay
        torch.testing.assert_close(slower.module.state_dict()["0.weight"], want["0.weight"], rtol=1e-6, atol=1e-7)
    assert not any(p.requires_grad for p in ours.module.parameters()) and not ours.module.training


def test_model_ema_state_dict_round_trips_as_train_py_stores_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ema = ModelEMA(model, 0.5)
    _train_steps(model, [ema], 2)
    stored = ema.module.state_dict()  # train.py's checkpoints store this
    resumed = ModelEMA(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), 0.5)
    resumed.module.load_state_dict(stored)
    for k, v in stored.items():
        assert torch.equal(resumed.module.state_dict()[k], v), k


# ------------------------------------------------------------------------------------------ soft-target losses

@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_soft_targets_and_loss_equal_torchs_and_timms(smoothing):
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 10), torch.randint(0, 10, (6,))
    soft = one_hot_smooth(labels, 10, smoothing)
    torch.testing.assert_close(soft, timm.data.mixup.mixup_target(labels, 10, 1.0, smoothing), rtol=0, atol=1e-7)
    loss = F.cross_entropy(logits, soft)  # what train.py computes
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels, label_smoothing=smoothing))
    from timm.loss import SoftTargetCrossEntropy
    torch.testing.assert_close(loss, SoftTargetCrossEntropy()(logits, soft))
    if smoothing:  # the check sees the smoothing
        assert not torch.allclose(loss, F.cross_entropy(logits, labels))


def test_mixed_targets_sum_to_one():
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    mixer = MixUpCutMix(10, mixup_alpha=0.4, cutmix_alpha=1.0, label_smoothing=0.1)
    for _ in range(6):
        _, y = mixer(torch.rand(4, 3, 8, 8), torch.randint(0, 10, (4,)))
        torch.testing.assert_close(y.sum(-1), torch.ones(4))


# ------------------------------------------------------------------------------------------ RandAugment

def _paddleclas_timm_rand_augment(spec: str):
    """timm's transform with the settings of PaddleClas's TimmAutoAugment at 224 (ppcls/data/preprocess)."""
    from timm.data.auto_augment import rand_augment_transform
    mean = tuple(min(255, round(255 * m)) for m in (0.485, 0.456, 0.406))
    return rand_augment_transform(spec, dict(translate_const=int(224 * 0.45), img_mean=mean,
                                             interpolation=Image.BICUBIC))


def _seeded(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)


@pytest.mark.parametrize("spec", ["rand-m7-mstd0.5-inc1", "rand-m9-n3-p1.0", "rand-m8-n3-inc1-p1.0"])
def test_rand_augment_is_timms_with_paddleclas_settings(spec):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 40, 48), dtype=np.uint8)
    ours, theirs = parse_randaugment(spec), _paddleclas_timm_rand_augment(spec)
    grey128 = timm.data.auto_augment.rand_augment_transform(spec, dict(interpolation=Image.BICUBIC))
    differs_with_grey_fill = False
    for seed in range(12):
        _seeded(seed)
        got = ours(torch.from_numpy(img))
        _seeded(seed)
        want = np.asarray(theirs(Image.fromarray(img.transpose(1, 2, 0))))
        assert got.dtype == torch.uint8 and np.array_equal(got.permute(1, 2, 0).numpy(), want), seed
        _seeded(seed)
        other = np.asarray(grey128(Image.fromarray(img.transpose(1, 2, 0))))
        differs_with_grey_fill |= not np.array_equal(other, want)
    assert differs_with_grey_fill  # the check sees the fill colour


def test_rand_augment_posterizes_to_zero_bits_where_pillow_13_refuses():
    # PP-HGNet-base's rand-m15-mstd0.5-inc1 clips to magnitude 10: "increasing" posterize then keeps 0 bits.
    img = torch.randint(1, 256, (3, 16, 16), dtype=torch.uint8)
    ours = parse_randaugment("rand-m15-n1-inc1-p1.0").rgb
    op = next(op for op in ours.ops if op.name == "PosterizeIncreasing")
    assert not np.asarray(op(F_tv.to_pil_image(img))).any()  # a black image, as Pillow before 13 gave
    theirs = next(op for op in _paddleclas_timm_rand_augment("rand-m15-n1-inc1-p1.0").ops
                  if op.name == "PosterizeIncreasing")
    with pytest.raises(ValueError, match="bits"):  # what timm's own op does under Pillow 13
        theirs(F_tv.to_pil_image(img))
    aug = parse_randaugment("rand-m15-mstd0.5-inc1")
    for seed in range(30):
        _seeded(seed)
        assert aug(img).shape == img.shape


def test_rand_augment_on_grey_and_tv_tensor_images():
    from torchvision import tv_tensors
    aug = RandAugment("rand-m9-n4-p1.0")
    _seeded(0)
    grey = aug(torch.randint(0, 256, (1, 20, 20), dtype=torch.uint8))
    assert grey.shape == (1, 20, 20) and grey.dtype == torch.uint8
    out = aug(tv_tensors.Image(torch.randint(0, 256, (3, 20, 20), dtype=torch.uint8)))
    assert isinstance(out, tv_tensors.Image) and out.shape == (3, 20, 20)


@pytest.mark.parametrize("spec,message", [("m9-mstd0.5", "must start with 'rand-'"),
                                          ("rand-m7-x3", "unknown RandAugment field 'x3'"),
                                          ("rand-m7.5", "bad RandAugment field 'm7.5'")])
def test_rand_augment_rejects_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_randaugment(spec)


def test_rand_augment_without_timm_says_so(monkeypatch):
    from hgzoo.train.config import ConfigError, resolve_config
    monkeypatch.setitem(sys.modules, "timm.data.auto_augment", None)
    with pytest.raises(ImportError, match="RandAugment is timm's, and timm is not installed: pip install timm"):
        parse_randaugment("rand-m7-mstd0.5-inc1")
    with pytest.raises(ConfigError, match="--randaugment: RandAugment is timm's.*'none' to turn it off"):
        resolve_config(["--model", "pphgnet_small"])  # its recipe has rand-m7-mstd0.5-inc1
    assert resolve_config(["--model", "pphgnet_small", "--randaugment", "none"]).randaugment is None


# ------------------------------------------------------------------------------------------ warnings, laziness

def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (10, 20, 30)).save(buf, "PNG")
    return buf.getvalue()


def test_decoding_is_quiet_without_a_process_wide_filter():
    from torchvision.io import decode_image

    from hgzoo.data.transforms import decode_bytes
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        img = decode_bytes(_png())
        assert not [w for w in seen if "decoding and encoding capabilities" in str(w.message)]
        decode_image(torch.frombuffer(bytearray(_png()), dtype=torch.uint8))  # the check sees torchvision's warning
        assert [w for w in seen if "decoding and encoding capabilities" in str(w.message)]
    assert tuple(img.shape) == (3, 3, 4)
    code = ("import warnings, hgzoo.data.transforms; "
            "assert not [f for f in warnings.filters if f[1] and 'TorchVision' in f[1].pattern], warnings.filters")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_hgzoo_checkpoint_is_a_lazy_attribute():
    code = ("import sys, hgzoo; assert 'hgzoo.checkpoint' not in sys.modules; "
            "assert hgzoo.checkpoint is sys.modules['hgzoo.checkpoint']; assert 'checkpoint' in dir(hgzoo)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
