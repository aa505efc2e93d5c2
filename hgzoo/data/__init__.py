"""Data: PaddleClas's preprocessing, datasets (ImageFolder, PaddleClas label lists, Fashion-MNIST), loaders.

``create_transform(model.pretrained_cfg)`` reproduces a weight tag's PaddleClas evaluation preprocessing;
see :mod:`hgzoo.data.transforms` for how each PaddleClas op is matched, and where and by how much we differ.
"""
from .datasets import (
    FASHION_MNIST_DIR,
    IMAGE_EXTENSIONS,
    FashionMNIST,
    ImageFolder,
    LabelListDataset,
    LabelListError,
    imagenet_class_names,
    read_class_names,
    scan_images,
)
from .loader import (
    Batch,
    GuardedDataset,
    LoaderClock,
    available_cores,
    create_eval_loader,
    iterate_batches,
    split_cores,
)
from .timm_config import resolve_model_data_config
from .transforms import (
    ConvertChannels,
    ImageDecodeError,
    Normalizer,
    PaddleCenterCrop,
    PaddleRandCrop,
    ResizeShort,
    TimmRandCrop,
    create_transform,
    decode_bytes,
    max_image_bytes,
    max_image_pixels,
    read_image,
    resolve_data_config,
    transform_file,
)

__all__ = [
    "create_transform", "resolve_data_config", "resolve_model_data_config", "read_image", "max_image_pixels",
    "max_image_bytes", "transform_file", "decode_bytes", "ImageDecodeError", "ResizeShort",
    "PaddleCenterCrop", "PaddleRandCrop", "TimmRandCrop", "Normalizer", "ConvertChannels",
    "ImageFolder", "LabelListDataset", "LabelListError", "FashionMNIST", "FASHION_MNIST_DIR", "IMAGE_EXTENSIONS",
    "imagenet_class_names", "read_class_names", "scan_images",
    "GuardedDataset", "Batch", "create_eval_loader", "iterate_batches", "LoaderClock", "split_cores", "available_cores",
]
