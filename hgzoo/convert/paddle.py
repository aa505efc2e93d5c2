"""Read Paddle ``.pdparams`` checkpoints safely and convert them to hgzoo state dicts."""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "load_pdparams", "convert_paddle_state_dict", "UnsafePickleError", "CorruptCheckpointError",
    "CheckpointMismatchError",
]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for something other than numpy array reconstruction."""


class CorruptCheckpointError(ValueError):
    """The file is truncated or not a Paddle checkpoint."""


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the model: missing, unexpected or mismatched keys."""


# The only callables a .pdparams pickle may name: numpy array and dtype reconstruction.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"refused to load {module}.{name}: a .pdparams file may only hold numpy arrays. "
                "This file is not a plain Paddle checkpoint; do not load it from an untrusted source."
            )
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UnsafePickleError("refused a persistent id: a .pdparams file holds no external references")


def _check_array(key: str, value: object, path: str) -> np.ndarray:
    if isinstance(value, np.ndarray) and value.dtype != object:
        return value
    raise CorruptCheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a numeric numpy array")


def load_pdparams(path: str | os.PathLike | bytes) -> dict[str, np.ndarray]:
    """Load a ``.pdparams`` file (a pickle of numpy arrays) without Paddle and without running code.

    Paddle's bookkeeping entry ``StructuredToParameterName@@`` is dropped. Anything but numeric
    numpy arrays is refused before it is built.
    """
    if isinstance(path, bytes):
        data, name = path, "<bytes>"
    else:
        name = str(path)
        data = Path(path).read_bytes()
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated or garbage files fail in many ways inside pickle
        raise CorruptCheckpointError(
            f"{name} is not a readable .pdparams checkpoint (truncated or corrupt: {type(e).__name__}: {e}). "
            "Download or export it again."
        ) from e
    if not isinstance(obj, dict):
        raise CorruptCheckpointError(f"{name}: expected a dict of arrays, found {type(obj).__name__}")
    obj.pop("StructuredToParameterName@@", None)
    if any("UnpackBigParamInfor@@" in str(k) for k in obj):
        raise CorruptCheckpointError(f"{name}: split big-parameter checkpoints are not supported")
    return {str(k): _check_array(k, v, name) for k, v in obj.items()}


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
        if key not in target:
            unexpected.append(pkey if key == pkey else f"{pkey} (as {key})")
            continue
        if key in seen:
            raise CheckpointMismatchError(f"Paddle keys {seen[key]!r} and {pkey!r} both map to {key!r}")
        seen[key] = pkey
        t = torch.from_numpy(np.ascontiguousarray(arr))
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
    missing = sorted(set(target) - set(out) - bad_keys)
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(_mismatch_report(type(model).__name__, missing, unexpected, mismatched))
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.zeros_like(v)
    return out


def _mismatch_report(arch: str, missing: list, unexpected: list, mismatched: list, limit: int = 20) -> str:
    lines = [f"The checkpoint does not fit {arch}. Is it a checkpoint of this architecture and variant?"]
    for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
            lines.append(f"  {title} ({len(items)}): {shown}")
    return "\n".join(lines)
