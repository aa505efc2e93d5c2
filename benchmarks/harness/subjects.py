"""What is benchmarked: an hgzoo model, or its timm equivalent, built once per run.

A :class:`Subject` is a model in eval mode, fp32, on the CPU, with a way to make its deployment form
(re-parameterized: conv+BN fused, multi-branch convs merged). The benchmark runs every backend on a subject
(:func:`~benchmarks.harness.backends.prepare_subject`), so a timm model goes through the same backends as an hgzoo
one.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

import hgzoo

__all__ = [
    "Subject", "BenchmarkInputError", "timm_equivalent", "build_hgzoo", "build_timm", "total_stride",
    "activation_bytes_per_image", "flops_at", "calibrate_batchnorm",
]


class BenchmarkInputError(ValueError):
    """Bad input to the benchmark (unknown model or backend, impossible size): shown as a message."""


# hgzoo name → timm name. timm's ports of the same PaddleClas architectures.
_TIMM_RULES = (
    (r"pphgnet_(tiny|small|base)", r"hgnet_\1"),
    (r"pphgnetv2_(b\d)", r"hgnetv2_\1"),
    (r"pplcnetv2_(small|base|large)", r"lcnetv2_\1"),
    (r"hrnet_(w\d+)_c", r"hrnet_\1"),
    (r"resnet(\d+)_vd", r"resnet\1d"),
)


def timm_equivalent(name: str) -> str | None:
    """The timm model with the same architecture as hgzoo's ``name``, if timm (installed) has one."""
    for pattern, repl in _TIMM_RULES:
        if re.fullmatch(pattern, name):
            candidate = re.sub(pattern, repl, name)
            try:
                import timm
            except ImportError:
                return candidate  # the caller reports timm as missing
            return candidate if timm.is_model(candidate) else None
    return None


@dataclass
class Subject:
    """One model to benchmark. ``name`` is the hgzoo model it stands for (the table row)."""

    name: str
    impl: str  # "hgzoo" or "timm"
    arch: str  # the model's name in its own library
    model: nn.Module  # eval mode, fp32, CPU, contiguous
    reparameterize_fn: Callable[[nn.Module], nn.Module]
    deploy_note: str = ""
    cache: dict[str, Any] = field(default_factory=dict)  # what backends made for it (ONNX files, sessions, ...)
    _deploy: nn.Module | None = None

    @property
    def label(self) -> str:
        return self.arch if self.impl == "hgzoo" else f"{self.impl}:{self.arch}"

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def deploy_model(self) -> nn.Module:
        """The re-parameterized copy (built once, then shared read-only: copy it before changing it)."""
        if self._deploy is None:
            self._deploy = self.reparameterize_fn(copy.deepcopy(self.model)).eval()
        return self._deploy

    def release(self) -> None:
        """Drop the backend artifacts (sessions, compiled graphs) so their memory can be freed."""
        for value in self.cache.values():
            close = getattr(value, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001 - best effort cleanup
                    pass
        self.cache.clear()
        self._deploy = None


def calibrate_batchnorm(model: nn.Module, img_size: int, seed: int = 0) -> None:
    """Give random-init BN layers the statistics of real activations (one train-mode pass, cumulative
    averages), so activations stay O(1): no inf/NaN or denormals that would make timings meaningless,
    and outputs that depend on the input, so the agreement check means something."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    gen = torch.Generator().manual_seed(seed)
    size = max(min(img_size, 128), 32)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, size, size, generator=gen))
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    model.eval()


def _timm_reparameterize(model: nn.Module) -> nn.Module:
    """The best inference form a timm user gets: timm's own re-parameterization (e.g. LCNetV2's branches)."""
    from timm.utils.model import reparameterize_model

    return reparameterize_model(model, inplace=True)


def build_hgzoo(name: str, *, pretrained: bool = False, img_size: int = 224, seed: int = 0) -> Subject:
    torch.manual_seed(seed)
    model = hgzoo.create_model(name, pretrained=pretrained).eval()
    if not pretrained:
        calibrate_batchnorm(model, img_size, seed)
    return Subject(name, "hgzoo", name, model, hgzoo.reparameterize, "hgzoo.reparameterize")


def _as_is(model: nn.Module) -> nn.Module:
    return model


def build_timm(name: str, timm_name: str, *, pretrained: bool = False, img_size: int = 224, seed: int = 0,
               reparameterize: bool = True) -> Subject:
    """timm's port of ``name``. ``reparameterize``: its deployment form is what timm's ``reparameterize_model``
    makes (impl "timm", the best a timm user can do); else the model exactly as ``timm.create_model`` returns it
    (impl "timm-plain": what ``torch.onnx.export(timm_model)`` gives a user who does not know that call)."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(timm_name, pretrained=pretrained).eval()
    if not pretrained:
        calibrate_batchnorm(model, img_size, seed)
    if reparameterize:
        return Subject(name, "timm", timm_name, model, _timm_reparameterize, "timm reparameterize_model")
    return Subject(name, "timm-plain", timm_name, model, _as_is, "as timm.create_model returns it")


def total_stride(model: nn.Module) -> int:
    """The network's total downsampling (largest feature reduction); 32 if the model does not say."""
    info = getattr(model, "feature_info", None)
    try:
        return max(int(f["reduction"]) for f in info)  # type: ignore[union-attr]
    except (TypeError, ValueError, KeyError):
        return 32


def on_meta(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the meta device: shapes without storage, so a forward at any size costs nothing."""
    return copy.deepcopy(model).to("meta")


def flops_at(model: nn.Module, img_size: int) -> int:
    """:func:`hgzoo._flops.count_flops` of one image at ``img_size``, counted on the meta device (no compute and no
    memory, so a request for 4096 px is estimated in a second, not run)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        on_meta(model)(torch.zeros(1, 3, img_size, img_size, device="meta"))
    return counter.get_total_flops()


def activation_bytes_per_image(model: nn.Module, img_size: int) -> int:
    """An upper estimate of the fp32 working memory of one image's inference at ``img_size``.

    The largest output of any module at ``img_size`` (a forward on the meta device: no memory) times a margin
    for the tensors alive at the same time (the block input, its branches, the residual, the output).
    """
    largest = 0

    def hook(_m, _inp, out):
        nonlocal largest
        outs = out if isinstance(out, (list, tuple)) else [out]
        largest = max(largest, sum(o.numel() for o in outs if isinstance(o, torch.Tensor)))

    meta = on_meta(model)
    for m in meta.modules():
        m.register_forward_hook(hook)
    with torch.inference_mode():
        meta(torch.zeros(1, 3, img_size, img_size, device="meta"))
    return int(4 * (5 * largest + 3 * img_size * img_size))
