"""``norm_layer=`` / ``act_layer=`` as timm takes them (a name, a class or a partial): timm's own ResNet-d on the same
weights for ResNet-vd, timm's resolvers for the names, and for every family a default model whose ReLUs and
BatchNorms are swapped by hand; the defaults (PaddleClas's) unchanged; fuse and pretrained weights refused in one line
where the norm cannot take them."""
from __future__ import annotations

import functools

import pytest
import torch
from conftest import randomize_bn as _randomize_bn
from safetensors.torch import save_file
from test_timm_contract import _close

import hgzoo
from hgzoo.convert.timm import timm_to_hgzoo
from hgzoo.layers import FrozenBatchNorm2d, freeze_batch_norm, get_act_layer, get_norm_layer
from hgzoo.layers.create import ACT_LAYERS, NORM_LAYERS

timm = pytest.importorskip("timm", reason="timm (the `test` extra) is the reference for its own arguments")

# HRNet's smallest takes a few CPU-seconds to build twice: full suite only.
FAMILIES = ("pphgnet_tiny", "pphgnetv2_b0", "pplcnetv2_small", pytest.param("hrnet_w18_c", marks=pytest.mark.slow),
            "resnet18_vd")


def _calibrate(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """BatchNorm statistics of ``x`` itself (train-mode pass, cumulative average): random weights then carry the
    input through a deep net, so the outputs of two images differ by a good fraction of their size."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def _carries_input(out: torch.Tensor) -> None:
    assert float((out[0] - out[1]).abs().max()) > 0.05 * float(out.abs().max())


@pytest.mark.parametrize("act_layer, norm_layer, timm_norm", [
    ("silu", "batchnorm2d", None),
    ("swish", torch.nn.SyncBatchNorm, torch.nn.SyncBatchNorm),
    # timm's ResNet passes device= to its norm, which torchvision's FrozenBatchNorm2d refuses: compared with BatchNorm
    # in eval mode, the same arithmetic.
    (functools.partial(torch.nn.LeakyReLU, 0.1), "frozen_batchnorm2d", None),
])
def test_resnet18_vd_as_timm_resnet18d(act_layer, norm_layer, timm_norm):
    """hgzoo's resnet18_vd and timm's resnet18d, given the same act_layer / norm_layer, agree on the same weights
    (features and logits); the default ReLU model on those weights does not (the test can fail)."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 64, 64)
    tm = _calibrate(timm.create_model("resnet18d", act_layer=act_layer,
                                      **({"norm_layer": timm_norm} if timm_norm else {})), x)
    hm = hgzoo.create_model("resnet18_vd", act_layer=act_layer, norm_layer=norm_layer).eval()
    hm.load_state_dict(timm_to_hgzoo(tm.state_dict(), hm))
    relu = hgzoo.create_model("resnet18_vd").eval()
    relu.load_state_dict(timm_to_hgzoo(tm.state_dict(), relu))
    with torch.no_grad():
        ref = tm.forward_features(x)
        _carries_input(ref)
        _close(hm.forward_features(x), ref)
        _close(hm(x), tm(x))
        assert float((relu.forward_features(x) - ref).abs().max()) > 0.05 * float(ref.abs().max())


@pytest.mark.slow  # two ResNet-50s: about 2 CPU-s
@pytest.mark.parametrize("act_layer, norm_layer", [("relu", "groupnorm"), ("gelu", "layernorm2d")])
def test_statistics_free_norms_as_timm_resnet50d(act_layer, norm_layer):
    """Norms without running statistics as timm's (its GroupNorm with 32 groups, its LayerNorm2d), on resnet50d (the
    first block of resnet18d has no projection in timm, which a GroupNorm cannot stand in for as an identity)."""
    torch.manual_seed(0)
    tm = timm.create_model("resnet50d", act_layer=act_layer, norm_layer=norm_layer).eval()
    hm = hgzoo.create_model("resnet50_vd", act_layer=act_layer, norm_layer=norm_layer).eval()
    hm.load_state_dict(timm_to_hgzoo(tm.state_dict(), hm))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = tm.forward_features(x)
        _carries_input(ref)
        _close(hm.forward_features(x), ref)
        _close(hm(x), tm(x))


def test_through_timm_registry():
    """timm.create_model('resnet18_vd', act_layer=..., norm_layer=...) after register() builds hgzoo's model with
    them, equal to timm's resnet18d given the same on the same weights."""
    import hgzoo.timm_compat

    hgzoo.timm_compat.register()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    tm = _calibrate(timm.create_model("resnet18d", act_layer="hard_swish"), x)
    hm = timm.create_model("resnet18_vd", act_layer="hard_swish", norm_layer="frozenbatchnorm2d").eval()
    assert isinstance(hm, hgzoo.models.resnet_vd.ResNetVd) and isinstance(hm.stem[0].bn, FrozenBatchNorm2d)
    hm.load_state_dict(timm_to_hgzoo(tm.state_dict(), hm))
    with torch.no_grad():
        _close(hm(x), tm(x))


def _count(model: torch.nn.Module, cls: type) -> int:
    return sum(type(m) is cls for m in model.modules())


@pytest.mark.parametrize("name", FAMILIES)
def test_every_relu_and_batchnorm_replaced(name):
    """act_layer / norm_layer replace every ReLU and every BatchNorm2d module of the default model, and nothing else:
    the same logits as the default model with its modules swapped by hand (SiLU for ReLU, freeze_batch_norm's
    FrozenBatchNorm2d for BatchNorm2d), on the same weights; the same state-dict keys (but the BatchNorm counters, that
    FrozenBatchNorm2d keeps none of). A swap that misses one ReLU gives other logits (the test can fail)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    default = _calibrate(_randomize_bn(hgzoo.create_model(name), affine=True), x)
    n_relu, n_bn = _count(default, torch.nn.ReLU), _count(default, torch.nn.BatchNorm2d)
    assert n_relu > 0 and n_bn > 0
    model = hgzoo.create_model(name, act_layer="silu", norm_layer="frozenbatchnorm2d").eval()
    assert (_count(model, torch.nn.SiLU), _count(model, FrozenBatchNorm2d)) == (n_relu, n_bn)
    assert _count(model, torch.nn.ReLU) == _count(model, torch.nn.BatchNorm2d) == 0
    model.load_state_dict(default.state_dict())

    swapped = freeze_batch_norm(default)
    relus = [(parent, child) for parent in swapped.modules() for child, m in parent.named_children()
             if type(m) is torch.nn.ReLU]
    for parent, child in relus[1:]:
        setattr(parent, child, torch.nn.SiLU())
    with torch.no_grad():
        almost = swapped(x)  # one ReLU left
        setattr(relus[0][0], relus[0][1], torch.nn.SiLU())
        ref = swapped(x)
        out = model(x)
    assert list(model.state_dict()) == list(swapped.state_dict())
    _carries_input(ref)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    assert not torch.allclose(almost, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max()))


@pytest.mark.parametrize("name", FAMILIES)
def test_defaults_unchanged(name):
    """The default build is PaddleClas's (ReLU, BatchNorm2d): 'relu' / 'batchnorm2d' spelled out, or the classes,
    give the same modules, keys and logits from the same seed."""
    x = torch.randn(1, 3, 64, 64)
    models = []
    for kwargs in ({}, {"act_layer": "ReLU", "norm_layer": "batch_norm2d"}):
        torch.manual_seed(0)
        models.append(hgzoo.create_model(name, **kwargs).eval())
    assert repr(models[0]) == repr(models[1])
    assert list(models[0].state_dict()) == list(models[1].state_dict())
    with torch.no_grad():
        assert torch.equal(models[0](x), models[1](x))


def test_names_as_timm_resolves_them():
    """Every name hgzoo resolves without timm computes what timm's resolver gives for it (activations on a tensor,
    norms in eval mode on a 64-channel map); a name only timm knows is taken from timm."""
    x = torch.randn(2, 64, 5, 7) * 3
    for name in ACT_LAYERS:
        torch.testing.assert_close(get_act_layer(name)()(x), timm.layers.get_act_layer(name)()(x))
    for name in NORM_LAYERS:
        if name == "syncbatchnorm":  # not in timm's table
            assert get_norm_layer(name) is torch.nn.SyncBatchNorm
            continue
        torch.manual_seed(0)
        ours, theirs = get_norm_layer(name)(64).eval(), timm.layers.get_norm_layer(name)(64).eval()
        theirs.load_state_dict(ours.state_dict())
        torch.testing.assert_close(ours(x), theirs(x))
    assert get_act_layer("quick_gelu") is timm.layers.get_act_layer("quick_gelu")
    assert get_act_layer(torch.nn.GELU) is torch.nn.GELU


def test_bad_names_refused_in_one_line():
    with pytest.raises(ValueError, match=r"act_layer='relu7' is not an activation .* silu"):
        hgzoo.create_model("resnet18_vd", act_layer="relu7")
    with pytest.raises(ValueError, match=r"norm_layer='batchnorm3' is not a norm .* frozenbatchnorm2d"):
        hgzoo.create_model("pphgnetv2_b0", norm_layer="batchnorm3")
    with pytest.raises(ValueError, match="'identity' for none"):
        hgzoo.create_model("hrnet_w18_c", act_layer=None)
    with pytest.raises(TypeError, match="norm_layer must be a name, a class"):
        hgzoo.create_model("pplcnetv2_small", norm_layer=3)


@pytest.mark.parametrize("name", ["pphgnetv2_b0", "pplcnetv2_small"])
def test_fuse(name):
    """fuse() folds a FrozenBatchNorm2d as a BatchNorm (the same logits, LAB and re-parameterized branches
    included); a GroupNorm cannot be folded: one-line ValueError, and nothing changed. A GroupNorm is exempt from
    weight decay where PaddleClas exempts BatchNorm."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    model = hgzoo.create_model(name, act_layer="gelu", norm_layer="frozenbatchnorm2d").eval()
    default = _calibrate(_randomize_bn(hgzoo.create_model(name), affine=True), x)
    model.load_state_dict(default.state_dict())
    with torch.no_grad():
        ref = model(x)
        out = model.fuse()(x)
    assert _count(model, FrozenBatchNorm2d) == 0
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))

    gn = hgzoo.create_model(name, norm_layer="groupnorm").eval()
    assert gn.no_weight_decay() == default.no_weight_decay() != set()  # PaddleClas's decay rule for BN, kept
    before = {k: v.clone() for k, v in gn.state_dict().items()}
    with pytest.raises(ValueError, match=r"^stem\.\S+\.bn is a GroupNorm, which cannot be folded"):
        gn.fuse()
    assert gn.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in gn.state_dict().items())


def test_pretrained_batchnorm_weights(tmp_path):
    """A BatchNorm checkpoint loads into SyncBatchNorm and FrozenBatchNorm2d as it is (the same logits); into a
    GroupNorm model it is refused in one line, rather than loading the affine half of it."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    bn = _calibrate(_randomize_bn(hgzoo.create_model("pphgnetv2_b0"), affine=True), x)
    file = tmp_path / "w.safetensors"
    save_file(bn.state_dict(), str(file))
    with torch.no_grad():
        ref = bn(x)
        for norm in ("syncbatchnorm", "frozenbatchnorm2d"):
            model = hgzoo.create_model("pphgnetv2_b0", norm_layer=norm, pretrained_file=file).eval()
            torch.testing.assert_close(model(x), ref)
    with pytest.raises(ValueError, match=r"^w\.safetensors: these weights are BatchNorm's .* GroupNorm"):
        hgzoo.create_model("pphgnetv2_b0", norm_layer="groupnorm", pretrained_file=file)
    with pytest.raises(ValueError, match=r"^pphgnetv2_b0\.ssld_stage2_ft_in1k: these weights are BatchNorm's"):
        hgzoo.create_model("pphgnetv2_b0", norm_layer="layernorm2d", pretrained=True)  # refused before any download
