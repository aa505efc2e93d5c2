"""Declarative descriptions of how other layouts' state-dict keys become ours: PaddleClas's and timm's."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

__all__ = ["PaddleKeyMap", "TimmKeyMap", "TimmArch"]

# Applied to every family after its own renames.
_COMMON = ((r"\._mean$", ".running_mean"), (r"\._variance$", ".running_var"))


@dataclass(frozen=True)
class PaddleKeyMap:
    """``renames``: ordered (regex, replacement) pairs applied to each Paddle key with ``re.sub``.
    ``drop``: regexes of Paddle-only keys that have no counterpart here and are knowingly discarded.
    """

    renames: tuple[tuple[str, str], ...] = ()
    drop: tuple[str, ...] = ()

    def is_dropped(self, key: str) -> bool:
        return any(re.search(p, key) for p in self.drop)

    def rename(self, key: str) -> str:
        for pattern, repl in self.renames + _COMMON:
            key = re.sub(pattern, repl, key)
        return key


# A template is literal text with placeholders: {name} matches a number, {name:a|b} one of the words; a leading "^"
# or trailing "$" anchors it. The same template matches on one side and is filled in on the other.
_PLACEHOLDER = re.compile(r"\{(\w+)(?::([\w|]+))?\}")


def _compile(template: str) -> re.Pattern:
    start, end = template.startswith("^"), template.endswith("$")
    body = template[int(start): len(template) - int(end)]
    parts, pos = [], 0
    for m in _PLACEHOLDER.finditer(body):
        parts.append(re.escape(body[pos:m.start()]))
        parts.append(f"(?P<{m.group(1)}>{m.group(2) or r'[0-9]+'})")
        pos = m.end()
    parts.append(re.escape(body[pos:]))
    return re.compile(("^" if start else "") + "".join(parts) + ("$" if end else ""))


def _fill(template: str, values: dict[str, str]) -> str:
    body = template[int(template.startswith("^")): len(template) - int(template.endswith("$"))]
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], body)


@dataclass(frozen=True)
class TimmArch:
    """One timm architecture that is an hgzoo architecture, and what its state dict lacks or adds.

    ``head_conv_bias``: timm's model has conv biases (``TimmKeyMap.bias_folds``) that hgzoo folds into the next BN
    (HRNet's Microsoft-trained ``hrnet_w*``). ``identity_shortcut``: timm's model has no projection in the first
    block where PaddleClas has one (``TimmKeyMap.identity_shortcuts``; ResNet18/34-d): hgzoo fills in an exact
    identity, and refuses to export a projection that is not one.
    """

    timm: str
    hgzoo: str
    head_conv_bias: bool = False
    identity_shortcut: bool = False


@dataclass(frozen=True)
class TimmKeyMap:
    """How one family's timm state dict becomes hgzoo's, and back.

    ``renames``: ordered (timm template, hgzoo template) pairs (see ``_PLACEHOLDER``): applied in order timm → hgzoo,
    and swapped in reverse order hgzoo → timm. ``bias_folds``: (hgzoo conv-bias key, hgzoo BN prefix) templates of
    conv biases hgzoo does not have: ``BN(conv(x) + b)`` is ``BN'(conv(x))`` with ``running_mean' = running_mean - b``.
    ``identity_shortcuts``: hgzoo conv-BN prefixes filled with an exact identity when a timm state dict lacks them.
    ``archs``: the timm architectures of this family; ``refused``: (timm name, reason) of same-named timm networks
    that are not the hgzoo one.
    """

    renames: tuple[tuple[str, str], ...]
    bias_folds: tuple[tuple[str, str], ...] = ()
    identity_shortcuts: tuple[str, ...] = ()
    archs: tuple[TimmArch, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()

    @cached_property
    def _forward(self) -> list[tuple[re.Pattern, str]]:
        return [(_compile(t), h) for t, h in self.renames]

    @cached_property
    def _backward(self) -> list[tuple[re.Pattern, str]]:
        return [(_compile(h), t) for t, h in reversed(self.renames)]

    @staticmethod
    def _apply(rules: list[tuple[re.Pattern, str]], key: str) -> str:
        for pattern, template in rules:
            key = pattern.sub(lambda m, t=template: _fill(t, m.groupdict()), key)
        return key

    def to_hgzoo(self, key: str) -> str:
        return self._apply(self._forward, key)

    def to_timm(self, key: str) -> str:
        return self._apply(self._backward, key)

    def fold_target(self, key: str) -> str | None:
        """The hgzoo BN prefix a conv bias ``key`` (hgzoo naming) folds into, or None."""
        for bias, bn in self.bias_folds:
            m = _compile(bias).search(key)
            if m:
                return _fill(bn, m.groupdict())
        return None

    def arch(self, timm_name: str) -> TimmArch | None:
        return next((a for a in self.archs if a.timm == timm_name), None)

    def refusal(self, timm_name: str) -> str | None:
        return dict(self.refused).get(timm_name)
