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
