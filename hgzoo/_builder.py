"""Build a model from its registered name, and load weights into it."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ._registry import get_pretrained_cfg, model_entrypoint, resolve_model_name
from .convert.paddle import CorruptCheckpointError, convert_paddle_state_dict, load_pdparams

__all__ = ["create_model", "load_checkpoint", "read_checkpoint"]


def create_model(
    model_name: str,
    pretrained: bool = False,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    pretrained_file: str | os.PathLike | None = None,
    **kwargs,
) -> nn.Module:
    """Build ``model_name`` (e.g. ``"pphgnet_small"``, ``"PPHGNet_small"``, ``"pphgnet_small.ssld_in1k"``).

    Args:
        pretrained: load the weights of the tag (or the default tag). Until the Hub resolver lands,
            this needs ``pretrained_file``.
        num_classes: classifier outputs; 0 gives a model without fc. With weights for another class
            count, the classifier is re-initialised, with a warning.
        in_chans: input channels; pretrained RGB stem weights are adapted.
        pretrained_file: a ``.pdparams``, ``.safetensors`` or ``.pth`` file to load (implies pretrained).
        **kwargs: the model's own arguments (``drop_rate``, ``drop_path_rate``, ...). Unknown ones raise
            ``TypeError`` naming them.
    """
    arch, tag = resolve_model_name(model_name)
    try:
        model = model_entrypoint(arch)(num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as e:
        raise TypeError(f"create_model({model_name!r}): {e}") from None
    model.pretrained_cfg = get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
    if pretrained_file is not None:
        load_checkpoint(model, pretrained_file)
    elif pretrained:
        raise RuntimeError(
            f"pretrained=True for {model_name!r}: automatic download is not available in this version. "
            "Pass pretrained_file=PATH with a PaddleClas .pdparams (official or your own), or a "
            "converted .safetensors / .pth file."
        )
    return model


def read_checkpoint(path: str | os.PathLike, model: nn.Module) -> dict[str, torch.Tensor]:
    """Read ``path`` into a state dict with ``model``'s keys: ``.pdparams`` are converted, others loaded as is."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".pdparams":
        return convert_paddle_state_dict(load_pdparams(path), model)
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise CorruptCheckpointError(f"{path} is not a readable safetensors file ({e})") from e
    if suffix in (".pth", ".pt", ".bin"):
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CorruptCheckpointError(f"{path} is not a readable PyTorch checkpoint ({e})") from e
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(sd, dict) and isinstance(sd.get(key), dict):
                sd = sd[key]
                break
        return sd
    raise ValueError(f"{path}: unknown checkpoint format {suffix!r}; use .pdparams, .safetensors or .pth")


def _adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """RGB stem weights for ``in_chans`` inputs: summed for 1 channel, tiled and rescaled otherwise."""
    if in_chans == 1:
        return weight.sum(1, keepdim=True)
    reps = -(-in_chans // weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a checkpoint into ``model``, adapting the classifier and the stem when they differ."""
    sd = read_checkpoint(path, model)
    own = model.state_dict()
    stem = f"{model.first_conv}.weight"
    if stem in sd and stem in own and sd[stem].shape[1] != own[stem].shape[1]:
        sd[stem] = _adapt_input_conv(sd[stem], own[stem].shape[1])
    fc_keys = [k for k in ("head.fc.weight", "head.fc.bias") if k in sd]
    if fc_keys and any(k not in own or own[k].shape != sd[k].shape for k in fc_keys):
        warnings.warn(
            f"{path}: classifier has {sd['head.fc.weight'].shape[0]} classes, the model {model.num_classes}; "
            "the classifier is re-initialised and must be trained.",
            stacklevel=3,
        )
        for k in fc_keys:
            sd.pop(k)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if unexpected or set(missing) - {k for k in own if k.startswith("head.fc.")}:
            raise ValueError(f"{path}: missing keys {missing}, unexpected keys {unexpected}")
        return
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        from .convert.paddle import CheckpointMismatchError, _mismatch_report

        raise CheckpointMismatchError(_mismatch_report(type(model).__name__, missing, unexpected, []))
