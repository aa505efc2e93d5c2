"""Every architecture family; importing this registers all models.

Each family file reads in the same order, as timm's ``hgnet.py``:

1. the family record(s) (:class:`~hgzoo._registry.ModelFamily`: the name and citations a model card uses);
2. its blocks;
3. ``PADDLE_KEY_MAP`` (how PaddleClas's state-dict keys become ours; ResNet-vd's depends on the depths, so
   ``make_paddle_key_map``) and ``TIMM_KEY_MAP``;
4. the network, a :class:`~hgzoo.models._base.ClassifierModel` whose class attributes name its ``family`` and
   ``paddle_init`` (PaddleClas's initializers, a :class:`~hgzoo.layers.PaddleInit`, which the base class's
   ``_init_weights`` applies);
5. ``VARIANTS`` (frozen ``VariantCfg`` s) and ``_create(name, **kwargs)``;
6. one weights table, ``default_cfgs = generate_default_cfgs({"arch.tag": paddle_cfg(...) | timm_cfg(...)})``
   (:mod:`hgzoo.pretrained`): an architecture's first tag is its default;
7. the builders: ``@register_model(paddle_name, default_cfgs)`` over an explicit signature and one line,
   ``return _create("arch", **locals())``. Registration checks the name is new, the table has its weights and
   the returned class has a family record.
"""
from . import hrnet, pphgnet, pplcnetv2, resnet_vd  # noqa: F401
