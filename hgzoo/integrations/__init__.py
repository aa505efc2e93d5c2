"""hgzoo's backbones inside other people's training code, under their class names, arguments and module names.

* :mod:`hgzoo.integrations.rtdetr`: ``HGNetv2`` (D-FINE / DEIM's) and ``PResNet`` (RT-DETR v1/v2's and D-FINE's),
  and ``HGZooBackbone`` (every other hgzoo backbone through the same interface);
* :mod:`hgzoo.integrations.rtdetrv2`: RT-DETRv2's ``HGNetv2``.
* :mod:`hgzoo.integrations.transformers`: the config of transformers' backbone class for an hgzoo architecture.

Nothing here is imported by ``import hgzoo``; see docs/detectors.md.
"""
