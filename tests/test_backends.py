"""The one backend vocabulary (hgzoo/deploy/backends.py): every backend in one registry, each returning the one
Runner, checked against the model's own eager fp32 forward. (The benchmark's GPU backends join the same registry:
tests/test_benchmark.py.)"""
from __future__ import annotations

import copy

import pytest
import torch
from image_samples import calibrated_model

import hgzoo
from hgzoo.deploy import BACKENDS, Backend, BackendError, Runner, get_backend, register_backend
from hgzoo.deploy.runner import prepare

TINY = "pplcnetv2_small"


@pytest.fixture(scope="module")
def tiny():
    """A small random-weight model whose BN statistics follow real activations (its logits depend on the input),
    a batch of 2 at 64 px, and its eager fp32 logits: the reference."""
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    model = calibrated_model(TINY, torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
    with torch.inference_mode():
        ref = model(x)
    return model, x, ref


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_unknown_and_clashing_backends_are_refused():
    with pytest.raises(BackendError, match="unknown backend 'onnxrt'. Did you mean onnxruntime"):
        get_backend("onnxrt")

    class Impostor(Backend):
        name = "eager"

    with pytest.raises(ValueError, match="'eager' is registered already"):
        register_backend(Impostor())
    assert type(BACKENDS["eager"]).__name__ == "EagerBackend"


@pytest.mark.parametrize("name", ["eager", "reparam", "compile", "torchscript", "onnxruntime", "openvino"])
def test_each_cpu_backend_returns_the_runner_and_agrees_with_eager(tiny, name):
    model, x, ref = tiny
    backend = get_backend(name)
    reason = backend.skip_reason("fp32")
    if reason:
        pytest.skip(reason)
    form = hgzoo.reparameterize(copy.deepcopy(model)) if backend.reparameterized else model
    runner = backend.prepare(form, x, "fp32", threads=1)
    try:
        assert isinstance(runner, Runner) and (runner.backend, runner.precision) == (name, "fp32")
        out = runner(x)
        assert out.dtype == torch.float32 and out.shape == ref.shape and _rel(out, ref) < 1e-4
        assert torch.equal(runner.bind(x).output(), out)  # the timed call runs the same batch
        # other images through a runner prepared for batches of 2 (a static shape): padded, then cut back
        five = torch.cat([x, x.flip(0), x[:1]])
        assert _rel(runner.logits(five, 2), torch.cat([ref, ref.flip(0), ref[:1]])) < 1e-4
        wrong = runner.logits(five.flip(-1), 2)  # the check can fail: other inputs give other logits
        assert _rel(wrong, torch.cat([ref, ref.flip(0), ref[:1]])) > 1e-2
    finally:
        runner.close()
        backend.release()


def test_prepare_serves_every_torch_backend_for_validate_and_predict(tiny):
    model, x, ref = tiny
    for name in ("eager", "reparam"):
        runner = prepare(model, name, "fp32", data_config={"crop_size": 64})
        assert runner.backend == name and _rel(runner(x), ref) < 1e-4
        assert runner.describe()["backend"] == name
    for name in ("eager", "reparam"):  # the options validate.py passes reach the backend
        runner = prepare(model, name, "fp32", data_config={"crop_size": 64}, channels_last=True, reparam=True)
        assert "re-parameterized" in runner.compute and "channels-last" in runner.compute
        assert _rel(runner(x), ref) < 1e-4
    with pytest.raises(BackendError, match="--backend reparam has no int8 path"):
        prepare(model, "reparam", "int8", data_config={"crop_size": 64})


def test_a_runtime_without_an_example_batch_says_so(tiny):
    model, _, _ = tiny
    backend = get_backend("onnxruntime")
    if backend.unavailable():
        pytest.skip(backend.unavailable())
    with pytest.raises(BackendError, match="example batch"):
        backend.prepare(model, None, "fp32")
