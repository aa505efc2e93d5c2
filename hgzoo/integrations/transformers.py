"""hgzoo's backbones inside transformers' detectors (D-FINE, DEIMv2, RT-DETR, RT-DETRv2): the config of
transformers' backbone class that builds the same network as an hgzoo architecture. The key maps between the two
are data in :mod:`hgzoo.convert.transformers_detectors`; nothing here imports transformers."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..convert.transformers_detectors import _meta_model
from ..models.pphgnet import VARIANTS
from ..models.resnet_vd import Bottleneck, ResNetVd

__all__ = ["hf_backbone_config"]


def hf_backbone_config(arch: str, out_indices: Sequence[int] = (1, 2, 3, 4)) -> tuple[str, dict[str, Any]]:
    """transformers' config class for hgzoo's ``arch`` (``"HGNetV2Config"`` or ``"RTDetrResNetConfig"``) and its
    arguments, so that ``getattr(transformers, name)(**kwargs)`` builds the same network (hgzoo does not import
    transformers). ``out_indices``: transformers' levels, 0 the stem and 1-4 the stages (its D-FINE uses 2, 3, 4).
    """
    model = _meta_model(arch)  # checks that transformers has a counterpart
    if isinstance(model, ResNetVd):
        bottleneck = isinstance(model.stages[0][0], Bottleneck)
        widths = [s[0].conv1.conv.out_channels * (4 if bottleneck else 1) for s in model.stages]
        return "RTDetrResNetConfig", {
            "layer_type": "bottleneck" if bottleneck else "basic", "embedding_size": 64, "hidden_sizes": widths,
            "depths": [len(s) for s in model.stages], "out_indices": list(out_indices)}
    v = VARIANTS[arch]
    stages = v.stages
    return "HGNetV2Config", {
        "stem_channels": [3, *v.stem_chs], "embedding_size": v.stem_chs[-1],
        "stage_in_channels": [s.in_chs for s in stages], "stage_mid_channels": [s.mid_chs for s in stages],
        "stage_out_channels": [s.out_chs for s in stages], "hidden_sizes": [s.out_chs for s in stages],
        "stage_num_blocks": [s.depth for s in stages], "depths": [s.depth for s in stages],
        "stage_downsample": [s.downsample for s in stages], "stage_light_block": [s.light_block for s in stages],
        "stage_kernel_size": [s.kernel_size for s in stages], "stage_numb_of_layers": [s.layer_num for s in stages],
        "use_learnable_affine_block": v.use_lab, "out_indices": list(out_indices)}
