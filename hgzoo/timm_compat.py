"""A bridge to timm's registry: after :func:`register`, timm's own code builds hgzoo models by name.

    import hgzoo.timm_compat, timm
    hgzoo.timm_compat.register()
    model = timm.create_model("pphgnet_small", pretrained=True)     # hgzoo's model, through hgzoo's loader
    timm.list_models("pphgnet*"), timm.list_pretrained("pphgnet_small*")

timm's own scripts (``train.py``, ``validate.py``, ``benchmark.py`` from timm's repository) run with hgzoo models
through :mod:`hgzoo.cli.timm`, which registers and then runs the script::

    python -m hgzoo.timm_compat path/to/timm/validate.py --model pphgnet_small --pretrained --data-dir val/

Every hgzoo architecture is registered under its hgzoo name (timm has its own ``hgnet_small`` etc., which are left
alone) with every weight tag as a timm pretrained config (:meth:`hgzoo.PretrainedCfg.to_timm_dict`). The entry
points call :func:`hgzoo.create_model` with timm's ``pretrained_cfg`` as it is, so weights come from hgzoo's resolver
(Hub, cache, Paddle URL), and ``timm.create_model("hf-hub:ORG/REPO")`` or ``("local-dir:FOLDER")`` loads a folder
written by :func:`hgzoo.save_pretrained`. A tag whose only source is a Paddle URL carries it as timm's ``url``, so
``timm.list_pretrained()`` lists every hgzoo tag. timm's
``checkpoint_path``, ``scriptable`` and ``exportable`` are handled by timm's ``create_model`` itself.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any

from torch import nn

from ._builder import create_model
from ._registry import list_models, model_class, pretrained_cfgs
from .pretrained import PretrainedCfg

__all__ = ["register", "is_registered", "default_cfgs"]

#: timm reads a module's ``default_cfgs`` when it registers the module's entry points (filled by :func:`register`).
default_cfgs: dict[str, Any] = {}
_registered: set[str] = set()


def _entry(arch: str):
    """timm's entry point for ``arch``: builds hgzoo's model with hgzoo's ``create_model``."""

    def entry(pretrained: bool = False, pretrained_cfg: Any = None, pretrained_cfg_overlay: dict | None = None,
              cache_dir: Any = None, **kwargs: Any) -> nn.Module:
        kwargs.pop("pretrained_model_args", None)  # timm's record of a Hub config's model_args, already in kwargs
        if cache_dir is not None:
            kwargs["cache_dir"] = cache_dir
        if pretrained_cfg_overlay:
            kwargs["pretrained_cfg_overlay"] = pretrained_cfg_overlay
        # A tag, timm's PretrainedCfg (hf-hub:, local-dir: sources) or a dict: hgzoo.create_model reads it as timm.
        kwargs.setdefault("feature_indexing", "timm")  # the levels timm's port of the family has
        return create_model(arch, pretrained=pretrained, pretrained_cfg=pretrained_cfg, **kwargs)

    entry.__name__ = entry.__qualname__ = arch
    entry.__module__ = __name__
    entry.hgzoo_architecture = arch  # marks it as hgzoo's, whichever copy of this module made it
    entry.__doc__ = f"hgzoo's {arch} (hgzoo.create_model), registered into timm by hgzoo.timm_compat.register()."
    return entry


def _timm_cfg(cfg: PretrainedCfg) -> dict[str, Any]:
    """``cfg`` as timm's pretrained config, with its Paddle URL as timm's ``url`` where it has no Hub repo: timm lists
    a tag as pretrained only if it names a place for the weights (the weights still come through hgzoo's loader)."""
    d = cfg.to_timm_dict()
    if not d.get("hf_hub_id") and cfg.paddle_url:
        d["url"] = cfg.paddle_url
    return d


def register() -> list[str]:
    """Register every hgzoo architecture and weight tag into timm's registry; returns the names registered.

    Idempotent: a second call registers nothing. An hgzoo name that timm already uses for another network is
    an error (none does in timm 1.0.31)."""
    from timm.models import generate_default_cfgs, is_model, model_entrypoint, register_model

    cfgs = {}
    for arch in list_models():
        first_conv = model_class(arch).first_conv
        for cfg in pretrained_cfgs(arch):  # hgzoo's default tag first: timm's default too
            cfgs[cfg.name] = _timm_cfg(dataclasses.replace(cfg, extra={**cfg.extra, "first_conv": first_conv}))
    default_cfgs.update(generate_default_cfgs(cfgs))
    module = sys.modules[__name__]
    done = []
    for arch in list_models():
        existing = model_entrypoint(arch) if is_model(arch) else None
        if arch in _registered or getattr(existing, "hgzoo_architecture", None) == arch:
            continue  # registered already (by python -m hgzoo.timm_compat's copy of this module, say)
        if existing is not None:
            raise RuntimeError(f"timm already registers a model named {arch!r} ({existing.__module__}); hgzoo will "
                               "not replace it")
        fn = _entry(arch)
        setattr(module, arch, fn)
        register_model(fn)
        _registered.add(arch)
        done.append(arch)
    return done


def is_registered() -> bool:
    """Whether every hgzoo architecture is in timm's registry (:func:`register` has run in this process)."""
    if "timm" not in sys.modules:
        return False
    from timm.models import is_model, model_entrypoint

    return all(is_model(a) and getattr(model_entrypoint(a), "hgzoo_architecture", None) == a for a in list_models())


if __name__ == "__main__":  # ``python -m hgzoo.timm_compat SCRIPT``: the command lives in hgzoo.cli.timm
    import runpy

    runpy.run_module("hgzoo.cli.timm", run_name="__main__", alter_sys=True)
