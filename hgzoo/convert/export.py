"""Write converted weights. The writers live in :mod:`hgzoo.publish` (one writer for converted, trained and
in-memory models); these names stay for the converter and the weights cache."""
from __future__ import annotations

from ..publish import write_hub_folder, write_safetensors

__all__ = ["write_safetensors", "write_hub_folder"]
