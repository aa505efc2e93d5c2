"""timm's model contract (pooling, FX then TorchScript, feature levels), checked against timm's own ports of the
same networks on the same weights (timm's state dict moved by hgzoo.convert.timm), and for every registered model."""
from __future__ import annotations

import pytest
import torch
from conftest import randomize_bn as _randomize_bn

import hgzoo
from hgzoo.convert.timm import timm_to_hgzoo

timm = pytest.importorskip("timm", reason="timm (the `test` extra) is the reference for its own contract")

MODELS = hgzoo.list_models()
POOLS = ("", "avg", "max", "avgmax", "catavgmax")
# One variant per family, with timm's port of it (timm's default drop_rate, 0, on both sides).
PEERS = {"resnet18_vd": "resnet18d", "pphgnet_tiny": "hgnet_tiny", "pphgnetv2_b0": "hgnetv2_b0",
         "pplcnetv2_small": "lcnetv2_small", "hrnet_w18_c": "hrnet_w18"}


def _port(name: str, **kwargs) -> torch.nn.Module:
    """timm's port of ``name`` (random weights, non-trivial BN statistics), in eval mode."""
    torch.manual_seed(0)
    return _randomize_bn(timm.create_model(PEERS[name], **kwargs)).eval()


def _carrying(tm: torch.nn.Module, name: str, **kwargs) -> torch.nn.Module:
    """hgzoo's ``name`` carrying the weights of timm's port ``tm``, in eval mode."""
    hm = hgzoo.create_model(name, drop_rate=0.0, **kwargs).eval()
    hm.load_state_dict(timm_to_hgzoo(tm.state_dict(), hm))
    return hm


def _pair(name: str, **kwargs) -> tuple[torch.nn.Module, torch.nn.Module]:
    """timm's port (random weights) and hgzoo's model carrying the same weights, both in eval mode."""
    tm = _port(name, **kwargs)
    return tm, _carrying(tm, name, **kwargs)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


@pytest.mark.parametrize("name", sorted(PEERS))
@pytest.mark.parametrize("pool", POOLS)
def test_global_pool_as_timm(name, pool):
    """create_model(global_pool=...) builds what timm's port builds: the same num_features, head_hidden_size and
    forward_head outputs, or an error where timm refuses (no pooling with a classifier; catavgmax before a 1x1 conv)."""
    num_classes = 0 if pool == "" else 10
    torch.manual_seed(0)
    try:
        tm = timm.create_model(PEERS[name], global_pool=pool, num_classes=num_classes)
    except (AssertionError, ValueError) as e:
        with pytest.raises(ValueError, match="global_pool"):
            hgzoo.create_model(name, global_pool=pool, num_classes=num_classes)
        pytest.skip(f"timm refuses it too: {e}")
    tm = _randomize_bn(tm).eval()
    hm = _carrying(tm, name, global_pool=pool, num_classes=num_classes)
    assert (hm.num_features, hm.head_hidden_size, hm.num_classes) == (tm.num_features, tm.head_hidden_size,
                                                                      tm.num_classes)
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        _close(hm.forward_features(x), tm.forward_features(x))
        _close(hm(x), tm(x))
        _close(hm.forward_head(hm.forward_features(x), pre_logits=True),
               tm.forward_head(tm.forward_features(x), pre_logits=True))


@pytest.mark.parametrize("name", sorted(PEERS))
def test_reset_classifier_as_timm(name):
    """reset_classifier(0, '') gives what timm's does on the same weights (the unpooled map, through the head's 1x1
    conv where there is one); reset_classifier(n, pool) then gives timm's widths; a negative count is refused."""
    tm, hm = _pair(name)
    x = torch.randn(1, 3, 64, 96)
    tm.reset_classifier(0, "")
    hm.reset_classifier(0, "")
    with torch.no_grad():
        _close(hm(x), tm(x))
    assert hm(x).ndim == 4 and hm.head_hidden_size == tm.head_hidden_size
    tm.reset_classifier(5, "max")
    hm.reset_classifier(5, "max")
    assert hm(x).shape == tm(x).shape == (1, 5)
    assert (hm.num_features, hm.head_hidden_size) == (tm.num_features, tm.head_hidden_size)
    with pytest.raises(ValueError, match="num_classes"):
        hm.reset_classifier(-1)
    with pytest.raises(ValueError, match="global_pool='mean'"):
        hm.reset_classifier(5, "mean")
    with pytest.raises(ValueError, match="num_classes=0"):
        hm.reset_classifier(5, "")


def test_avg_keeps_paddle_head_numerics():
    """'avg' is PaddleClas's head exactly (pool → 1x1 conv → act → dropout scale → fc): global_pool='avg' and None
    build the same module and give identical logits; another pooling gives other logits (the test can fail)."""
    torch.manual_seed(0)
    ref = hgzoo.create_model("pphgnet_base").eval()  # Paddle's dropout 0.2, downscale_in_infer
    x = torch.randn(1, 3, 64, 64)
    for pool in ("avg", "max"):
        m = hgzoo.create_model("pphgnet_base", global_pool=pool).eval()
        m.load_state_dict(ref.state_dict())
        with torch.no_grad():
            assert torch.equal(m(x), ref(x)) == (pool == "avg")
    assert isinstance(m.head.global_pool, torch.nn.Module) and repr(ref.head.global_pool).startswith("AdaptiveAvg")


@pytest.mark.parametrize("name", MODELS)
def test_timm_registry_pools_and_levels(name):
    """On every model, built through timm's registry: feature_info describes forward_intermediates's levels and
    features_only's, under timm's port's numbering (ResNet-vd and HRNet count a stride-2 stem level 0; hgzoo's
    numbering, the 4 stages: test_models.py::test_contract); forward_head with every pooling timm offers the
    family; reset_classifier(0, '') for the unpooled map. (One test: building the big variants is the cost.)"""
    import hgzoo.timm_compat

    hgzoo.timm_compat.register()
    m = timm.create_model(name, num_classes=3).eval()
    n = 5 if name.startswith(("resnet", "hrnet", "se_hrnet")) else 4
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        inter = m.forward_intermediates(x, intermediates_only=True)
    assert len(m.feature_info) == len(inter) == n
    assert [(f["num_chs"], f["reduction"]) for f in m.feature_info] == [(t.shape[1], 64 // t.shape[2])
                                                                        for t in inter]
    backbone = timm.create_model(name, features_only=True, out_indices=(n - 3, n - 2, n - 1), feature_cls="getter")
    with torch.no_grad():
        levels = backbone(x)
    assert [t.shape[1] for t in levels] == backbone.feature_info.channels() == [t.shape[1] for t in inter[-3:]]

    with torch.no_grad():
        feats = m.forward_features(x)
        for pool in POOLS[1:]:
            if pool == "catavgmax" and m.head.hidden_size:
                continue  # refused, as timm's ports refuse it (test_global_pool_as_timm)
            m.reset_classifier(3, pool)
            assert m.forward_head(feats).shape == (1, 3), pool
            assert m.forward_head(feats, pre_logits=True).shape == (1, m.head_hidden_size), pool
        m.reset_classifier(0, "")
        out = m(x)
    assert out.shape[:2] == (1, m.head_hidden_size) and out.shape[2:] == feats.shape[2:]


def _interpreted():
    """Run a scripted model's graph as compiled, without the profiling executor: its first call only profiles the
    graph (about 2 CPU-seconds for an HRNet) to optimize the calls after it, which these tests never make."""
    return torch.jit.optimized_execution(False)


@pytest.mark.slow  # scripts a model (an HRNet: ~30 s on 2 cores)
@pytest.mark.parametrize("name", MODELS)
def test_fx_then_torchscript(name):
    """torch.jit.script(torch.fx.symbolic_trace(model)) works and gives the model's logits: FX copies forward's
    annotations into the code it writes, which TorchScript rejects when they are strings (postponed evaluation)."""
    torch.manual_seed(0)
    model = hgzoo.create_model(name, num_classes=5).eval()
    scripted = torch.jit.script(torch.fx.symbolic_trace(model))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad(), _interpreted():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # scripts a model
@pytest.mark.parametrize("name", ["resnet18_vd", "hrnet_w18_c"])
def test_fx_then_torchscript_features(name):
    """The same for a features-only backbone (its forward returns a list)."""
    model = hgzoo.create_model(name, features_only=True).eval()
    scripted = torch.jit.script(torch.fx.symbolic_trace(model))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), _interpreted():
        for a, b in zip(scripted(x), model(x), strict=True):
            torch.testing.assert_close(a, b)


def test_string_annotations_break_fx_then_torchscript():
    """The failure the tests above guard against, reproduced: a forward with postponed (string) annotations."""
    namespace: dict = {}
    exec("from __future__ import annotations\nimport torch\n"
         "class M(torch.nn.Module):\n    def forward(self, x: torch.Tensor) -> torch.Tensor:\n        return x + 1\n",
         namespace)
    with pytest.raises(RuntimeError, match="Unknown type name"):
        torch.jit.script(torch.fx.symbolic_trace(namespace["M"]()))


@pytest.mark.parametrize("name", sorted(PEERS))
def test_levels_as_timm_port(name):
    """Through timm's registry, feature_info, forward_intermediates and features_only (feature_cls 'getter' and
    'hook', out_indices timm's) match timm's port level for level on the same weights."""
    import hgzoo.timm_compat

    hgzoo.timm_compat.register()
    tm = _port(name)
    hm = timm.create_model(name, drop_rate=0.0).eval()
    hm.load_state_dict(timm_to_hgzoo(tm.state_dict(), hm))
    assert [(f["num_chs"], f["reduction"]) for f in hm.feature_info] == [
        (f["num_chs"], f["reduction"]) for f in tm.feature_info]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(hm.forward_intermediates(x, intermediates_only=True),
                        tm.forward_intermediates(x, intermediates_only=True), strict=True):
            _close(a, b)
    idx = (2, 3) if len(tm.feature_info) == 4 else (2, 3, 4)
    for feature_cls in ("getter", "hook"):
        backbone = timm.create_model(name, features_only=True, out_indices=idx, feature_cls=feature_cls).eval()
        backbone.model.load_state_dict(hm.state_dict(), strict=False)
        with torch.no_grad():
            ours = backbone(x)
            theirs = tm.forward_intermediates(x, indices=list(idx), intermediates_only=True)
        assert backbone.feature_info.reduction() == [tm.feature_info[i]["reduction"] for i in idx]
        for a, b in zip(ours, theirs, strict=True):
            _close(a, b)


def test_feature_indexing_values():
    """hgzoo's names number the stages 0-3, so timm's out_indices=(2, 3, 4) is out of range there; timm's names and
    feature_indexing='timm' accept it; an unknown feature_cls or indexing is refused by name."""
    with pytest.raises(ValueError, match="out_index 4"):
        hgzoo.create_model("resnet50_vd", features_only=True, out_indices=(2, 3, 4))
    for kw in (dict(feature_indexing="timm"), {}):
        b = hgzoo.create_model("resnet50_vd" if kw else "resnet50d", features_only=True, out_indices=(2, 3, 4), **kw)
        assert b.feature_info.reduction() == [8, 16, 32]
    with pytest.raises(ValueError, match="feature_cls='dict'"):
        hgzoo.create_model("resnet50_vd", features_only=True, feature_cls="dict")
    with pytest.raises(ValueError, match="'hgzoo' or 'timm'"):
        hgzoo.create_model("resnet50_vd", feature_indexing="mmdet")


@pytest.mark.parametrize("output_stride", [16, 8])
def test_output_stride_as_timm_resnet50d(output_stride):
    """output_stride=16 / 8 dilates ResNet-vd's last stages as timm's resnet50d does: the same shapes, dilations,
    reductions and outputs on the same weights; the undilated model gives another shape (the test can fail)."""
    torch.manual_seed(0)
    tm = _randomize_bn(timm.create_model("resnet50d", output_stride=output_stride)).eval()
    hm = hgzoo.create_model("resnet50_vd", output_stride=output_stride).eval()
    hm.load_state_dict(timm_to_hgzoo(tm.state_dict(), hm))
    dilations = [[m.dilation for m in s.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
                 for s in (hm.stages, torch.nn.ModuleList([tm.layer1, tm.layer2, tm.layer3, tm.layer4]))]
    assert dilations[0] == dilations[1] and (2, 2) in dilations[0]
    assert [f["reduction"] for f in hm.feature_info] == [f["reduction"] for f in tm.feature_info][1:]
    x = torch.randn(1, 3, 97, 130)
    with torch.no_grad():
        feats = hm.forward_features(x)
        assert feats.shape[2:] == (-(-97 // output_stride), -(-130 // output_stride))
        _close(feats, tm.forward_features(x))
        _close(hm(x), tm(x))
        assert hgzoo.create_model("resnet50_vd").forward_features(x).shape != feats.shape
        fused = hm.fuse()(x)  # the fused convs keep their dilation
    _close(fused, tm(x))


def test_output_stride_refused_where_not_built():
    with pytest.raises(ValueError, match="HRNet keeps every resolution"):
        hgzoo.create_model("hrnet_w18_c", output_stride=16)
    with pytest.raises(ValueError, match="8, 16 or 32"):
        hgzoo.create_model("resnet18_vd", output_stride=4)
    assert hgzoo.create_model("pphgnetv2_b0", output_stride=32).num_classes == 1000  # timm's default: accepted
