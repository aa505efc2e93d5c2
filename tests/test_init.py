"""From-scratch initialization against PaddleClas's: train.py's recipes start from it.

PaddleClas's models are built in the reference environment and saved as initialized (nothing randomized);
each of our tensors must come from the same distribution as Paddle's tensor it converts to: the same constant
where Paddle's is constant (BN, biases, affine blocks), else a matching mean and standard deviation (within
sampling error) and, for large tensors, a matching kurtosis (normal 3 vs uniform 1.8), so that torch's
defaults (Kaiming-uniform weights, non-zero biases) cannot pass for Paddle's (normal conv weights, Xavier-uniform
Linear weights, zero biases).
"""
from __future__ import annotations

import math

import pytest
import torch

import hgzoo
from hgzoo._builder import read_checkpoint

# One model per family and per initialization code path (v1 ESE, v2 with and without learnable affine blocks,
# plain and SE HRNet, bottleneck and basic-block ResNet-vd).
MODELS = ["pphgnet_small", "pphgnetv2_b0", "pphgnetv2_b4", "pplcnetv2_base", "hrnet_w18_c", "se_hrnet_w64_c",
          "resnet50_vd", "resnet18_vd"]


@pytest.fixture(scope="module")
def paddle_init(paddle_reference):
    return paddle_reference.as_built(MODELS)


def _kurtosis(t: torch.Tensor, std: torch.Tensor, mean: torch.Tensor) -> float:
    """E[z**4] of ``t`` standardized by its own ``std`` and ``mean`` (given: the caller has them)."""
    d = (t - mean).square_()
    return float(d.square_().mean() / std ** 4)


def init_mismatches(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> list[str]:
    """Tensors of ``ours`` not drawn like ``ref``'s, with the figures."""
    bad = []
    for k, v in ours.items():
        if not v.is_floating_point():
            continue
        if k not in ref:
            bad.append(f"{k}: not in PaddleClas's state dict")
            continue
        v, r = v.double().flatten(), ref[k].double().flatten()
        n = v.numel()
        if n == 1:
            if not torch.allclose(v, r, rtol=0, atol=1e-7):
                bad.append(f"{k} {n}: ours {float(v[0]):.4g}, PaddleClas constant {float(r[0]):.4g}")
            continue
        (std_v, mean_v), (std_r, mean_r) = torch.std_mean(v), torch.std_mean(r)  # each tensor's figures once
        sv, sr, mv, mr = float(std_v), float(std_r), float(mean_v), float(mean_r)
        if sr == 0.0:
            if not torch.allclose(v, r, rtol=0, atol=1e-7):
                bad.append(f"{k} {n}: ours mean {mv:.4g} std {sv:.3g}, PaddleClas constant {float(r[0]):.4g}")
            continue
        tol = max(0.03, 5 / math.sqrt(n))  # two samples' std, ~5 sigma
        if not abs(sv / sr - 1) <= tol or abs(mv - mr) > 7 * sr / math.sqrt(n):
            bad.append(f"{k} {n}: ours mean {mv:.3g} std {sv:.4g}, PaddleClas mean {mr:.3g} std {sr:.4g}")
        elif n >= 8192:
            kv, kr = _kurtosis(v, std_v, mean_v), _kurtosis(r, std_r, mean_r)
            if abs(kv - kr) > 0.4:
                bad.append(f"{k} {n}: ours kurtosis {kv:.2f}, PaddleClas {kr:.2f}")
    return bad


@pytest.mark.parametrize("name", MODELS)
def test_initialization_matches_paddleclas(name, paddle_init):
    torch.manual_seed(0)
    model = hgzoo.create_model(name)
    ref = read_checkpoint(paddle_init[name], model)
    bad = init_mismatches(model.state_dict(), ref)
    assert not bad, f"{name}: {len(bad)} tensors initialized unlike PaddleClas:\n" + "\n".join(bad[:20])


def test_mismatch_check_can_fail():
    """torch's default Conv2d init (Kaiming-uniform weight, uniform bias) is told apart from Paddle's."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(256, 256, 3)
    fan_in = 256 * 9
    paddle_like = {"weight": torch.randn_like(conv.weight) * math.sqrt(2 / fan_in), "bias": torch.zeros(256)}
    bad = init_mismatches(conv.state_dict(), paddle_like)
    assert [b.split()[0] for b in bad] == ["weight", "bias"]
    torch.nn.init.normal_(conv.weight, 0, math.sqrt(2 / fan_in))
    torch.nn.init.zeros_(conv.bias)
    assert init_mismatches(conv.state_dict(), paddle_like) == []


# train.py --init timm: timm's convention, against timm's own freshly built models. Weights and BatchNorm only:
# timm zeroes conv and Linear biases in some families and leaves torch's defaults in others, and timm_init_
# zeroes them all (checked apart). ResNet-d is built without its zero_init_last, which timm_init_ does not apply.
TIMM_PEERS = {"pplcnetv2_small": "lcnetv2_small", "pphgnet_small": "hgnet_small", "pphgnetv2_b0": "hgnetv2_b0",
              "hrnet_w18_c": "hrnet_w18", "resnet50_vd": "resnet50d"}


@pytest.mark.parametrize("name", TIMM_PEERS)
def test_timm_init_matches_timm(name):
    timm = pytest.importorskip("timm")
    from hgzoo.convert.timm import timm_to_hgzoo
    from hgzoo.layers import timm_init_

    peer = TIMM_PEERS[name]
    torch.manual_seed(0)
    kw = {"zero_init_last": False} if peer.startswith("resnet") else {}
    ref_model = timm.create_model(peer, num_classes=10, **kw)
    torch.manual_seed(1)
    model = timm_init_(hgzoo.create_model(name, num_classes=10))
    ref = timm_to_hgzoo(ref_model.state_dict(), model, dropout_convention="paddle", name=peer)
    layers = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    biases = {f"{n}.bias" for n in layers} & set(ref)
    biases |= {k for k in ref if k.endswith("running_mean")}  # the converter folds timm's conv biases in there
    assert layers and all(not model.state_dict()[k].any() for k in biases)
    bad = init_mismatches({k: v for k, v in model.state_dict().items() if k not in biases}, ref)
    assert not bad, f"{name}: {len(bad)} tensors initialized unlike timm's {peer}:\n" + "\n".join(bad[:20])
    # ... and the check tells it from PaddleClas's initialization, which train.py uses by default
    torch.manual_seed(1)
    assert init_mismatches(hgzoo.create_model(name, num_classes=10).state_dict(), ref)
