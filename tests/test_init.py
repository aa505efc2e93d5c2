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


def _kurtosis(t: torch.Tensor) -> float:
    z = (t - t.mean()) / t.std()
    return float((z ** 4).mean())


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
        if n == 1 or float(r.std()) == 0.0:
            if not torch.allclose(v, r, rtol=0, atol=1e-7):
                bad.append(f"{k} {n}: ours mean {float(v.mean()):.4g} std {float(v.std()) if n > 1 else 0:.3g}, "
                           f"PaddleClas constant {float(r[0]):.4g}")
            continue
        sv, sr = float(v.std()), float(r.std())
        tol = max(0.03, 5 / math.sqrt(n))  # two samples' std, ~5 sigma
        if not abs(sv / sr - 1) <= tol or abs(float(v.mean() - r.mean())) > 7 * sr / math.sqrt(n):
            bad.append(f"{k} {n}: ours mean {float(v.mean()):.3g} std {sv:.4g}, "
                       f"PaddleClas mean {float(r.mean()):.3g} std {sr:.4g}")
        elif n >= 8192 and abs(_kurtosis(v) - _kurtosis(r)) > 0.4:
            bad.append(f"{k} {n}: ours kurtosis {_kurtosis(v):.2f}, PaddleClas {_kurtosis(r):.2f}")
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
