"""Working inside timm's ecosystem, tested through timm's own functions (timm 1.0.31): the data config and
transforms, the keyword arguments and list_models, timm's names for the same networks, forward_intermediates /
prune_intermediate_layers against timm's ports, the layer-decay optimizer, the registry bridge running the calls of
timm's train.py and validate.py, torch.hub, and scripting / FX tracing."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from image_samples import photos, write_png
from safetensors.torch import save_file

import hgzoo
import hgzoo.data
from hgzoo._registry import NOT_TIMM_ALIASES, TIMM_ALIASES, UnknownModelError

pytest.importorskip("timm", reason="timm (the `test` extra) is the reference for these tests")
import timm  # noqa: E402
import timm.optim  # noqa: E402  (not loaded by `import timm`)

ROOT = Path(__file__).resolve().parents[1]
# One variant per family, and timm's port of the same network.
FAMILIES = {"pphgnet_tiny": "hgnet_tiny", "pphgnetv2_b0": "hgnetv2_b0", "pplcnetv2_small": "lcnetv2_small",
            "hrnet_w18_c": "hrnet_w18_ssld", "resnet50_vd": "resnet50d"}


pytestmark = pytest.mark.usefixtures("one_thread")


def _calibrate(model: torch.nn.Module, seed: int = 0, size: int = 64) -> torch.nn.Module:
    """Random weights made to carry the input: BN gammas below 1, statistics from a batch, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, size, size, generator=g)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.3)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.momentum = None
        model.train()
        model(x)
    return model.eval()


def _copy_by_order(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Copy ``src``'s state into ``dst`` entry by entry, in registration order; every shape must match."""
    s = [(k, v) for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")]
    d = [(k, v) for k, v in dst.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert len(s) == len(d), f"{len(s)} tensors vs {len(d)}"
    with torch.no_grad():
        for (ks, vs), (kd, vd) in zip(s, d):
            assert vs.shape == vd.shape, (ks, kd, tuple(vs.shape), tuple(vd.shape))
            vd.copy_(vs)


def _fold_hrnet_head_biases(model: torch.nn.Module) -> None:
    """timm's hrnet_w* have a bias on the head's four convs, each followed by BN: fold it into the running mean."""
    with torch.no_grad():
        for seq in [*model.downsamp_modules, model.final_layer]:
            conv, bn = seq[0], seq[1]
            bn.running_mean.sub_(conv.bias)
            conv.bias = None


def _twins(hgzoo_name: str, timm_name: str, seed: int = 0):
    """(timm's model with calibrated random weights, hgzoo's with the same weights), in eval mode."""
    torch.manual_seed(seed)
    ref = _calibrate(timm.create_model(timm_name), seed)
    if timm_name.startswith("hrnet") and ref.final_layer[0].bias is not None:
        _fold_hrnet_head_biases(ref)
    # Built on the meta device (no random init: every tensor is overwritten from timm's model just below).
    with torch.device("meta"):
        ours = hgzoo.create_model(hgzoo_name, feature_indexing="timm")  # timm's numbering of the levels
    ours = ours.to_empty(device="cpu").eval()
    _copy_by_order(ref, ours)
    with torch.no_grad():
        for key, buf in ours.named_buffers():
            if key.endswith("num_batches_tracked"):
                buf.zero_()
    return ref, ours


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


# --- the pretrained config and the data config ---------------------------------------------------------------------

def test_every_tag_is_a_timm_pretrained_cfg():
    from timm.models import PretrainedCfg as TimmCfg

    for name in hgzoo.list_pretrained():
        cfg = hgzoo.get_pretrained_cfg(name)
        timm_cfg = TimmCfg(**cfg.to_timm_dict())
        assert math.floor(cfg.crop_size / timm_cfg.crop_pct) == cfg.resize_short, name
        assert cfg["crop_pct"] == cfg.get("crop_pct") == timm_cfg.crop_pct
        assert cfg["input_size"] == (3, cfg.crop_size, cfg.crop_size)
        assert cfg["resize_short"] == cfg.resize_short and "crop_mode" in cfg and "nope" not in cfg
        assert set(cfg.to_timm_dict()) <= set(cfg.keys())


@pytest.mark.parametrize("name", list(FAMILIES))
def test_timm_resolves_the_data_config(name):
    model = hgzoo.create_model(name, num_classes=10)  # no weights: the architecture's preprocessing
    assert model.default_cfg is model.pretrained_cfg and model.pretrained_cfg["first_conv"] == model.first_conv
    for args, kw in (({}, {}), ({"img_size": 160}, {}), ({"crop_pct": 0.9, "mean": (0.5,), "std": (0.25,)}, {}),
                     ({"input_size": (1, 96, 96), "interpolation": "bilinear"}, {"use_test_size": True})):
        expected = timm.data.resolve_data_config(args, model=model, **kw)
        assert hgzoo.data.resolve_data_config(args, model=model, **kw) == expected
        assert hgzoo.data.resolve_model_data_config(model, args=args, **kw) == expected
    assert timm.data.resolve_model_data_config(model)["crop_pct"] == model.pretrained_cfg.crop_pct
    # the hgzoo way keeps its keys; the two ways do not mix
    assert hgzoo.data.resolve_data_config(model.pretrained_cfg)["resize_short"] == model.pretrained_cfg.resize_short
    with pytest.raises(TypeError, match="crop_size"):
        hgzoo.data.resolve_data_config(model=model, crop_size=96)
    # a model built by its builder, and a backbone, have a configuration too
    from hgzoo._registry import model_entrypoint
    assert model_entrypoint(name)().pretrained_cfg.architecture == name
    backbone = hgzoo.create_model(name, features_only=True)
    assert timm.data.resolve_model_data_config(backbone) == timm.data.resolve_model_data_config(model)
    assert backbone.default_cfg is backbone.pretrained_cfg


# Mean |timm - hgzoo| over scikit-image's 7 photos, in normalized units (one 8-bit level is about 0.017).
TRANSFORM_BOUNDS = {"pil": 0.03, "cv2": 0.06}


@pytest.mark.parametrize("name", ["pphgnet_tiny", "pphgnet_small", "pplcnetv2_base"])
def test_timm_transform_is_close_to_paddleclas_preprocessing(name):
    """timm's own transform from our data config against hgzoo's exact PaddleClas pipeline, on real photos."""
    from PIL import Image

    cfg = hgzoo.get_pretrained_cfg(name)
    ours = hgzoo.data.create_transform(cfg)
    theirs = timm.data.create_transform(**hgzoo.data.resolve_model_data_config(hgzoo.create_model(name)))
    resize = theirs.transforms[0]
    assert resize.size == cfg.resize_short, "timm does not resize to PaddleClas's short side"
    diffs = {}
    for key, img in photos().items():
        diffs[key] = (theirs(Image.fromarray(img)) - ours(torch.from_numpy(img).permute(2, 0, 1))).abs()
    mean = float(torch.cat([d.flatten() for d in diffs.values()]).mean())
    assert mean < TRANSFORM_BOUNDS[cfg.resize_backend], f"{name}: mean difference {mean:.4f}"
    if cfg.resize_backend == "pil":
        # Square photos: no long-side or crop-offset rounding to differ on; PIL's resize is PaddleClas's: one level.
        for key in ("astronaut", "immunohistochemistry", "retina"):
            assert diffs[key].max() < 0.02, (key, float(diffs[key].max()))


# --- create_model's timm arguments, list_models ---------------------------------------------------------------------

def test_create_model_takes_timms_arguments(tmp_path):
    torch.manual_seed(0)
    ref = hgzoo.create_model("pphgnetv2_b0", num_classes=3).eval()
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save({"model": ref.state_dict()}, tmp_path / "run.pth")  # train.py's and timm's wrapped layouts
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = ref(x)
        for path in ("w.safetensors", "run.pth"):
            m = hgzoo.create_model("pphgnetv2_b0", num_classes=3, checkpoint_path=tmp_path / path).eval()
            torch.testing.assert_close(m(x), y, rtol=0, atol=0)
        overlay = dict(file=str(tmp_path / "w.safetensors"))
        m = hgzoo.create_model("pphgnetv2_b0", pretrained=True, num_classes=3, pretrained_cfg_overlay=overlay).eval()
        torch.testing.assert_close(m(x), y, rtol=0, atol=0)
        m = hgzoo.create_model("pphgnetv2_b0", num_classes=3, pretrained_cfg_overlay=overlay).eval()
        assert not torch.equal(m(x), y), "timm reads the overlay's file only with pretrained=True"
    m = hgzoo.create_model("pphgnetv2_b0", checkpoint_path="", global_pool="avg", scriptable=True, exportable=False,
                           pretrained_cfg_overlay=dict(mean=(0.5, 0.5, 0.5), crop_pct=0.875, input_size=(3, 192, 192)))
    cfg = timm.data.resolve_model_data_config(m)
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["input_size"] == (3, 192, 192)
    assert m.pretrained_cfg.resize_short == math.floor(192 / 0.875) == math.floor(192 / cfg["crop_pct"])
    with pytest.raises(TypeError, match="'hf_hub_id'"):
        hgzoo.create_model("pphgnetv2_b0", pretrained_cfg_overlay=dict(hf_hub_id="timm/hgnetv2_b0"))
    with pytest.raises(ValueError, match="global_pool='mean'.*'avgmax'"):
        hgzoo.create_model("pphgnetv2_b0", global_pool="mean")
    with pytest.raises(ValueError, match="num_classes=0"):
        m.reset_classifier(5, global_pool="")
    m.reset_classifier(5, "avg")
    assert m.num_classes == 5
    with pytest.raises(TypeError, match="not_an_option"):
        hgzoo.create_model("pphgnetv2_b0", not_an_option=1)
    with pytest.raises(TypeError, match="scriptable"):
        hgzoo.create_model("pphgnetv2_b0", scriptable="yes")


def test_list_models_takes_timms_arguments():
    assert hgzoo.list_models("PPHGNet*") == hgzoo.list_models("pphgnet*") != []
    assert hgzoo.list_models(["hrnet_w18*", "RESNET50*"]) == ["hrnet_w18_c", "resnet50_vd"]
    assert hgzoo.list_models("hgnet_s*") == ["pphgnet_small"]  # timm's name for it
    assert hgzoo.list_models("*hrnet*", exclude_filters=["se_*", "*w3*"]) == [
        "hrnet_w18_c", "hrnet_w40_c", "hrnet_w44_c", "hrnet_w48_c", "hrnet_w64_c"]
    assert hgzoo.list_models(module="resnet_vd") == hgzoo.list_models("resnet*_vd")
    tags = hgzoo.list_models("pphgnet_small", pretrained=True)
    assert tags == ["pphgnet_small.paddle_in1k", "pphgnet_small.ssld_in1k"] == hgzoo.list_pretrained("pphgnet_small*")
    assert hgzoo.list_models("pphgnet_small.ssld*", include_tags=True) == ["pphgnet_small.ssld_in1k"]
    assert hgzoo.list_models(name_matches_cfg=True) == hgzoo.list_models()
    # timm's own list_models agrees on the names it can see once registered
    hgzoo.timm_compat.register()
    for kw in ({"filter": "pphgnet*"}, {"filter": ["hrnet*_c", "resnet*_vd"], "exclude_filters": "*w4*"},
               {"filter": "pplcnetv2*", "pretrained": True}):
        assert sorted(timm.list_models(**kw)) == hgzoo.list_models(**kw), kw


# --- timm's names for the same networks --------------------------------------------------------------------------

@pytest.mark.parametrize("alias", sorted(TIMM_ALIASES))
def test_timm_name_is_the_same_network(alias):
    """timm's model and hgzoo's under timm's name: the same tensors one to one, the same output."""
    ref, ours = _twins(alias, alias)
    assert ours.pretrained_cfg.architecture == TIMM_ALIASES[alias].target
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ref(x), ours(x)
    assert (a[0] - a[1]).abs().max() > 0.1 * a.abs().max(), "weak oracle: the output does not depend on the input"
    assert _rel(b, a) < 1e-5


@pytest.mark.parametrize("name", sorted(NOT_TIMM_ALIASES))
def test_timm_names_of_other_networks_are_refused(name):
    with pytest.raises(UnknownModelError, match="different network"):
        hgzoo.create_model(name)
    ours = hgzoo.create_model(name.replace("d", "_vd"))
    theirs = timm.create_model(name)
    if name == "resnet200d":
        assert (len(theirs.layer2), len(theirs.layer3)) == (24, 36) and (len(ours.stages[1]), len(ours.stages[2])) \
            == (12, 48)
    else:  # timm: an identity shortcut in the first block; PaddleClas: a projection
        assert theirs.layer1[0].downsample is None and hasattr(ours.stages[0][0].downsample, "conv")


# --- forward_intermediates, prune_intermediate_layers ----------------------------------------------------------

@pytest.mark.parametrize("name", list(FAMILIES))
def test_forward_intermediates_as_timm_and_as_features_only(name):
    ref, ours = _twins(name, FAMILIES[name])
    n_levels = len(ref.feature_info) if isinstance(ref.feature_info, list) else len(ref.feature_info.info)
    assert len(ours.intermediate_info()) == n_levels
    # timm's HRNet (like PaddleClas's) upsamples by a fixed factor: sides must be multiples of 32 there.
    h, w = (64, 96) if name.startswith("hrnet") else (65, 99)
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for kw in ({}, {"indices": 2}, {"indices": [0, -1]}, {"indices": [1], "stop_early": True}):
            theirs = ref.forward_intermediates(x, intermediates_only=True, **kw)
            mine = ours.forward_intermediates(x, intermediates_only=True, **kw)
            assert len(mine) == len(theirs), kw
            for a, b in zip(mine, theirs):
                assert a.shape == b.shape and _rel(a, b) < 1e-5, kw
        final, inter = ours.forward_intermediates(x)
        torch.testing.assert_close(final, ours.forward_features(x))
        # features_only's levels are forward_intermediates's: one list (feature_info), in either numbering
        assert [f["num_chs"] for f in ours.feature_info] == [t.shape[1] for t in inter]
        for indexing, offset in (("timm", 0), ("hgzoo", int(ours.stem_info is not None))):
            with torch.device("meta"):  # no init: every tensor is loaded from ``ours`` just below
                backbone = hgzoo.create_model(name, features_only=True, feature_indexing=indexing)
            backbone = backbone.to_empty(device="cpu").eval()
            assert backbone.model.load_state_dict(ours.state_dict(), strict=False).missing_keys == []
            levels = backbone(x)
            assert len(levels) == len(inter) - offset
            for a, b in zip(levels, inter[offset:], strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="NCHW"):
        ours.forward_intermediates(x, output_fmt="NHWC")
    with pytest.raises(ValueError, match="out of range"):
        ours.forward_intermediates(x, indices=[n_levels])


@pytest.mark.parametrize("name", ["resnet50_vd", "hrnet_w18_c", "pplcnetv2_small"])
def test_prune_intermediate_layers(name):
    ref, ours = _twins(name, FAMILIES[name])
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    keep = [0, 2]
    with torch.no_grad():
        before = ours.forward_intermediates(x, indices=keep, intermediates_only=True)
        n_params = sum(p.numel() for p in ours.parameters())
        assert ours.prune_intermediate_layers(keep) == ref.prune_intermediate_layers(keep) == keep
        after = ours.forward_intermediates(x, indices=keep, intermediates_only=True)
        for a, b in zip(after, before):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert sum(p.numel() for p in ours.parameters()) < n_params
        assert ours.num_classes == 0 and ours(x).shape == (1, ours.num_features)
        assert ours.num_features == ours.intermediate_info()[2]["num_chs"]
    with pytest.raises(ValueError, match="removed by prune_intermediate_layers"):
        ours.forward_intermediates(x, indices=[3])


# --- optimizers: timm's layer decay, weight decay, and one definition of a stage --------------------------------

def _stage_of(model: torch.nn.Module) -> dict[int, int]:
    """id(param) -> index of its stage_modules() group (the head: one past the last)."""
    groups = model.stage_modules()
    out = {id(p): len(groups) for p in model.parameters()}
    for i, group in enumerate(groups):
        for module in group:
            out.update({id(p): i for p in module.parameters()})
    return out


@pytest.mark.parametrize("name", list(FAMILIES))
def test_timm_layer_decay_gives_one_group_per_stage(name):
    model = hgzoo.create_model(name, num_classes=10)
    opt = timm.optim.create_optimizer_v2(model, "sgd", lr=0.1, weight_decay=1e-4, layer_decay=0.75)
    stage, n = _stage_of(model), len(model.stage_modules())
    scales = {}
    for group in opt.param_groups:
        for p in group["params"]:
            scales[id(p)] = group["lr_scale"]
    assert len(scales) == len(list(model.parameters()))
    for p in model.parameters():
        assert scales[id(p)] == pytest.approx(0.75 ** (n - stage[id(p)]))
    assert len(set(scales.values())) == n + 1  # the stem, each stage, the head
    # weight decay as PaddleClas's architecture code sets it, with timm's 1-D filter off
    opt = timm.optim.create_optimizer_v2(model, "sgd", lr=0.1, weight_decay=1e-4, filter_bias_and_bn=False)
    no_decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    bn = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    assert no_decay == (set() if model.bn_weight_decay else bn)
    from hgzoo.train.config import resolve_config
    assert resolve_config(["--model", name]).no_weight_decay == ("none" if model.bn_weight_decay else "bn")


def test_hrnet_stages_are_one_definition():
    from hgzoo.train.optim import freeze_units, param_groups, stage_units

    model = hgzoo.create_model("hrnet_w18_c", num_classes=3)
    assert stage_units(model) == model.stage_modules()
    groups = param_groups(model, 1e-4, "none", [0.1, 0.2, 0.3, 0.4, 0.5])
    mult = {id(p): g["lr_mult"] for g in groups for p in g["params"]}
    assert {mult[id(p)] for p in model.incre_modules.parameters()} == {0.5}  # stage 4, as freeze_at counts it
    assert {mult[id(p)] for p in model.conv_last.parameters()} == {1.0}  # the head's
    frozen = freeze_units(model, 5)
    assert model.frozen_stages == 4 and model.incre_modules in frozen
    model.train()
    assert not model.incre_modules.training and not any(p.requires_grad for p in model.stage4.parameters())
    # timm's grouping reads the same stages
    from timm.models import group_parameters
    by_group = group_parameters(model, model.group_matcher())
    names = dict(model.named_parameters())
    for i, group in enumerate(model.stage_modules()):
        expected = {id(p) for m in group for p in m.parameters()}
        assert {id(names[n]) for n in by_group[i]} == expected


# --- the registry bridge: the calls timm's train.py and validate.py make ---------------------------------------

@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """train/ and val/ with two classes of 40 px crops of real photos."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    ph = photos(("chelsea", "coffee"))
    for split, n in (("train", 6), ("val", 3)):
        for cls, img in ph.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                y, x = rng.integers(0, img.shape[0] - 80), rng.integers(0, img.shape[1] - 80)
                write_png(root / split / cls / f"{i}.png", np.ascontiguousarray(img[y:y + 80:2, x:x + 80:2]))
    return root


def test_timm_scripts_run_hgzoo_models(image_folder, tmp_path):
    """timm's train.py / validate.py / benchmark.py call sequence (the scripts are not in timm's wheel)."""
    from timm.data import create_dataset, create_loader, resolve_data_config
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import accuracy

    hgzoo.timm_compat.register()
    assert hgzoo.timm_compat.register() == []  # idempotent
    assert "pphgnetv2_b0" in timm.list_models("pphgnetv2*") and timm.is_model("pphgnetv2_b0.ssld_stage2_ft_in1k")
    # train.py: create_model with train.py's arguments (None ones dropped by timm), data config, loaders
    model = timm.create_model("pphgnetv2_b0", pretrained=False, num_classes=2, drop_rate=0.0, drop_path_rate=None,
                              drop_block_rate=None, global_pool=None, bn_momentum=None, bn_eps=None,
                              scriptable=False, checkpoint_path="")
    assert isinstance(model, hgzoo.models.pphgnet.PPHGNetV2) and model.num_classes == 2
    data_config = resolve_data_config({"img_size": 64}, model=model)
    assert data_config["input_size"] == (3, 64, 64) and data_config["interpolation"] == "bicubic"
    loaders = {}
    for split, training in (("train", True), ("val", False)):
        dataset = create_dataset("", root=str(image_folder), split=split, is_training=training, batch_size=4)
        loaders[split] = create_loader(dataset, input_size=data_config["input_size"], batch_size=4,
                                       is_training=training, use_prefetcher=False, interpolation="bicubic",
                                       mean=data_config["mean"], std=data_config["std"], num_workers=0,
                                       crop_pct=data_config["crop_pct"])
    optimizer = create_optimizer_v2(model, "sgd", lr=0.01, weight_decay=1e-4, momentum=0.9, layer_decay=0.75)
    scheduler, _ = create_scheduler_v2(optimizer, "cosine", num_epochs=1, warmup_epochs=0)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    for x, y in loaders["train"]:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    scheduler.step(1)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters())), "the training step changed nothing"
    # validate.py: a checkpoint through timm's own loader, then an evaluation pass
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ckpt.pth")
    model = timm.create_model("pphgnetv2_b0", num_classes=2, checkpoint_path=str(tmp_path / "ckpt.pth"))
    timm.models.load_checkpoint(model, str(tmp_path / "ckpt.pth"))
    model.eval()
    top1 = []
    with torch.no_grad():
        for x, y in loaders["val"]:
            top1.append(accuracy(model(x), y, topk=(1,))[0])
    assert len(top1) == 2 and all(0 <= float(t) <= 100 for t in top1)
    # benchmark.py --torchscript
    scripted = torch.jit.script(timm.create_model("pphgnetv2_b0", num_classes=2, scriptable=True).eval())
    assert scripted(torch.randn(1, 3, 64, 64)).shape == (1, 2)


def test_timm_create_model_loads_through_hgzoos_loader(tmp_path):
    hgzoo.timm_compat.register()
    torch.manual_seed(0)
    ref = hgzoo.create_model("resnet18_vd.paddle_in1k", num_classes=4).eval()
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    m = timm.create_model("resnet18_vd.paddle_in1k", pretrained=True, num_classes=4,
                          pretrained_cfg_overlay=dict(file=str(tmp_path / "w.safetensors"))).eval()
    assert m.pretrained_cfg.tag == "paddle_in1k"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x), rtol=0, atol=0)
    backbone = timm.create_model("resnet18_vd", features_only=True, out_indices=(3, 4))  # timm's ResNet-d levels
    assert backbone.feature_info.channels() == [256, 512] and backbone.feature_info.get_dicts(idx=0)["reduction"] == 16


def test_torch_hub_loads_from_the_repository(tmp_path):
    model = torch.hub.load(str(ROOT), "pphgnet_small", source="local", pretrained=False, num_classes=3)
    assert isinstance(model, hgzoo.models.pphgnet.PPHGNet) and model.num_classes == 3
    torch.manual_seed(0)
    ref = hgzoo.create_model("pplcnetv2_small", num_classes=5).eval()
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    hub = torch.hub.load(str(ROOT), "pplcnetv2_small", source="local", num_classes=5,
                         pretrained_file=tmp_path / "w.safetensors").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(hub(x), ref(x), rtol=0, atol=0)


# --- TorchScript and FX ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(FAMILIES) + ["pphgnet_base", "resnet18_vd"])
def test_scripted_equals_eager(name):
    model = _calibrate(hgzoo.create_model(name, num_classes=7))
    scripted = torch.jit.script(model)
    # HRNet's graph runs in TorchScript's interpreter without the profiling executor's optimization passes (torch's
    # fusions, not hgzoo's code): those re-optimize its whole inlined graph (2,264 modules) on the first calls, 13 s;
    # the other families run the optimized path timm users get.
    with torch.no_grad(), torch.jit.optimized_execution(not name.startswith("hrnet")):
        for h, w in ((64, 64), (97, 130)):
            x = torch.randn(2, 3, h, w)
            torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-5)
        hgzoo.reparameterize(model)  # the deployment form scripts too
        torch.testing.assert_close(torch.jit.script(model)(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_fx_traces_at_any_size(name):
    """FX: the traced graph equals eager at two sizes; odd ones, where the SAME padding must follow the input."""
    from torchvision.models.feature_extraction import create_feature_extractor

    model = _calibrate(hgzoo.create_model(name))
    traced = torch.fx.symbolic_trace(model)
    backbone = hgzoo.create_model(name, features_only=True).eval()
    backbone.model.load_state_dict(model.state_dict(), strict=False)
    nodes = [f["module"] for f in model.feature_info]
    extractor = create_feature_extractor(model, {n: str(i) for i, n in enumerate(nodes)})
    with torch.no_grad():
        for h, w in ((64, 64), (97, 131)):
            x = torch.randn(1, 3, h, w)
            torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)
            for a, b in zip(extractor(x).values(), backbone(x)):
                torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_timm_scripts_run_through_the_runner(tmp_path, capsys):
    """``python -m hgzoo.timm_compat SCRIPT ARGS``: registers, runs the script as __main__, keeps its exit status."""
    import subprocess
    import sys

    script = tmp_path / "validate_like.py"
    script.write_text(
        "import sys, torch, timm\n"
        "from PIL import Image\n"
        "model = timm.create_model(sys.argv[2], pretrained=False, num_classes=3, global_pool=None).eval()\n"
        "config = timm.data.resolve_data_config({}, model=model, use_test_size=True)\n"
        "x = timm.data.create_transform(**config)(Image.new('RGB', (300, 200)))\n"
        "print(type(model).__name__, tuple(model(x[None]).shape), round(config['crop_pct'], 5))\n"
        "import hgzoo.timm_compat\n"
        "print(hgzoo.timm_compat.register(), hgzoo.timm_compat.is_registered())\n"
        "sys.exit(3)\n")
    proc = subprocess.run([sys.executable, "-m", "hgzoo.timm_compat", str(script), "--model", "pphgnet_small"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stdout.split() == ["PPHGNet", "(1,", "3)", "0.94915", "[]", "True"], proc.stdout
    # Bad input, in process (the real entry point's exit status is the one above): exit 2 and a one-line error.
    from hgzoo.cli.timm import main

    assert main([str(tmp_path / "missing.py")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no such script" in err
