"""hgzoo's backbones against Hugging Face transformers' own detector backbones: ``HGNetV2Backbone`` (under its D-FINE
and DEIMv2; PP-HGNetV2 B0-B6) and ``RTDetrResNetBackbone`` (under its RT-DETR and RT-DETRv2; ResNet-vd 18/34/50/101).

transformers is the reference, run here on random weights made to carry the input (BN statistics calibrated on
scikit-image's photos): their state dict loads strictly into hgzoo's features-only model through
``hgzoo.convert.transformers_detectors``, hgzoo's loads strictly into theirs, and the four feature maps are equal at
640x640 and at 193x257. transformers builds every network from a config written here (no ``from_pretrained``:
nothing is downloaded).

The stem pool: transformers pads PP-HGNetV2's stem max-pool with zeros, hgzoo (as PaddleClas) with -inf. The
equality tests draw the stem's first affine block with a positive bias (and scale), where the two cannot differ;
``test_stem_pool_padding_shows_on_a_negative_bias`` draws a negative one and watches hgzoo's default differ, which
proves that the comparison can fail.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from conftest import relative_error
from image_samples import photos
from torch import nn

import hgzoo
from hgzoo._registry import model_entrypoint
from hgzoo.convert import CheckpointMismatchError
from hgzoo.convert.transformers_detectors import hf_to_hgzoo, hgzoo_to_hf
from hgzoo.integrations.transformers import hf_backbone_config

transformers = pytest.importorskip("transformers", reason="transformers (the `test` extra) is the reference")

# Against transformers' own backbones, at 640x640 for every variant: the full suite, not the fast tier.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

SIZES = ((640, 640), (193, 257))
TOLERANCE = 1e-5

# PP-HGNetV2 as transformers' D-FINE conversion configures HGNetV2Config: B0 (D-FINE N and S), B2 (M), B4 (L), B5 (X);
# B1, B3 and B6, which D-FINE does not use, from PaddleClas's pp_hgnet_v2.py. Rows: stem channels, then per stage
# in / mid / out channels, blocks, layers per block; learnable affine blocks (use_lab) on B0-B3.
HGNETV2 = {
    "pphgnetv2_b0": ((3, 16, 16), (16, 64, 256, 512), (16, 32, 64, 128), (64, 256, 512, 1024), (1, 1, 2, 1), 3, True),
    "pphgnetv2_b1": ((3, 24, 32), (32, 64, 256, 512), (32, 48, 96, 192), (64, 256, 512, 1024), (1, 1, 2, 1), 3, True),
    "pphgnetv2_b2": ((3, 24, 32), (32, 96, 384, 768), (32, 64, 128, 256), (96, 384, 768, 1536), (1, 1, 3, 1), 4, True),
    "pphgnetv2_b3": ((3, 24, 32), (32, 128, 512, 1024), (32, 64, 128, 256), (128, 512, 1024, 2048), (1, 1, 3, 1), 5,
                     True),
    "pphgnetv2_b4": ((3, 32, 48), (48, 128, 512, 1024), (48, 96, 192, 384), (128, 512, 1024, 2048), (1, 1, 3, 1), 6,
                     False),
    "pphgnetv2_b5": ((3, 32, 64), (64, 128, 512, 1024), (64, 128, 256, 512), (128, 512, 1024, 2048), (1, 2, 5, 2), 6,
                     False),
    "pphgnetv2_b6": ((3, 48, 96), (96, 192, 512, 1024), (96, 192, 384, 768), (192, 512, 1024, 2048), (2, 3, 6, 3), 6,
                     False),
}
# RT-DETR's ResNet-vd as RTDetrResNetConfig describes it: block, stage widths, depths.
RESNET = {
    "resnet18_vd": ("basic", (64, 128, 256, 512), (2, 2, 2, 2)),
    "resnet34_vd": ("basic", (64, 128, 256, 512), (3, 4, 6, 3)),
    "resnet50_vd": ("bottleneck", (256, 512, 1024, 2048), (3, 4, 6, 3)),
    "resnet101_vd": ("bottleneck", (256, 512, 1024, 2048), (3, 4, 23, 3)),
}


def hf_config(arch: str):
    """transformers' config of ``arch``'s backbone, returning all four stages (out_indices 1-4; 0 is the stem)."""
    if arch in HGNETV2:
        stem, ins, mids, outs, blocks, layers, lab = HGNETV2[arch]
        return transformers.HGNetV2Config(
            stem_channels=list(stem), stage_in_channels=list(ins), stage_mid_channels=list(mids),
            stage_out_channels=list(outs), stage_num_blocks=list(blocks), stage_numb_of_layers=[layers] * 4,
            stage_downsample=[False, True, True, True], stage_light_block=[False, False, True, True],
            stage_kernel_size=[3, 3, 5, 5], hidden_sizes=list(outs), use_learnable_affine_block=lab,
            out_indices=[1, 2, 3, 4])
    layer_type, widths, depths = RESNET[arch]
    return transformers.RTDetrResNetConfig(layer_type=layer_type, hidden_sizes=list(widths), depths=list(depths),
                                           out_indices=[1, 2, 3, 4])


def hf_backbone(arch: str) -> nn.Module:
    config = hf_config(arch)
    cls = transformers.HGNetV2Backbone if arch in HGNETV2 else transformers.RTDetrResNetBackbone
    return cls(config).eval()


def batch(size: tuple[int, int], names: tuple[str, ...] = ("chelsea", "coffee")) -> torch.Tensor:
    """scikit-image's photos resized to ``size``, normalized as ImageNet."""
    imgs = [torch.from_numpy(p).permute(2, 0, 1).float()[None] / 255 for p in photos(names).values()]
    x = torch.cat([nn.functional.interpolate(i, size=size, mode="bilinear", antialias=True) for i in imgs])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def carry_input(model: nn.Module, seed: int, stem_bias: float) -> nn.Module:
    """Random weights that make ``model`` (transformers') depend on its input: Kaiming convs, BN affines below 1,
    learnable affine blocks around 1 with biases of both signs (the stem's first one: ``stem_bias``, with a positive
    scale), then BN statistics calibrated on photos and perturbed. In eval mode."""
    g = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
        elif isinstance(m, nn.BatchNorm2d):
            uniform(m.weight, 0.3, 0.9)
            uniform(m.bias, -0.2, 0.2)
            m.momentum = None  # the calibration batch's own statistics
        elif type(m).__name__ == "HGNetV2LearnableAffineBlock":
            uniform(m.scale, 0.6, 1.4)
            uniform(m.bias, -0.3, 0.3)
            if name == "embedder.stem1.lab":
                m.scale.fill_(0.9)
                m.bias.fill_(stem_bias)
    model.train()
    model(batch((256, 256), ("chelsea", "coffee", "astronaut")))
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.mul_(torch.rand(m.running_var.shape, generator=g) * 0.2 + 0.9)
    return model


def features(model: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(x)
    return [f.numpy() for f in (out.feature_maps if hasattr(out, "feature_maps") else out)]


def load_both_ways(arch: str, seed: int, stem_bias: float, **hgzoo_kwargs) -> tuple[nn.Module, nn.Module]:
    """transformers' calibrated backbone, and hgzoo's features-only model loaded strictly from its state dict."""
    torch.manual_seed(seed)
    theirs = carry_input(hf_backbone(arch), seed, stem_bias)
    ours = hgzoo.create_model(arch, features_only=True, **hgzoo_kwargs).eval()
    ours.model.load_state_dict(hf_to_hgzoo(theirs.state_dict(), arch))  # strict
    return theirs, ours


# The three largest take most of the time (about 20-35 s each on a busy 2-core machine): the slow tier.
SLOW = ("pphgnetv2_b5", "pphgnetv2_b6", "resnet101_vd")


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.slow) if a in SLOW else a
                                  for a in [*HGNETV2, *RESNET]])
def test_same_features_both_ways(arch):
    theirs, ours = load_both_ways(arch, seed=1, stem_bias=0.2)
    # hgzoo's state dict back in transformers' names: exactly theirs, tensor for tensor, and it loads strictly.
    original = {k: v.clone() for k, v in theirs.state_dict().items()}
    back = hgzoo_to_hf(ours.state_dict(), arch)
    assert back.keys() == original.keys()
    assert all(torch.equal(v, original[k]) for k, v in back.items())
    theirs.load_state_dict(back)  # strict
    for size in SIZES:
        x = batch(size, ("chelsea",)) if size == (640, 640) else batch(size)
        ref, got = features(theirs, x), features(ours, x)
        assert [f.shape for f in got] == [f.shape for f in ref]
        errors = [relative_error(o, r) for o, r in zip(got, ref)]
        assert max(errors) < TOLERANCE, f"{arch} at {size}: relative errors per level {errors}"
    # The weights carry the input: two photos' deepest maps (theirs, at 193x257, the loop's last) differ by a good
    # part of their scale.
    assert SIZES[-1] == (193, 257) and len(ref[-1]) == 2
    assert relative_error(ref[-1][0], ref[-1][1]) > 0.1


@pytest.mark.parametrize("arch", ["pphgnetv2_b0", "pphgnetv2_b2"])
def test_stem_pool_padding_shows_on_a_negative_bias(arch):
    """A negative bias in the stem's first affine block makes zero padding (theirs) and -inf padding (hgzoo's
    default, PaddleClas's) differ on the border: the equality above holds because of the positive draw, and the
    comparison sees a difference this small."""
    theirs, ours = load_both_ways(arch, seed=2, stem_bias=-0.4)
    x = batch((193, 257))
    errors = [relative_error(o, r) for o, r in zip(features(ours, x), features(theirs, x))]
    assert min(errors) > 1e-3, errors


@pytest.mark.parametrize("arch", ["pphgnetv2_b0", "pphgnetv2_b2"])
def test_zero_stem_pool_matches_on_a_negative_bias(arch):
    """With ``stem_pool="zero"`` hgzoo pads the stem pool as transformers does: equal on the negative draw too."""
    if "stem_pool" not in inspect.signature(model_entrypoint(arch)).parameters:
        pytest.skip("this hgzoo's PP-HGNetV2 has no stem_pool option yet")
    theirs, ours = load_both_ways(arch, seed=2, stem_bias=-0.4, stem_pool="zero")
    for size in SIZES:
        x = batch(size, ("chelsea",))
        errors = [relative_error(o, r) for o, r in zip(features(ours, x), features(theirs, x))]
        assert max(errors) < TOLERANCE, f"{arch} at {size}: {errors}"


def one_line_error(fn, *args) -> str:
    with pytest.raises(CheckpointMismatchError) as e:
        fn(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_strict_errors_name_the_key():
    theirs = hf_backbone("pphgnetv2_b0").state_dict()
    assert "'encoder.stages.9.blocks.0.layers.0.lab.scale' is not a tensor of pphgnetv2_b0" in one_line_error(
        hf_to_hgzoo, {**theirs, "encoder.stages.9.blocks.0.layers.0.lab.scale": torch.ones(1)}, "pphgnetv2_b0")
    missing = {k: v for k, v in theirs.items() if k != "embedder.stem3.convolution.weight"}
    assert "'embedder.stem3.convolution.weight' is missing" in one_line_error(hf_to_hgzoo, missing, "pphgnetv2_b0")
    # Another variant's weights: the first tensor of another shape is named.
    assert "'embedder.stem1.convolution.weight' has shape (16, 3, 3, 3)" in one_line_error(
        hf_to_hgzoo, theirs, "pphgnetv2_b1")

    ours = hgzoo.create_model("pphgnetv2_b0").state_dict()
    assert "'stem.stem9.conv.weight' is not a tensor" in one_line_error(
        hgzoo_to_hf, {**ours, "stem.stem9.conv.weight": torch.ones(1)}, "pphgnetv2_b0")
    del ours["stages.3.blocks.0.aggregation_excitation_conv.lab.bias"]
    assert "aggregation_excitation_conv.lab.bias' is missing" in one_line_error(hgzoo_to_hf, ours, "pphgnetv2_b0")

    # ResNet18's blocks are not ResNet34's: its dict lacks the third block of the first stage.
    r18 = hf_backbone("resnet18_vd").state_dict()
    assert "'encoder.stages.0.layers.2.layer.0.convolution.weight' is missing (and" in one_line_error(
        hf_to_hgzoo, r18, "resnet34_vd")


def test_architectures_without_a_transformers_backbone_are_refused():
    with pytest.raises(ValueError, match="pplcnetv2_base has no transformers backbone"):
        hf_to_hgzoo({}, "pplcnetv2_base")
    with pytest.raises(ValueError, match="'pphgnetv2_b9' is not an hgzoo architecture"):
        hgzoo_to_hf({}, "pphgnetv2_b9")


def test_features_only_and_frozen_batchnorm_dicts():
    """hgzoo's features-only dict (``model.*``) converts as the classifier's; a dict without ``num_batches_tracked``
    (transformers' detectors freeze their backbone's BatchNorms) gets zeros, so that it loads strictly."""
    classifier = hgzoo.create_model("resnet18_vd")
    features = hgzoo.create_model("resnet18_vd", features_only=True)
    features.model.load_state_dict({k: v for k, v in classifier.state_dict().items() if not k.startswith("head.")})
    a, b = hgzoo_to_hf(classifier.state_dict(), "resnet18_vd"), hgzoo_to_hf(features.state_dict(), "resnet18_vd")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    frozen = {k: v for k, v in a.items() if not k.endswith("num_batches_tracked")}
    back = hf_to_hgzoo(frozen, "resnet18_vd")
    features.model.load_state_dict(back)  # strict
    assert all(int(v) == 0 for k, v in back.items() if k.endswith("num_batches_tracked"))


@pytest.mark.parametrize("arch", [*HGNETV2, *RESNET])
def test_backbone_config_is_the_reference_one(arch):
    """``hf_backbone_config`` describes the network that transformers' D-FINE conversion (or PaddleClas) configures."""
    name, kwargs = hf_backbone_config(arch)
    ours, ref = getattr(transformers, name)(**kwargs), hf_config(arch)
    fields = (["layer_type", "hidden_sizes", "depths", "embedding_size"] if arch in RESNET else
              ["stem_channels", "stage_in_channels", "stage_mid_channels", "stage_out_channels", "stage_num_blocks",
               "stage_downsample", "stage_light_block", "stage_kernel_size", "stage_numb_of_layers",
               "use_learnable_affine_block", "hidden_sizes"])

    def norm(v):
        return list(v) if isinstance(v, (list, tuple)) else v

    assert {f: norm(getattr(ours, f)) for f in fields} == {f: norm(getattr(ref, f)) for f in fields}
    assert list(ours.out_indices) == [1, 2, 3, 4]


def small_detector(kind: str, arch: str) -> tuple[nn.Module, nn.Module]:
    """transformers' ``kind`` detector (small widths, random heads) around ``arch``'s backbone, and that backbone."""
    name, kwargs = hf_backbone_config(arch, out_indices=(2, 3, 4))
    backbone_config = getattr(transformers, name)(**kwargs)
    common = dict(backbone_config=backbone_config, num_labels=3, encoder_in_channels=list(kwargs["hidden_sizes"][1:]),
                  d_model=64, encoder_hidden_dim=64, decoder_in_channels=[64] * 3, encoder_ffn_dim=64,
                  decoder_ffn_dim=64, decoder_layers=2, num_queries=10, num_denoising=0)
    if kind == "Deimv2":
        common.pop("decoder_in_channels")
    detector = getattr(transformers, f"{kind}ForObjectDetection")(getattr(transformers, f"{kind}Config")(**common))
    encoder = detector.model.conv_encoder if kind == "Deimv2" else detector.model.backbone
    return detector, encoder.model


@pytest.mark.parametrize(("kind", "arch"), [("DFine", "pphgnetv2_b0"), ("Deimv2", "pphgnetv2_b0"),
                                            ("RTDetr", "resnet18_vd"), ("RTDetrV2", "resnet18_vd")])
def test_whole_detector_state_dicts(kind, arch):
    """A transformers detector's whole state dict gives its backbone (frozen BatchNorms, without a batch count) in
    hgzoo's names, which load strictly; hgzoo's weights load strictly into the detector's backbone."""
    detector, backbone = small_detector(kind, arch)
    ours = hgzoo.create_model(arch, features_only=True)
    converted = hf_to_hgzoo(detector.state_dict(), arch)
    ours.model.load_state_dict(converted)  # strict
    direct = hf_to_hgzoo(backbone.state_dict(), arch)
    assert converted.keys() == direct.keys() and all(torch.equal(converted[k], direct[k]) for k in direct)
    assert not any("num_batches_tracked" in k for k in backbone.state_dict())

    donor = hgzoo.create_model(arch)
    with torch.no_grad():
        for p in donor.parameters():
            p.add_(1.0)  # unlike any initialization
    given = hgzoo_to_hf(donor.state_dict(), arch)
    backbone.load_state_dict(given)  # strict
    loaded = backbone.state_dict()
    assert all(torch.equal(v, given[k]) for k, v in loaded.items())
    stem = "embedder.stem1.convolution.weight" if arch in HGNETV2 else "embedder.embedder.0.convolution.weight"
    assert torch.equal(loaded[stem], donor.state_dict()[f"{donor.first_conv}.weight"])


@pytest.mark.parametrize("arch", ["pphgnetv2_b0", "resnet18_vd"])
def test_convert_files_to_transformers_and_back(arch, tmp_path):
    """``python -m hgzoo.convert --to/--from transformers`` (the CLI's file step, in process): hgzoo's weights become a
    file that transformers' own backbone loads strictly, and that file comes back to hgzoo's tensors, equal."""
    from safetensors.torch import load_file, save_file

    from hgzoo.cli.convert import main as convert_main
    from hgzoo.files import safe_load
    from hgzoo.publish.detector_files import detector_origins

    assert "transformers" in detector_origins()
    ours = carry_input(hgzoo.create_model(arch, num_classes=0), seed=3, stem_bias=0.2)
    native = {k: v.contiguous() for k, v in ours.state_dict().items()}
    save_file(native, str(tmp_path / "ours.safetensors"))
    assert convert_main(["--to", "transformers", "--model", arch, "--input", str(tmp_path / "ours.safetensors"),
                         "--output", str(tmp_path / "hf")]) == 0
    [written] = list((tmp_path / "hf").iterdir())
    theirs = hf_backbone(arch)
    theirs.load_state_dict(safe_load(written), strict=True)  # transformers' class takes it whole
    assert convert_main(["--from", "transformers", "--model", arch, "--input", str(written),
                         "--output", str(tmp_path / "back")]) == 0
    back = load_file(str(tmp_path / "back" / f"{arch}.backbone.safetensors"))
    assert set(back) == {k for k in native if not k.startswith("head.")}
    assert all(torch.equal(back[k], native[k]) for k in back)
