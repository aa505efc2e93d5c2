"""The public face of the model registry (implemented in :mod:`hgzoo._registry`): a name (with wildcards, a
weight tag or a timm alias) to its architecture, builder and PaddleClas name. ``hgzoo.list_models`` and its
siblings are re-exported at the top level; tools that need more (the builder of a name, the PaddleClas name)
import them from here.
"""
from ._registry import (
    UnknownModelError,
    get_pretrained_cfg,
    is_model,
    list_models,
    list_pretrained,
    model_entrypoint,
    paddle_name,
    pretrained_cfgs,
    resolve_model_name,
)

__all__ = [
    "list_models", "list_pretrained", "is_model", "get_pretrained_cfg", "pretrained_cfgs", "resolve_model_name",
    "model_entrypoint", "paddle_name", "UnknownModelError",
]
