"""The model registry: name → builder, PaddleClas aliases, weight tags and the default tag."""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Callable

from torch import nn

from .pretrained import PretrainedCfg

__all__ = [
    "register_model", "list_models", "list_pretrained", "is_model", "get_pretrained_cfg",
    "resolve_model_name", "model_entrypoint", "UnknownModelError",
]


class UnknownModelError(ValueError):
    """An unknown model name or weight tag."""


@dataclass(frozen=True)
class _Entry:
    name: str
    fn: Callable[..., nn.Module]
    paddle_name: str
    pretrained_cfgs: tuple[PretrainedCfg, ...]


_entries: dict[str, _Entry] = {}
_aliases: dict[str, str] = {}  # lower-cased PaddleClas name → our name


def register_model(paddle_name: str, pretrained_cfgs: tuple[PretrainedCfg, ...] = ()):
    """Register a builder function under its own name, with its PaddleClas spelling as an alias.

    The first of ``pretrained_cfgs`` is the default tag for the bare architecture name.
    """

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _entries:
            raise ValueError(f"model {name!r} registered twice")
        for cfg in pretrained_cfgs:
            if cfg.architecture != name:
                raise ValueError(f"pretrained cfg {cfg.name} registered under {name}")
        _entries[name] = _Entry(name, fn, paddle_name, tuple(pretrained_cfgs))
        _aliases[paddle_name.lower()] = name
        return fn

    return wrap


def _split(name: str) -> tuple[str, str | None]:
    arch, _, tag = name.partition(".")
    return arch, (tag or None)


def resolve_model_name(name: str) -> tuple[str, str | None]:
    """``"PPHGNet_small.ssld_in1k"`` → ``("pphgnet_small", "ssld_in1k")``; raise with close matches if unknown."""
    arch, tag = _split(name)
    if arch in _entries:
        resolved = arch
    elif arch.lower() in _aliases:
        resolved = _aliases[arch.lower()]
    elif arch.lower() in _entries:
        resolved = arch.lower()
    else:
        choices = list(_entries) + [e.paddle_name for e in _entries.values()]
        close = difflib.get_close_matches(arch, choices, n=5, cutoff=0.5)
        close = close or difflib.get_close_matches(arch.lower(), list(_entries), n=5, cutoff=0.3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"Unknown model {arch!r}.{hint} See hgzoo.list_models() for all {len(_entries)} models.")
    if tag is not None:
        tags = [c.tag for c in _entries[resolved].pretrained_cfgs]
        if tag not in tags:
            raise UnknownModelError(
                f"Unknown weight tag {tag!r} for {resolved}. Tags that exist: "
                f"{', '.join(f'{resolved}.{t}' for t in tags) or '(none)'}."
            )
    return resolved, tag


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    return _entries[resolve_model_name(name)[0]].fn


def paddle_name(name: str) -> str:
    return _entries[resolve_model_name(name)[0]].paddle_name


def is_model(name: str) -> bool:
    """True if ``name`` (ours or PaddleClas's spelling, with or without a tag) names a known model."""
    try:
        resolve_model_name(name)
    except UnknownModelError:
        return False
    return True


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered architecture names matching a wildcard; with ``pretrained=True``, the weight tags instead."""
    if pretrained:
        return list_pretrained(pattern)
    return sorted(n for n in _entries if fnmatch.fnmatch(n, pattern))


def list_pretrained(pattern: str = "*") -> list[str]:
    """Every ``arch.tag`` whose name (or architecture name) matches the wildcard."""
    out = []
    for e in _entries.values():
        for c in e.pretrained_cfgs:
            if fnmatch.fnmatch(c.name, pattern) or fnmatch.fnmatch(e.name, pattern):
                out.append(c.name)
    return sorted(out)


def get_pretrained_cfg(name: str) -> PretrainedCfg | None:
    """The pretrained config of ``arch.tag``, or of the architecture's default tag; None if it has no weights."""
    arch, tag = resolve_model_name(name)
    cfgs = _entries[arch].pretrained_cfgs
    if not cfgs:
        return None
    if tag is None:
        return cfgs[0]
    return next(c for c in cfgs if c.tag == tag)
