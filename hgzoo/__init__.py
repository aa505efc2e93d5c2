"""hgzoo: PaddleClas's efficient backbones in PyTorch, at exact parity with PaddleClas.

``import hgzoo`` loads the library proper: the registry, the builder, the layers and the models. What stands on
top of it loads on first use: the key maps (``hgzoo.convert``), preprocessing (``hgzoo.preprocessing``,
``hgzoo.data``), checkpoints (``hgzoo.checkpoint``), ``hgzoo.deploy``, ``hgzoo.train``, ``hgzoo.hub``,
``hgzoo.features``, :func:`hgzoo.predict` (``hgzoo.inference``), publishing (``hgzoo.publish``:
:func:`hgzoo.save_pretrained`, :func:`hgzoo.push_to_hub`; ``hgzoo.timm_compat``) and the commands (``hgzoo.cli``).
"""
from __future__ import annotations

import importlib
from typing import Any

from . import models  # noqa: F401  (registers every model)
from ._builder import create_model, load_checkpoint
from ._registry import get_pretrained_cfg, is_model, list_models, list_pretrained
from .layers import reparameterize
from .pretrained import PretrainedCfg

__version__ = "0.1.0"
__all__ = [
    "create_model", "list_models", "list_pretrained", "is_model", "get_pretrained_cfg", "load_checkpoint",
    "reparameterize", "PretrainedCfg", "predict", "save_pretrained", "push_to_hub", "count_flops",
]

_LAZY_MODULES = ("checkpoint", "cli", "convert", "data", "deploy", "features", "hub", "inference", "preprocessing",
                 "publish", "timm_compat", "train")
# Functions of a lazily loaded module, by the module's name.
_LAZY_ATTRIBUTES = {"predict": "inference", "save_pretrained": "publish", "push_to_hub": "publish",
                    "count_flops": "_flops"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_ATTRIBUTES:
        return getattr(importlib.import_module(f".{_LAZY_ATTRIBUTES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_MODULES) | set(_LAZY_ATTRIBUTES))
