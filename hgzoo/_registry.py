"""The model registry: name → builder, PaddleClas and timm aliases, weight tags and the default tag."""
from __future__ import annotations

import difflib
import fnmatch
import functools
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from .pretrained import PretrainedCfg

__all__ = [
    "register_model", "list_models", "list_pretrained", "is_model", "get_pretrained_cfg", "resolve_model_name",
    "model_entrypoint", "alias_defaults", "pretrained_cfgs", "model_class", "model_family", "ModelFamily",
    "UnknownModelError", "TIMM_ALIASES", "NOT_TIMM_ALIASES", "PADDLECLAS_CITATION", "SSLD_CITATION",
]


class UnknownModelError(ValueError):
    """An unknown model name or weight tag."""


@dataclass(frozen=True)
class ModelFamily:
    """An architecture family, as a model card names and cites it. Each family file's network class carries its
    record (``family``); :func:`model_family` reads it.

    Args:
        name: the family's name (``"PP-HGNetV2"``): the model card's title and Hub tag.
        citations: BibTeX entries to cite for any model of the family, PaddleClas's first.
    """

    name: str
    citations: tuple[str, ...]


PADDLECLAS_CITATION = """@misc{paddleclas,
  title = {PaddleClas: an image classification toolkit based on PaddlePaddle},
  author = {PaddlePaddle Authors},
  year = {2020},
  howpublished = {\\url{https://github.com/PaddlePaddle/PaddleClas}}
}"""
#: PaddleClas's SSLD distillation, to cite beside a family's entries for weights it trained.
SSLD_CITATION = """@article{cui2021ssld,
  title = {Beyond Self-Supervision: A Simple Yet Effective Network Distillation Alternative to Improve Backbones},
  author = {Cui, Cheng and Guo, Ruoyu and Du, Yuning and He, Dongliang and Li, Fu and Wu, Zewu and Liu, Qiwen and
            Wen, Shilei and Huang, Jizhou and Hu, Xiaoguang and Yu, Dianhai and Ding, Errui and Ma, Yanjun},
  journal = {arXiv preprint arXiv:2103.05959},
  year = {2021}
}"""


@dataclass(frozen=True)
class _Entry:
    name: str
    fn: Callable[..., nn.Module]
    paddle_name: str
    pretrained_cfgs: tuple[PretrainedCfg, ...]
    model_cls: type[nn.Module]


_entries: dict[str, _Entry] = {}
_aliases: dict[str, str] = {}  # lower-cased PaddleClas name → our name


@dataclass(frozen=True)
class _TimmAlias:
    """timm's name for an hgzoo network, and the arguments that give timm's defaults."""

    target: str
    defaults: tuple[tuple[str, Any], ...] = ()


# timm's names for the same networks (checked in tests/test_timm_compat.py: same parameters one to one, same output).
# timm's hgnet_base and lcnetv2_* default to no head dropout; hgzoo's PaddleClas defaults are 0.2 (eval x 0.8).
_NO_DROPOUT = (("drop_rate", 0.0),)
TIMM_ALIASES: dict[str, _TimmAlias] = {
    "hgnet_tiny": _TimmAlias("pphgnet_tiny"), "hgnet_small": _TimmAlias("pphgnet_small"),
    "hgnet_base": _TimmAlias("pphgnet_base", _NO_DROPOUT),
    **{f"hgnetv2_b{i}": _TimmAlias(f"pphgnetv2_b{i}") for i in range(7)},
    **{f"lcnetv2_{s}": _TimmAlias(f"pplcnetv2_{s}", _NO_DROPOUT) for s in ("small", "base", "large")},
    **{f"hrnet_w{w}": _TimmAlias(f"hrnet_w{w}_c") for w in (18, 30, 32, 40, 44, 48, 64)},
    **{f"resnet{d}d": _TimmAlias(f"resnet{d}_vd") for d in (50, 101, 152)},
}
# timm names that look like aliases but are other networks.
NOT_TIMM_ALIASES: dict[str, str] = {
    **{f"resnet{d}d": (f"timm's resnet{d}d has an identity shortcut in the first block of its first stage, where "
                       f"ResNet{d}_vd has a 1x1 conv + BN projection: a different network. Use resnet{d}_vd "
                       "(timm's weights fit it with an identity projection)") for d in (18, 34)},
    "resnet200d": ("timm's resnet200d has depths 3-24-36-3, PaddleClas's ResNet200_vd 3-12-48-3: a different network. "
                   "Use resnet200_vd"),
}


def register_model(paddle_name: str, default_cfgs: Mapping[str, tuple[PretrainedCfg, ...]] | None = None):
    """Register a builder function under its own name, with its PaddleClas spelling as an alias.

    ``default_cfgs`` is the family file's weights table (:func:`~hgzoo.pretrained.generate_default_cfgs`); the
    builder's weight tags are its entry, the first being the default tag for the bare architecture name. The
    registered function gives its model that tag's ``pretrained_cfg`` (the architecture's preprocessing) unless
    the model has one. Checked: the name is new, the table has an entry for it, and the builder's return
    annotation is a network class with a :class:`ModelFamily` record (``family``).
    """

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _entries:
            raise ValueError(f"model {name!r} registered twice")
        if default_cfgs is not None and name not in default_cfgs:
            raise ValueError(f"model {name!r} has no entry in its weights table (default_cfgs): add its "
                             f"'{name}.<tag>' weights, or register it with default_cfgs=None")
        cfgs = tuple(default_cfgs[name]) if default_cfgs is not None else ()
        try:
            model_cls = typing.get_type_hints(fn).get("return")
        except NameError as e:
            raise TypeError(f"model {name!r}: its builder's annotations do not resolve ({e})") from None
        if not isinstance(getattr(model_cls, "family", None), ModelFamily):
            raise TypeError(f"model {name!r}: annotate its builder's return type with a network class that has a "
                            f"ModelFamily record as class attribute 'family' (got {model_cls!r})")
        default = cfgs[0] if cfgs else PretrainedCfg(name, "")

        @functools.wraps(fn)
        def build(*args: Any, **kwargs: Any) -> nn.Module:
            model = fn(*args, **kwargs)
            if getattr(model, "pretrained_cfg", None) is None:
                model.pretrained_cfg = default
            return model

        _entries[name] = _Entry(name, build, paddle_name, cfgs, model_cls)
        _aliases[paddle_name.lower()] = name
        return build

    return wrap


def _split(name: str) -> tuple[str, str | None]:
    arch, _, tag = name.partition(".")
    return arch, (tag or None)


def resolve_model_name(name: str) -> tuple[str, str | None]:
    """``"PPHGNet_small.ssld_in1k"`` → ``("pphgnet_small", "ssld_in1k")``; raise with close matches if unknown.

    Accepted: hgzoo's names, PaddleClas's spellings and timm's names for the same networks (any case)."""
    arch, tag = _split(name)
    if arch in _entries:
        resolved = arch
    elif arch.lower() in _aliases:
        resolved = _aliases[arch.lower()]
    elif arch.lower() in _entries:
        resolved = arch.lower()
    elif arch.lower() in TIMM_ALIASES:
        resolved = TIMM_ALIASES[arch.lower()].target
    elif arch.lower() in NOT_TIMM_ALIASES:
        raise UnknownModelError(f"{arch!r} is not an hgzoo model: {NOT_TIMM_ALIASES[arch.lower()]}.")
    else:
        choices = list(_entries) + [e.paddle_name for e in _entries.values()]
        close = difflib.get_close_matches(arch, choices, n=5, cutoff=0.5)
        close = close or difflib.get_close_matches(arch.lower(), list(_entries), n=5, cutoff=0.3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"Unknown model {arch!r}.{hint} See hgzoo.list_models() for all {len(_entries)} "
                                "models.")
    if tag is not None:
        tags = [c.tag for c in _entries[resolved].pretrained_cfgs]
        if tag not in tags:
            raise UnknownModelError(
                f"Unknown weight tag {tag!r} for {resolved}. Tags that exist: "
                f"{', '.join(f'{resolved}.{t}' for t in tags) or '(none)'}."
            )
    return resolved, tag


def alias_defaults(name: str) -> dict[str, Any]:
    """The arguments that make hgzoo's network timm's when ``name`` is timm's name for it (else ``{}``)."""
    alias = TIMM_ALIASES.get(_split(name)[0].lower())
    return dict(alias.defaults) if alias is not None else {}


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


def _patterns(value: str | Iterable[str]) -> list[str]:
    return [p.lower() for p in ([value] if isinstance(value, str) else list(value)) if p]


def _names_of(entry: _Entry) -> list[str]:
    """The lower-cased names a pattern is matched against: ours, PaddleClas's, timm's."""
    return [entry.name, entry.paddle_name.lower(), *(a for a, t in TIMM_ALIASES.items() if t.target == entry.name)]


def _matches(entry: _Entry, tag: str | None, patterns: list[str]) -> bool:
    names = _names_of(entry)
    if tag is not None:  # "arch*" matches the tags of arch too, as in timm
        names = [*names, *(f"{n}.{tag}" for n in names)]
    return any(fnmatch.fnmatchcase(n, p) for n in names for p in patterns)


def list_models(filter: str | Iterable[str] = "", module: str | Iterable[str] = "", pretrained: bool = False,
                exclude_filters: str | Iterable[str] = "", name_matches_cfg: bool = False,
                include_tags: bool | None = None) -> list[str]:
    """Model names, sorted, as timm's ``list_models``: ``filter`` and ``exclude_filters`` are wildcards or lists of
    them, matched without regard to case against hgzoo's names, PaddleClas's spellings and timm's names of the same
    networks (``list_models("PPHGNet*")``, ``list_models("hgnet_*")``); the result is hgzoo's names.

    Args:
        module: only the models of these family files (``pphgnet``, ``pplcnetv2``, ``hrnet``, ``resnet_vd``).
        pretrained: only models with published weights (every hgzoo architecture has them).
        name_matches_cfg: only names with a pretrained config (every hgzoo architecture has one).
        include_tags: list ``arch.tag`` weight names instead of architectures; default: ``pretrained``.
    """
    include, exclude, modules = _patterns(filter), _patterns(exclude_filters), _patterns(module)
    if include_tags is None:
        include_tags = pretrained
    out = []
    for e in _entries.values():
        if modules and e.fn.__module__.rsplit(".", 1)[-1] not in modules:
            continue
        if pretrained and not e.pretrained_cfgs:
            continue
        tags = [c.tag for c in e.pretrained_cfgs] if include_tags else [None]
        for tag in tags or [None]:
            if include and not _matches(e, tag, include):
                continue
            if exclude and _matches(e, tag, exclude):
                continue
            out.append(e.name if tag is None else f"{e.name}.{tag}")
    return sorted(out)


def list_pretrained(filter: str | Iterable[str] = "", exclude_filters: str | Iterable[str] = "") -> list[str]:
    """Every ``arch.tag`` whose name (or architecture name) matches the wildcard(s), as timm's ``list_pretrained``."""
    return list_models(filter, pretrained=True, exclude_filters=exclude_filters, include_tags=True)


def pretrained_cfgs(name: str) -> tuple[PretrainedCfg, ...]:
    """Every weight tag's config of the architecture ``name``, the default first."""
    return _entries[resolve_model_name(name)[0]].pretrained_cfgs


def model_class(name: str) -> type[nn.Module]:
    """The class the builder of ``name`` returns (its return annotation; nothing is built)."""
    return _entries[resolve_model_name(name)[0]].model_cls


def model_family(name: str) -> ModelFamily:
    """The family record of ``name``'s network class: the family's name and the BibTeX entries to cite."""
    return model_class(name).family


def get_pretrained_cfg(name: str) -> PretrainedCfg | None:
    """The pretrained config of ``arch.tag``, or of the architecture's default tag; None if it has no weights."""
    arch, tag = resolve_model_name(name)
    cfgs = _entries[arch].pretrained_cfgs
    if not cfgs:
        return None
    if tag is None:
        return cfgs[0]
    return next(c for c in cfgs if c.tag == tag)
