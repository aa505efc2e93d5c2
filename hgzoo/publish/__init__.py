"""Publishing: Hub folders (weights, ``config.json`` in timm's Hub format, a model card) from any hgzoo model, a
train.py checkpoint, a PaddleClas checkpoint or a timm one, folders timm loads, and their upload.

:mod:`hgzoo.publish.hub_folder` writes the folders and cards; :mod:`hgzoo.publish.paddle_folders` and
:mod:`hgzoo.publish.timm_folders` turn other layouts' files into them with :mod:`hgzoo.convert`'s key maps;
:mod:`hgzoo.timm_compat` puts hgzoo's models in timm's registry, so that timm loads what is published here.
"""
from .hub_folder import (
    Metrics,
    Provenance,
    from_train_checkpoint,
    hub_config,
    model_card,
    push_to_hub,
    save_pretrained,
    upload_folder,
    write_hub_folder,
    write_safetensors,
)

__all__ = ["Metrics", "Provenance", "save_pretrained", "push_to_hub", "upload_folder", "write_hub_folder",
           "write_safetensors", "hub_config", "model_card", "from_train_checkpoint"]
