"""Classify image files, like ``paddleclas --model_name=... --infer_imgs=...``, on torch or on the deployed file.

From Python::

    hgzoo.predict("pphgnet_small", ["cat.jpg", "photos/"], topk=5)
    # [{"file_name": "cat.jpg", "class_ids": [281, ...], "scores": [0.8123, ...], "label_names": [...]}, ...]
    hgzoo.predict(checkpoint="runs/x/best.pt", images="photos/")            # its own classes and class names
    hgzoo.predict(checkpoint="runs/x/best.pt", images="photos/", backend="openvino", precision="int8",
                  calibration="calib/")                                     # what the int8 file predicts

``hgzoo.predict`` is :func:`predict`; ``python -m hgzoo predict`` (:mod:`hgzoo.cli.predict`) is its command line.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from .data import IMAGE_EXTENSIONS, imagenet_class_names, read_class_names, read_image, scan_images
from .data.transforms import ImageDecodeError

__all__ = ["predict", "predictions_and_runtime", "list_image_files"]

ImageInput = str | os.PathLike


def list_image_files(inputs: ImageInput | Iterable[ImageInput]) -> list[str]:
    """Expand files and folders (recursively, sorted, by image extension) into image paths, in order."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = scan_images(p)
            if not found:
                raise FileNotFoundError(f"no image file ({', '.join(IMAGE_EXTENSIONS)}) under {p}")
            files += found
        elif p.exists():
            files.append(str(p))
        else:
            raise FileNotFoundError(f"{p} does not exist")
    return files


def _class_names(num_classes: int | None, class_names: Sequence[str] | str | os.PathLike | None,
                 own: Sequence[str] | None) -> list[str] | None:
    """Names in class order: given ones, else the checkpoint's own, else ImageNet-1k's for 1000 classes."""
    if isinstance(class_names, (str, os.PathLike)):
        class_names = read_class_names(class_names)
    if class_names is None:
        class_names = own
    if class_names is None and num_classes == 1000:
        class_names = imagenet_class_names()
    if class_names is not None and num_classes is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {num_classes} classes")
    return list(class_names) if class_names is not None else None


class _Files(Dataset):
    """Image files, preprocessed to uint8 crops; the index is the target (to put results back in order)."""

    def __init__(self, files: list[str], transform) -> None:
        self.files, self.transform = files, transform
        self.samples = [(f, i) for i, f in enumerate(files)]  # GuardedDataset reports a bad file's index from here

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return self.transform(read_image(self.files[i])), i


def _source(model: str | nn.Module | None, checkpoint, pretrained_file, *, ema: bool, num_classes: int | None,
            in_chans: int | None, deployed) -> tuple[nn.Module | None, object]:
    """(model or None, checkpoint info or None) from what the caller gave."""
    from .checkpoint import load_model

    if checkpoint is not None and pretrained_file is not None:
        raise TypeError("pass checkpoint= or pretrained_file= (the same thing), not both")
    checkpoint = checkpoint if checkpoint is not None else pretrained_file
    if isinstance(model, nn.Module):
        if checkpoint is not None:
            raise TypeError("checkpoint= goes with a model name, not with a built model")
        return model.eval(), None
    if model is None and checkpoint is None:
        if deployed is None:
            raise TypeError("predict needs a model name, a built model, checkpoint= or deployed=")
        return None, None
    return load_model(model, checkpoint=checkpoint, num_classes=num_classes, in_chans=in_chans, ema=ema)


def _preprocessing(model: nn.Module | None, info, deployed, img_size: int | None) -> tuple[dict, int, int | None]:
    """(data config, input channels, classes) of the model, or of a deployed file alone."""
    from .checkpoint import data_config, input_channels

    if model is not None:
        return data_config(info, model, crop_size=img_size), input_channels(model), model.num_classes
    from ._registry import get_pretrained_cfg, is_model
    from .deploy.runtimes import read_meta
    from .preprocessing import resolve_preprocessing

    meta = read_meta(deployed)
    name = str(meta.get("model") or "")
    chans = int(meta.get("in_chans") or 3)
    cfg = get_pretrained_cfg(name) if is_model(name) else None
    dc = resolve_preprocessing(cfg, meta.get("data_config"), chans, crop_size=img_size)
    return dc, chans, meta.get("num_classes")


def _run(runner, files: list[str], dc: dict, in_chans: int, k: int, names: list[str] | None, batch_size: int,
         workers: int, skip_bad_images: bool, device) -> list[dict]:
    from .data import Normalizer, create_eval_loader, create_transform, iterate_batches

    dataset = _Files(files, create_transform(dc, normalize=False, in_chans=in_chans))
    loader = create_eval_loader(dataset, batch_size=batch_size, workers=min(workers, len(files) // batch_size))
    results: list[dict] = [{} for _ in files]
    for batch in iterate_batches(loader, Normalizer(dc["mean"], dc["std"]), device):
        for err, i in zip(batch.errors, batch.error_targets):
            if not skip_bad_images:
                raise ImageDecodeError(err)
            results[i] = {"file_name": files[i], "error": err}
        if batch.images is None:
            continue
        probs = runner(batch.images).float().softmax(dim=1)
        scores, ids = probs.topk(min(k, probs.shape[1]), dim=1)
        for i, s, c in zip(batch.targets.tolist(), scores.tolist(), ids.tolist()):
            results[i] = {"file_name": files[i], "class_ids": c, "scores": [round(v, 5) for v in s]}
            if names is not None:
                results[i]["label_names"] = [names[j] for j in c]
    return results


def predict(
    model: str | nn.Module | None = None,
    images: ImageInput | Iterable[ImageInput] = (),
    *,
    topk: int = 5,
    checkpoint: str | os.PathLike | None = None,
    pretrained_file: str | os.PathLike | None = None,
    ema: bool = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
    img_size: int | None = None,
    class_names: Sequence[str] | str | os.PathLike | None = None,
    backend: str | None = None,
    precision: str | None = None,
    calibration: object = None,
    deployed: str | os.PathLike | None = None,
    save_deployed: str | os.PathLike | None = None,
    batch_size: int = 16,
    workers: int | None = None,
    threads: int | None = None,
    device: str | torch.device = "cpu",
    skip_bad_images: bool = False,
) -> list[dict]:
    """Top-``topk`` classes of each image.

    Args:
        model: a model name (``"pphgnet_small"``, ``"PPHGNet_small.ssld_in1k"``), built with its published
            weights; or a model, used as it is (in eval mode); or None with ``checkpoint`` or ``deployed``.
        checkpoint: weights to load (``pretrained_file`` is the same): a train.py checkpoint brings its model,
            classes, channels, preprocessing and class names (:func:`hgzoo.checkpoint.model_from_checkpoint`);
            ``ema`` takes its EMA weights.
        images: image files and folders (searched recursively), one or a list.
        class_names: names in class order, or a PaddleClas ``id name`` file; default: the checkpoint's own, else
            ImageNet-1k's for 1000-class models, none otherwise.
        backend, precision, calibration, deployed, save_deployed: run on ``"eager"`` (default), ``"compile"``,
            ``"onnxruntime"`` or ``"openvino"`` at ``"fp32"``, ``"bf16"`` or ``"int8"`` (int8: ``calibration``
            images), exported and verified now (kept at ``save_deployed``), or the exported file ``deployed``.
        skip_bad_images: report an image that cannot be decoded as ``{"file_name", "error"}`` instead of
            raising :class:`~hgzoo.data.ImageDecodeError`.

    Returns:
        One dict per image, in input order, with PaddleClas's keys: ``file_name``, ``class_ids``, ``scores``
        (softmax probabilities) and ``label_names`` (when names are known).
    """
    return predictions_and_runtime(
        model, images, topk=topk, checkpoint=checkpoint, pretrained_file=pretrained_file, ema=ema,
        num_classes=num_classes, in_chans=in_chans, img_size=img_size, class_names=class_names, backend=backend,
        precision=precision, calibration=calibration, deployed=deployed, save_deployed=save_deployed,
        batch_size=batch_size, workers=workers, threads=threads, device=device, skip_bad_images=skip_bad_images)[0]


def predictions_and_runtime(model, images, *, topk, checkpoint, pretrained_file, ema, num_classes, in_chans, img_size,
                         class_names, backend, precision, calibration, deployed, save_deployed, batch_size, workers,
                         threads, device, skip_bad_images) -> tuple[list[dict], dict]:
    """:func:`predict`, and what ran (the runner's description) for the command line's JSON."""
    from .data import split_cores
    from .deploy.runner import BACKENDS, check_request, prepare, resolve_deployed

    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk must be a whole number >= 1, got {topk!r}")
    if deployed is not None:
        backend = resolve_deployed(deployed, backend)
    elif backend is not None or precision is not None:
        check_request(backend or "eager", precision or "fp32", calibration)
    files = list_image_files(images)
    net, info = _source(model, checkpoint, pretrained_file, ema=ema, num_classes=num_classes, in_chans=in_chans,
                        deployed=deployed)
    dc, chans, classes = _preprocessing(net, info, deployed, img_size)
    names = _class_names(classes, class_names, info.class_names if info is not None else None)
    workers, threads = split_cores(workers, threads)
    runner = prepare(net, backend, precision, data_config=dc, calibration=calibration, deployed=deployed,
                     save_to=save_deployed, threads=threads, device=device)
    try:
        in_torch = BACKENDS[runner.backend].format is None  # eager, reparam, compile, torchscript: not a runtime
        if in_torch:
            torch.set_num_threads(threads)
        run_device = device if in_torch else "cpu"
        results = _run(runner, files, dc, chans, topk, names, batch_size, workers, skip_bad_images, run_device)
    finally:
        runner.close()
    return results, runner.describe()
