"""Declarative description of how a family's Paddle state-dict keys become ours."""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PaddleKeyMap"]

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
