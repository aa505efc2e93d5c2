"""Parity with PaddleClas: same weights, same inputs, eval mode → the same logits (1e-4 relative).

For every registered variant, PaddleClas's own model is built, randomized (BN statistics included),
saved with paddle.save, converted by our safe reader and key maps, and compared at 224x224 and at
an odd non-square size (193x257; 221x253 for HRNet, which PaddleClas cannot run at 193x257), before and after
re-parameterization.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import logits, parity_sizes, relative_error

import hgzoo

TOL = 1e-4
pytestmark = pytest.mark.parity


@pytest.mark.parametrize("name", hgzoo.list_models())
def test_parity_with_paddleclas(name, paddle_reference):
    pdparams, ref = paddle_reference.get(name)
    model = hgzoo.create_model(name, pretrained_file=pdparams).eval()
    for h, w in parity_sizes(name):
        y_ref = ref[f"y_{h}x{w}"]
        # The oracle must carry the input: two images give clearly different logits.
        assert np.abs(y_ref[0] - y_ref[1]).std() > 0.05 * y_ref.std(), "reference logits ignore the input"
        err = relative_error(logits(model, ref[f"x_{h}x{w}"]), y_ref)
        assert err < TOL, f"{name} at {h}x{w}: relative error {err:.2e}"
    hgzoo.reparameterize(model)
    for h, w in parity_sizes(name):
        err = relative_error(logits(model, ref[f"x_{h}x{w}"]), ref[f"y_{h}x{w}"])
        assert err < TOL, f"{name} at {h}x{w} after reparameterize: relative error {err:.2e}"


@pytest.mark.parametrize("name", ["pphgnet_tiny", "pphgnetv2_b0", "pplcnetv2_small", "hrnet_w18_c", "resnet18_vd"])
def test_parity_test_can_fail(name, paddle_reference):
    """Break one activation on purpose: the comparison must go red."""
    pdparams, ref = paddle_reference.get(name)
    model = hgzoo.create_model(name, pretrained_file=pdparams).eval()
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    relus[len(relus) // 2].forward = lambda x: x
    h, w = parity_sizes(name)[1]
    err = relative_error(logits(model, ref[f"x_{h}x{w}"]), ref[f"y_{h}x{w}"])
    assert err > 100 * TOL, f"a removed activation changed {name}'s logits by only {err:.2e}"


# Family-specific mistakes the comparison must catch. They live here, after the parity tests, and not in their
# family's test file: here the family's reference run (shared by every variant) is already made, where another
# file's test would start it or wait for the worker that is making it.
def test_hrnet_parity_can_fail(paddle_reference, monkeypatch):
    """Nearest upsampling replaced by bilinear in HRNet's fuse: the comparison must go red."""
    import hgzoo.models.hrnet as hr

    pdparams, ref = paddle_reference.get("hrnet_w18_c")
    model = hgzoo.create_model("hrnet_w18_c", pretrained_file=pdparams).eval()
    monkeypatch.setattr(hr, "_upsample_to",
                        lambda x, scale, size: torch.nn.functional.interpolate(x, size=size, mode="bilinear"))
    h, w = parity_sizes("hrnet_w18_c")[1]
    err = relative_error(logits(model, ref[f"x_{h}x{w}"]), ref[f"y_{h}x{w}"])
    assert err > 1e-2, f"bilinear instead of nearest upsampling changed the logits by only {err:.2e}"


def test_resnet_vd_parity_needs_the_exclusive_shortcut_pool(paddle_reference):
    """Count the padding in the ResNet-vd shortcut pool (a plausible mistake): the odd-size comparison must go red."""
    from hgzoo.models.resnet_vd import ResNetVdShortcut

    pdparams, ref = paddle_reference.get("resnet50_vd")
    model = hgzoo.create_model("resnet50_vd", pretrained_file=pdparams).eval()
    for m in model.modules():
        if isinstance(m, ResNetVdShortcut) and isinstance(m.pool, torch.nn.AvgPool2d):
            m.pool = torch.nn.Sequential(torch.nn.ZeroPad2d((0, 1, 0, 1)), torch.nn.AvgPool2d(2, 2))
    h, w = parity_sizes("resnet50_vd")[1]
    assert h % 2 and w % 2
    y = logits(model, ref[f"x_{h}x{w}"])
    assert relative_error(y, ref[f"y_{h}x{w}"]) > 1e-2
    assert np.isfinite(y).all()
