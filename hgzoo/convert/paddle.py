"""Convert Paddle state dicts (``.pdparams``, read by the safe reader in :mod:`hgzoo._files`) to hgzoo's keys."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._files import CheckpointMismatchError, CorruptCheckpointError, UnsafePickleError, load_pdparams

__all__ = [
    "load_pdparams", "convert_paddle_state_dict", "UnsafePickleError", "CorruptCheckpointError",
    "CheckpointMismatchError",
]


def _owner(model: nn.Module, key: str) -> nn.Module:
    return model.get_submodule(key.rpartition(".")[0]) if "." in key else model


def convert_paddle_state_dict(paddle_sd: dict[str, np.ndarray], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map a Paddle state dict onto ``model``'s keys with the family's ``paddle_key_map``.

    Renames BN statistics, transposes Linear weights (Paddle stores ``[in, out]``), turns Paddle Linear
    weights into 1x1 conv weights where we use a conv, and discards the family's Paddle-only keys.
    Raises :class:`CheckpointMismatchError` listing every missing, unexpected and mismatched key.
    """
    key_map = model.paddle_key_map
    target = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    out: dict[str, torch.Tensor] = {}
    unexpected, mismatched, seen = [], [], {}
    bad_keys = set()
    for pkey, arr in paddle_sd.items():
        if key_map.is_dropped(pkey):
            continue
        key = key_map.rename(pkey)
        if key in seen:
            raise CheckpointMismatchError(f"Paddle keys {seen[key]!r} and {pkey!r} both map to {key!r}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
        if key in ("head.fc.weight", "head.fc.bias") and t.ndim == (2 if key.endswith("weight") else 1):
            # Kept whatever its class count (Paddle's Linear weight is [in, out]): load_checkpoint re-initialises
            # a classifier that does not fit the model, with a warning.
            seen[key] = pkey
            out[key] = (t.t() if t.ndim == 2 else t).float().contiguous()
            continue
        if key not in target:
            unexpected.append(pkey if key == pkey else f"{pkey} (as {key})")
            continue
        seen[key] = pkey
        want = tuple(target[key].shape)
        owner = _owner(model, key)
        if key.endswith(".weight") and isinstance(owner, nn.Linear) and t.ndim == 2:
            t = t.t()
        elif key.endswith(".weight") and isinstance(owner, nn.Conv2d) and t.ndim == 2 and want[2:] == (1, 1):
            t = t.t().reshape(want)
        stem = key == f"{getattr(model, 'first_conv', '')}.weight"
        if stem and t.ndim == 4 and t.shape[0] == want[0] and t.shape[2:] == want[2:]:
            want = tuple(t.shape)  # another in_chans: the loader adapts the RGB stem weights
        if tuple(t.shape) != want:
            mismatched.append(f"{pkey}: checkpoint {tuple(arr.shape)} vs model {want}")
            bad_keys.add(key)
            continue
        out[key] = t.to(target[key].dtype).contiguous()
    # A checkpoint without any classifier is a backbone (ResNet50_vd_10w): the loader keeps a fresh one, and says so.
    headless = {"head.fc.weight", "head.fc.bias"} if not any(k.startswith("head.fc.") for k in out) else set()
    missing = sorted(set(target) - set(out) - bad_keys - headless)
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(_mismatch_report(type(model).__name__, missing, unexpected, mismatched))
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.zeros_like(v)
    return out


def _mismatch_report(arch: str, missing: list, unexpected: list, mismatched: list, limit: int = 6) -> str:
    lines = [f"The checkpoint does not fit {arch}. Is it a checkpoint of this architecture and variant?"]
    for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
            lines.append(f"  {title} ({len(items)}): {shown}")
    return "\n".join(lines)
