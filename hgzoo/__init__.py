"""hgzoo: PaddleClas's efficient backbones in PyTorch, at exact parity with PaddleClas.

``import hgzoo`` loads the library proper: the registry, the builder, the layers and the models. The
packages on top of it (``hgzoo.deploy``, ``hgzoo.data``, ``hgzoo.train``, ``hgzoo.hub``, ``hgzoo.features``,
``hgzoo.convert``, ``hgzoo.publish``, ``hgzoo.timm_compat``), :func:`hgzoo.predict`, :func:`hgzoo.save_pretrained`
and :func:`hgzoo.push_to_hub` load on first use, and so does ``hgzoo.checkpoint``.
"""
from __future__ import annotations

import importlib
import sys
import types
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

_LAZY_MODULES = ("checkpoint", "convert", "data", "deploy", "features", "hub", "publish", "timm_compat", "train")
# Functions named like the module that defines them: ``hgzoo.predict`` is the function of ``hgzoo/predict.py``.
_LAZY_FUNCTIONS = ("predict",)
# Functions of a lazily loaded module, by the module's name.
_LAZY_ATTRIBUTES = {"save_pretrained": "publish", "push_to_hub": "publish", "count_flops": "_flops"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES or name in _LAZY_FUNCTIONS:
        importlib.import_module(f".{name}", __name__)  # sets the attribute (see _Package.__setattr__)
        return globals()[name]
    if name in _LAZY_ATTRIBUTES:
        return getattr(importlib.import_module(f".{_LAZY_ATTRIBUTES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_MODULES) | set(_LAZY_FUNCTIONS) | set(_LAZY_ATTRIBUTES))


class _Package(types.ModuleType):
    """The ``hgzoo`` module object. Importing a submodule sets the package attribute of that name to the
    submodule; for ``hgzoo.predict``, wherever that import happens, the attribute is its function instead."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY_FUNCTIONS and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
