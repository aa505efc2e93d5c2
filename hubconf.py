"""torch.hub entry points: one per hgzoo architecture.

    model = torch.hub.load("path/to/hgzoo", "pphgnet_small", source="local", pretrained=True)
    model = torch.hub.load("OWNER/hgzoo", "pphgnet_small", pretrained=True)     # a GitHub repository
    torch.hub.list("OWNER/hgzoo")                                                # every architecture (GitHub only)

Each entry is ``hgzoo.create_model(name, pretrained=pretrained, **kwargs)``: any keyword that ``create_model``
takes works (``num_classes``, ``features_only``, ``pretrained_file``, ...), and the weights come from hgzoo's
resolver (Hugging Face Hub, the local cache, the official PaddleClas URL).
"""
from __future__ import annotations

from typing import Any, Callable

# The packages hgzoo's import and weight loading need (torch.hub checks that each one is importable).
dependencies = ["torch", "torchvision", "numpy", "safetensors", "huggingface_hub", "filelock", "tqdm", "yaml"]

import hgzoo  # noqa: E402  (after `dependencies`, which torch.hub reads first)
from hgzoo.registry import model_entrypoint  # noqa: E402


def _entry(name: str) -> Callable[..., Any]:
    def entry(pretrained: bool = False, **kwargs: Any):
        return hgzoo.create_model(name, pretrained=pretrained, **kwargs)

    builder = model_entrypoint(name)
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (f"{builder.__doc__}\n\nhgzoo.create_model({name!r}, pretrained=pretrained, **kwargs); "
                     f"pretrained=True loads {hgzoo.get_pretrained_cfg(name).name}.")
    return entry


for _name in hgzoo.list_models():
    globals()[_name] = _entry(_name)
del _name
