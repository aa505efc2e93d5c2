"""Detector backbone files both ways: D-FINE/DEIM, RT-DETRv2, PResNet and transformers' layouts to hgzoo's and
back (``python -m hgzoo.convert --from/--to dfine|rtdetrv2|presnet|transformers``). The key maps themselves are data
in :mod:`hgzoo.convert.detectors` and :mod:`hgzoo.convert.transformers_detectors`; this module reads and writes the
files."""
from __future__ import annotations

import io
from pathlib import Path

import torch
from safetensors.torch import save

from .._files import atomic_write, safe_load
from ..convert import transformers_detectors
from ..convert.detectors import DETECTOR_KEY_MAPS, backbone_part, from_hgzoo, hgzoo_arch, to_hgzoo

__all__ = ["convert_detector_file", "detector_origins"]


def detector_origins() -> tuple[str, ...]:
    """The layouts ``python -m hgzoo.convert --from/--to`` converts backbones from and to."""
    return (*DETECTOR_KEY_MAPS, "transformers")


def _their_file_name(origin: str, name: str) -> str:
    if origin == "dfine":
        return f"PPHGNetV2_{name}_stage1.pth"
    if origin == "rtdetrv2":
        return f"PPHGNetV2_{name}_ssld_pretrained_from_paddle.pth"
    if origin == "presnet":
        return f"ResNet{name}_vd_backbone.pth"
    return f"{name}_transformers_backbone.pth"


def convert_detector_file(source: str, output: str, name: str, *, from_origin: str | None = None,
                          to_origin: str | None = None) -> str:
    """Convert one backbone file (or a whole detector checkpoint's ``backbone.*``) from ``from_origin``'s names to
    hgzoo's (a ``<arch>.backbone.safetensors`` in ``output``), or hgzoo's to ``to_origin``'s (a ``.pth`` named as
    their code looks for it). ``name``: their ``name``/``depth`` (``B4``, ``L``, ``50``); for transformers, the hgzoo
    architecture. Strict both ways: every key used once, none missing, shapes equal."""
    origin = from_origin or to_origin
    if (from_origin is None) == (to_origin is None) or origin not in detector_origins():
        raise ValueError(f"convert from one detector layout or to one, of {', '.join(detector_origins())}")
    sd = backbone_part(safe_load(source))
    if origin == "transformers":
        arch = name
        out = (transformers_detectors.hf_to_hgzoo(sd, arch) if from_origin
               else transformers_detectors.hgzoo_to_hf(sd, arch))
    else:
        arch = hgzoo_arch(origin, name)
        out = to_hgzoo(sd, origin, name) if from_origin else from_hgzoo(sd, origin, name)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    out = {k: v.contiguous() for k, v in out.items()}
    if from_origin:
        return str(atomic_write(folder / f"{arch}.backbone.safetensors", save(out)))
    buf = io.BytesIO()
    torch.save(out, buf)
    return str(atomic_write(folder / _their_file_name(origin, name), buf.getvalue()))
