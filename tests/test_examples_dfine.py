"""examples/dfine_transformers.py: transformers' D-FINE takes hgzoo's backbone weights from a file (every backbone
tensor arrives, none is left as transformers initialized it), trains a few steps, returns boxes, and gives its trained
backbone back in hgzoo's names (the frozen BatchNorms unchanged, the convs trained)."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

import hgzoo
from hgzoo.convert.transformers_detectors import hgzoo_to_hf

pytest.importorskip("skimage", reason="scikit-image (the `test` extra) provides the photos")
pytest.importorskip("transformers", reason="transformers (the `test` extra) provides D-FINE")
safetensors_torch = pytest.importorskip("safetensors.torch")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "dfine_transformers.py"
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def _load_example():
    spec = importlib.util.spec_from_file_location("hgzoo_example_dfine_transformers", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pretend_pretrained(arch: str, path: Path) -> dict[str, torch.Tensor]:
    """A local "pretrained" file of ``arch`` (hgzoo's classifier layout, safetensors) in which every float tensor is
    drawn at random, so that none equals what transformers initializes (BN ones and zeros, affine blocks 1 and 0)."""
    g = torch.Generator().manual_seed(7)
    state = {}
    for k, v in hgzoo.create_model(arch).state_dict().items():
        if v.is_floating_point():
            v = torch.rand(v.shape, generator=g) * 0.5 + 0.5 if k.endswith("running_var") else \
                torch.randn(v.shape, generator=g) * 0.1
        state[k] = v.contiguous()
    safetensors_torch.save_file(state, str(path))
    return state


@pytest.mark.parametrize("arch", ["pphgnetv2_b0", "resnet18_vd"])
def test_dfine_example_loads_trains_and_detects(arch, tmp_path):
    example = _load_example()
    weights = tmp_path / f"{arch}.safetensors"
    file_state = _pretend_pretrained(arch, weights)

    # Before loading, transformers' own initialization: no backbone tensor equals the file's.
    torch.manual_seed(0)
    fresh = example.build_detector(arch)
    expected = hgzoo_to_hf(file_state, arch)
    assert example.weights_arrived(fresh, expected)[0] == 0

    steps = 2
    out = example.main(["--arch", arch, "--weights", str(weights), "--steps", str(steps), "--img-size", "128"])
    same, total = out["arrived"]
    assert same == total == len(fresh.model.backbone.model.state_dict()) > 100

    assert len(out["losses"]) == steps and all(math.isfinite(v) for v in out["losses"])
    assert len(out["detections"]) == len(example.ANNOTATIONS)
    for r in out["detections"]:
        n = len(r["scores"])
        assert n == 3 and r["boxes"].shape == (n, 4)
        assert ((r["scores"] >= 0) & (r["scores"] <= 1)).all()
        assert ((r["labels"] >= 0) & (r["labels"] < len(example.CLASSES))).all()
        assert (r["boxes"][:, 2] >= r["boxes"][:, 0]).all() and (r["boxes"][:, 3] >= r["boxes"][:, 1]).all()

    # The trained backbone comes back in hgzoo's names: the frozen BatchNorms as the file gave them, the convs moved.
    back = out["backbone"]
    assert back.keys() == {k for k in file_state if not k.startswith("head.")}
    norms = [k for k in back if k.endswith(("running_mean", "running_var"))]
    assert norms and all(torch.equal(back[k], file_state[k]) for k in norms)
    convs = [k for k in back if k.endswith("conv.weight")]
    assert sum(not torch.equal(back[k], file_state[k]) for k in convs) > len(convs) // 2
