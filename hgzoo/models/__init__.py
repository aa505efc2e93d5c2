"""Every architecture family; importing this registers all models."""
from . import hrnet, pphgnet, pplcnetv2, resnet_vd  # noqa: F401
