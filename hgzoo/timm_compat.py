"""A bridge to timm's registry: after :func:`register`, timm's own code builds hgzoo models by name.

    import hgzoo.timm_compat, timm
    hgzoo.timm_compat.register()
    model = timm.create_model("pphgnet_small", pretrained=True)     # hgzoo's model, through hgzoo's loader
    timm.list_models("pphgnet*"), timm.list_pretrained("pphgnet_small*")

timm's own scripts (``train.py``, ``validate.py``, ``benchmark.py`` from timm's repository) run with hgzoo models
through this module, which registers and then runs the script::

    python -m hgzoo.timm_compat path/to/timm/validate.py --model pphgnet_small --pretrained --data-dir val/

Every hgzoo architecture is registered under its hgzoo name (timm has its own ``hgnet_small`` etc., which are left
alone) with every weight tag as a timm pretrained config (:meth:`hgzoo.PretrainedCfg.to_timm_dict`). The entry
points call :func:`hgzoo.create_model`, so weights come from hgzoo's resolver (Hub, cache, Paddle URL) and
``timm.create_model("hf-hub:ORG/REPO")`` loads a folder written by :func:`hgzoo.save_pretrained`. timm's
``checkpoint_path``, ``scriptable`` and ``exportable`` are handled by timm's ``create_model`` itself.
"""
from __future__ import annotations

import dataclasses
import runpy
import sys
from pathlib import Path
from typing import Any

from torch import nn

from ._builder import create_model
from ._registry import list_models, model_class, pretrained_cfgs

__all__ = ["register", "is_registered", "default_cfgs", "run_script"]

#: timm reads a module's ``default_cfgs`` when it registers the module's entry points (filled by :func:`register`).
default_cfgs: dict[str, Any] = {}
_registered: set[str] = set()


def _tag_of(pretrained_cfg: Any) -> tuple[str | None, str | None]:
    """(weight tag, Hub repo id when timm resolved an ``hf-hub:`` name) from timm's ``pretrained_cfg`` argument:
    a tag string, a dict or timm's ``PretrainedCfg``."""
    if pretrained_cfg is None or isinstance(pretrained_cfg, str):
        return pretrained_cfg or None, None
    cfg = pretrained_cfg if isinstance(pretrained_cfg, dict) else dataclasses.asdict(pretrained_cfg)
    if cfg.get("source") == "hf-hub" and cfg.get("hf_hub_id"):
        return None, cfg["hf_hub_id"]
    return cfg.get("tag") or None, None


def _entry(arch: str):
    """timm's entry point for ``arch``: builds hgzoo's model with hgzoo's ``create_model``."""

    def entry(pretrained: bool = False, pretrained_cfg: Any = None, pretrained_cfg_overlay: dict | None = None,
              cache_dir: Any = None, **kwargs: Any) -> nn.Module:
        tag, repo = _tag_of(pretrained_cfg)
        kwargs.pop("pretrained_model_args", None)  # timm's record of a Hub config's model_args, already in kwargs
        if cache_dir is not None:
            kwargs["cache_dir"] = cache_dir
        if pretrained_cfg_overlay:
            kwargs["pretrained_cfg_overlay"] = pretrained_cfg_overlay
        name = f"hf-hub:{repo}" if repo else (f"{arch}.{tag}" if tag else arch)
        kwargs.setdefault("feature_indexing", "timm")  # the levels timm's port of the family has
        return create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = arch
    entry.__module__ = __name__
    entry.hgzoo_architecture = arch  # marks it as hgzoo's, whichever copy of this module made it
    entry.__doc__ = f"hgzoo's {arch} (hgzoo.create_model), registered into timm by hgzoo.timm_compat.register()."
    return entry


def register() -> list[str]:
    """Register every hgzoo architecture and weight tag into timm's registry; returns the names registered.

    Idempotent: a second call registers nothing. An hgzoo name that timm already uses for another network is
    an error (none does in timm 1.0.31)."""
    import timm.models._registry as timm_registry
    from timm.models import generate_default_cfgs

    cfgs = {}
    for arch in list_models():
        first_conv = model_class(arch).first_conv
        for cfg in pretrained_cfgs(arch):  # hgzoo's default tag first: timm's default too
            cfgs[cfg.name] = dataclasses.replace(cfg, extra={**cfg.extra, "first_conv": first_conv}).to_timm_dict()
    default_cfgs.update(generate_default_cfgs(cfgs))
    module = sys.modules[__name__]
    done = []
    for arch in list_models():
        existing = timm_registry._model_entrypoints.get(arch)
        if arch in _registered or getattr(existing, "hgzoo_architecture", None) == arch:
            continue  # registered already (by python -m hgzoo.timm_compat's copy of this module, say)
        if existing is not None:
            raise RuntimeError(f"timm already registers a model named {arch!r} ({existing.__module__}); hgzoo will "
                               "not replace it")
        fn = _entry(arch)
        setattr(module, arch, fn)
        timm_registry.register_model(fn)
        _registered.add(arch)
        done.append(arch)
    return done


def is_registered() -> bool:
    """Whether every hgzoo architecture is in timm's registry (:func:`register` has run in this process)."""
    if "timm" not in sys.modules:
        return False
    from timm.models._registry import _model_entrypoints

    return all(getattr(_model_entrypoints.get(a), "hgzoo_architecture", None) == a for a in list_models())


def run_script(argv: list[str] | None = None) -> int:
    """``python -m hgzoo.timm_compat SCRIPT [ARGS...]``: :func:`register`, then run ``SCRIPT`` as ``__main__`` with
    ``ARGS`` (timm's train.py, validate.py, benchmark.py, or any script that builds models with timm)."""
    from ._cli import BadInput, guarded_main

    def main(args: list[str] | None) -> int:
        args = list(sys.argv[1:] if args is None else args)
        if not args or args[0] in ("-h", "--help"):
            print("usage: python -m hgzoo.timm_compat SCRIPT [ARGS...]  (registers hgzoo's models into timm, "
                  "then runs SCRIPT)")
            return 0 if args else 2
        script = Path(args[0])
        if not script.is_file():
            raise BadInput(f"{script}: no such script (give the path of timm's train.py, validate.py or benchmark.py)")
        register()
        sys.argv = [str(script), *args[1:]]
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as e:  # the script's own exit status
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return 0

    return guarded_main(main, argv)


if __name__ == "__main__":
    sys.exit(run_script())
