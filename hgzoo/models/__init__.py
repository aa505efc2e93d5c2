"""Every architecture family; importing this registers all models.

Each family file reads in the same order: its blocks; ``PADDLE_KEY_MAP`` (how PaddleClas's state-dict keys
become ours; ResNet-vd's depends on the depths, so ``make_paddle_key_map``); the model class, a
:class:`~hgzoo.models._base.ClassifierModel` whose ``_init_weights`` is PaddleClas's initialization;
``VARIANTS`` (frozen ``VariantCfg`` s) and ``_create(name, **kwargs)``; the pretrained configurations
(:func:`~hgzoo.pretrained.paddle_cfg`); the registered builders.
"""
from . import hrnet, pphgnet, pplcnetv2, resnet_vd  # noqa: F401
