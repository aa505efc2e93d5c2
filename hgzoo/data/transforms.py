"""Image decoding and PaddleClas's preprocessing, on torchvision (``io.decode_image``, ``transforms.v2``).

PaddleClas evaluates every model with the same five ops (``paddleclas.deploy.python.preprocess``):
``DecodeImage(to_rgb=True)``, ``ResizeImage(resize_short, interpolation, backend)``, ``CropImage(224)``,
``NormalizeImage(scale=1/255, mean, std)`` and ``ToCHWImage``. :func:`read_image` and
:func:`create_transform` reproduce them:

* **Decoding** is ``cv2.imdecode(bytes, IMREAD_COLOR)`` in PaddleClas. We decode with
  ``torchvision.io.decode_image`` and get the same pixels: EXIF orientation applied (IMREAD_COLOR applies
  it too), grayscale replicated to three channels, alpha dropped (not composited over a background),
  16-bit PNGs reduced to 8 bits by their high byte, and CMYK JPEGs converted with OpenCV's formula
  ``k - ((255 - c) * k >> 8)`` (torchvision's and PIL's own conversions are one level off). Formats
  torchvision cannot decode (BMP, TIFF, ...) go through PIL. A file that cannot be decoded raises
  :class:`ImageDecodeError` naming it (PaddleClas fails on ``None.shape``).
* **Resizing** scales the short side to ``resize_short`` with PaddleClas's arithmetic (the other side is
  ``round(long * short / min(h, w))``, where torchvision's ``Resize(int)`` truncates). OpenCV's bilinear
  and bicubic (``backend="cv2"``) do not antialias: they are torch's interpolation with
  ``antialias=False`` (same kernels: bilinear, and bicubic with a = -0.75). Bilinear runs on uint8 and
  is within one level of OpenCV's fixed-point result (about a third of a level on average: rounding it
  in float would halve that, at twice the cost); bicubic runs in float and matches OpenCV exactly.
  PIL's (``backend="pil"``, the PP-HGNet configs) antialias: torch's uint8 antialiased kernels follow
  Pillow's algorithm (a = -0.5 for bicubic), also to within one level, and run several times faster.
  Also supported: cv2 ``nearest`` (exact) and PIL ``nearest`` (Pillow computes it in fixed point, so a
  row or column is now and then taken from its neighbour), ``box``, ``hamming`` and ``lanczos`` (through
  PIL itself). OpenCV's ``area`` and ``lanczos`` are not: no PaddleClas evaluation config uses them.
* **Cropping** takes the offset ``(size - crop) // 2`` (torchvision's ``CenterCrop`` rounds it instead).
* **timm's weights** (``size_rounding="torchvision"`` in their :class:`~hgzoo.PretrainedCfg`) are evaluated as timm
  does: torchvision's ``Resize(int)`` on a PIL image (the long side truncated, ``int(short * long / min(h, w))``)
  and ``CenterCrop`` (offset ``round((size - crop) / 2)``).
* **Channels**: a model with other than 3 input channels gets its images converted first, by
  :class:`ConvertChannels` (for 1 channel: PIL's ``convert("L")``, bit for bit, as timm's
  ``--input-img-mode L``; a grayscale file comes back unchanged). PaddleClas has no such op.
"""
from __future__ import annotations

import io
import math
import os
import random
import re
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

try:
    from torchvision.io import ImageReadMode, decode_image
except ImportError:  # a torchvision without its (deprecated) decoders: PIL decodes everything
    ImageReadMode = decode_image = None
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from ..pretrained import IMAGENET_MEAN, IMAGENET_STD, PretrainedCfg


def _quiet_decoder(decode: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``decode`` without the DeprecationWarning torchvision 0.29 gives on every call of its decoders (deprecated for
    TorchCodec; they are libjpeg-turbo and libpng, decode exactly as OpenCV does, and are what this module is built
    on). Silenced for that call only: the process's own warning filters are left alone."""
    def call(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                                    category=DeprecationWarning)
            return decode(*args, **kwargs)
    return call


if decode_image is not None:
    decode_image = _quiet_decoder(decode_image)

__all__ = [
    "ImageDecodeError", "read_image", "decode_bytes", "ResizeShort", "PaddleCenterCrop", "PaddleRandCrop",
    "TimmRandCrop", "ConvertChannels", "create_transform", "resolve_data_config", "Normalizer",
]

ImageSource = str | os.PathLike | bytes | bytearray | memoryview


class ImageDecodeError(ValueError):
    """An image file that cannot be read or decoded; the message and ``path`` name it."""

    def __init__(self, path: str, reason: str | None = None) -> None:
        # One argument is a whole message: how DataLoader workers re-raise an exception in the main process.
        super().__init__(path if reason is None else f"cannot decode image {path}: {reason}")
        self.path = None if reason is None else path
        self.reason = reason


_TV_PREFIX = re.compile(r"^\w+, \S+:\d+, ")  # "decode_jpeg, /path/to/decode_jpeg.cpp:171, " in torchvision's errors


def _decode_with_pil(data: bytes) -> torch.Tensor:
    """Formats torchvision does not decode (BMP, TIFF, ...): PIL, EXIF-transposed, to 8-bit RGB."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit gray: keep the high byte, as OpenCV does
            img = img.point(lambda v: v / 256).convert("L")
        rgb = img.convert("RGB")
        return F.pil_to_tensor(rgb)


def _cmyk_to_rgb(cmyk: torch.Tensor) -> torch.Tensor:
    """OpenCV's conversion of (Adobe, inverted) CMYK JPEG samples: ``k - ((255 - c) * k >> 8)``."""
    c = cmyk.to(torch.int32)
    k = c[3:]
    return (k - (((255 - c[:3]) * k) >> 8)).to(torch.uint8)


#: PIL's own default limit (``PIL.Image.MAX_IMAGE_PIXELS``): about 0.27 GB of RGB pixels.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


def max_image_pixels() -> int:
    """The largest image decoded, in pixels: ``$HGZOO_MAX_IMAGE_PIXELS`` (the ``--max-image-pixels`` flag sets
    it), default PIL's limit, 89,478,485. A larger image is refused before it is decoded."""
    text = os.environ.get("HGZOO_MAX_IMAGE_PIXELS")
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        raise ValueError(f"HGZOO_MAX_IMAGE_PIXELS={text!r} is not a number of pixels") from None
    if value <= 0:
        raise ValueError(f"HGZOO_MAX_IMAGE_PIXELS={text!r} must be positive")
    return value


def _check_pixels(data: bytes | bytearray | memoryview, name: str) -> None:
    """Refuse an image whose header declares more than :func:`max_image_pixels` pixels, before decoding it
    (a 132 KB PNG can declare 33000x33000 pixels: 3.3 GB once decoded). PIL reads only the header here."""
    from PIL import Image, UnidentifiedImageError

    limit = max_image_pixels()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
        except Image.DecompressionBombError as e:  # over twice PIL's own limit: PIL stops at the header
            if limit <= 2 * (Image.MAX_IMAGE_PIXELS or 0):
                found = re.search(r"\((\d+) pixels\)", str(e))
                count = f"{int(found.group(1)):,}" if found else f"more than {2 * Image.MAX_IMAGE_PIXELS:,}"
                raise ImageDecodeError(name, f"it declares {count} pixels, over the {limit:,}-pixel limit "
                                       "(--max-image-pixels or HGZOO_MAX_IMAGE_PIXELS raise it)") from None
            return  # the limit was raised above PIL's: the caller trusts large images
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return  # not an image PIL can size: the decoder below says what is wrong with it
    if width * height > limit:
        raise ImageDecodeError(name, f"it declares {width}x{height} = {width * height:,} pixels, over the "
                               f"{limit:,}-pixel limit (--max-image-pixels or HGZOO_MAX_IMAGE_PIXELS raise it)")


def decode_bytes(data: bytes | bytearray | memoryview, name: str = "<bytes>") -> torch.Tensor:
    """Decode an encoded image to a (3, H, W) uint8 RGB tensor, as PaddleClas's ``DecodeImage(to_rgb=True)``.

    An image over :func:`max_image_pixels` is refused (:class:`ImageDecodeError`) before it is decoded.
    """
    if len(data) == 0:
        raise ImageDecodeError(name, "the file is empty")
    _check_pixels(data, name)
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    # JPEGs are decoded as stored, so that CMYK ones can be converted exactly as OpenCV does.
    is_jpeg = bytes(data[:3]) == b"\xff\xd8\xff"
    try:
        if decode_image is None:
            raise RuntimeError("Unsupported image file")
        img = decode_image(encoded, mode=ImageReadMode.UNCHANGED if is_jpeg else ImageReadMode.RGB,
                           apply_exif_orientation=True)
    except RuntimeError as e:
        reason = _TV_PREFIX.sub("", str(e))
        if "Unsupported image file" not in reason:
            raise ImageDecodeError(name, reason) from None
        from PIL import UnidentifiedImageError

        try:
            img = _decode_with_pil(bytes(data))
        except UnidentifiedImageError:
            raise ImageDecodeError(name, "not a known image format (neither torchvision nor PIL can read it)") from None
        except Exception as pil_error:  # noqa: BLE001  (any PIL failure means "not an image we can read")
            raise ImageDecodeError(name, f"PIL cannot decode it ({type(pil_error).__name__}: {pil_error})") from None
    if img.ndim == 4:  # an animated GIF: its first frame, as OpenCV reads it
        img = img[0]
    if img.shape[0] == 1:  # grayscale JPEG
        img = img.expand(3, -1, -1)
    elif img.shape[0] == 4:  # CMYK JPEG
        img = _cmyk_to_rgb(img)
    if img.dtype == torch.uint16:  # 16-bit PNG: the high byte, like OpenCV's IMREAD_COLOR
        img = (img.to(torch.int32) >> 8).to(torch.uint8)
    return img


def read_image(source: ImageSource) -> torch.Tensor:
    """Read and decode an image file (or encoded bytes) to a (3, H, W) uint8 RGB tensor.

    Raises :class:`ImageDecodeError` (naming the file) if it cannot be decoded, ``FileNotFoundError``
    if it does not exist.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(source)
    path = os.fspath(source)
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise ImageDecodeError(path, "it is a directory") from None
    except PermissionError as e:
        raise ImageDecodeError(path, f"it cannot be read ({e.strerror})") from None
    return decode_bytes(data, path)


# (backend, PaddleClas interpolation name) → torchvision mode, antialias.
_RESIZE_MODES: dict[tuple[str, str], tuple[InterpolationMode, bool]] = {
    # OpenCV never antialiases; its nearest is floor(x * scale) (torch's legacy "nearest").
    ("cv2", "nearest"): (InterpolationMode.NEAREST, False),
    ("cv2", "bilinear"): (InterpolationMode.BILINEAR, False),
    ("cv2", "bicubic"): (InterpolationMode.BICUBIC, False),
    # Pillow always antialiases when shrinking; its nearest is floor((x + 0.5) * scale) ("nearest-exact").
    ("pil", "nearest"): (InterpolationMode.NEAREST_EXACT, False),
    ("pil", "bilinear"): (InterpolationMode.BILINEAR, True),
    ("pil", "bicubic"): (InterpolationMode.BICUBIC, True),
    ("pil", "box"): (InterpolationMode.BOX, True),
    ("pil", "hamming"): (InterpolationMode.HAMMING, True),
    ("pil", "lanczos"): (InterpolationMode.LANCZOS, True),
}
_PIL_ONLY = (InterpolationMode.BOX, InterpolationMode.HAMMING, InterpolationMode.LANCZOS)


def _resize_mode(interpolation: str, backend: str) -> tuple[InterpolationMode, bool]:
    key = (backend.lower(), interpolation.lower())
    if key not in _RESIZE_MODES:
        choices = ", ".join(sorted(i for b, i in _RESIZE_MODES if b == key[0])) or "(unknown backend)"
        raise ValueError(f"unsupported interpolation {interpolation!r} for backend {backend!r}; choose from {choices}"
                         + ("" if key[0] in ("cv2", "pil") else "; backends: cv2, pil"))
    return _RESIZE_MODES[key]


def _nearest_index(n_in: int, n_out: int, exact: bool) -> torch.Tensor:
    """The source pixel of each output pixel, in double precision as OpenCV and Pillow compute it:
    ``floor(x * scale)`` (OpenCV, ``scale = 1 / (n_out / n_in)``) or ``floor((x + 0.5) * n_in / n_out)`` (Pillow)."""
    x = torch.arange(n_out, dtype=torch.float64)
    pos = (x + 0.5) * (n_in / n_out) if exact else x * (1.0 / (n_out / n_in))
    return pos.floor_().long().clamp_(max=n_in - 1)


def _resize(img: torch.Tensor, size: tuple[int, int], mode: InterpolationMode, antialias: bool) -> torch.Tensor:
    if mode in _PIL_ONLY:  # torch has no such kernel: through PIL and back
        return F.pil_to_tensor(F.resize(F.to_pil_image(img), list(size), interpolation=mode))
    if mode in (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT):
        # torch computes the index in float32, one pixel off here and there; index in double instead.
        (h, w), (oh, ow) = _hw(img), size
        exact = mode == InterpolationMode.NEAREST_EXACT
        return img.index_select(-2, _nearest_index(h, oh, exact)).index_select(-1, _nearest_index(w, ow, exact))
    if mode == InterpolationMode.BICUBIC and not antialias and img.dtype == torch.uint8:
        # torch's uint8 bicubic kernel overflows where the cubic overshoots; in float, rounded, it equals OpenCV's.
        out = F.resize(img.float(), list(size), interpolation=mode, antialias=False)
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return F.resize(img, list(size), interpolation=mode, antialias=antialias)


def _hw(img: torch.Tensor) -> tuple[int, int]:
    return img.shape[-2], img.shape[-1]


SIZE_ROUNDINGS = ("paddle", "torchvision")


def _check_rounding(rounding: str) -> str:
    if rounding not in SIZE_ROUNDINGS:
        raise ValueError(f"size_rounding must be one of {SIZE_ROUNDINGS}, got {rounding!r}")
    return rounding


class ResizeShort(nn.Module):
    """Resize so that the short side is ``size``, as PaddleClas's ``ResizeImage(resize_short=size)``.

    The long side becomes ``round(long * size / short)`` (``rounding="paddle"``), or ``int(size * long / short)``
    as torchvision's ``Resize(size)`` computes it (``"torchvision"``, timm's weights). ``interpolation`` and
    ``backend`` are PaddleClas's names (``backend="cv2"``: no antialiasing; ``"pil"``: Pillow's antialiased filters).
    """

    def __init__(self, size: int, interpolation: str = "bilinear", backend: str = "cv2",
                 rounding: str = "paddle") -> None:
        super().__init__()
        self.size, self.interpolation, self.backend = size, interpolation, backend
        self.rounding = _check_rounding(rounding)
        self.mode, self.antialias = _resize_mode(interpolation, backend)

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        if self.rounding == "torchvision":
            if h <= w:
                return self.size, int(self.size * w / h)
            return int(self.size * h / w), self.size
        scale = self.size / min(h, w)
        return int(round(h * scale)), int(round(w * scale))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return _resize(img, self.output_size(*_hw(img)), self.mode, self.antialias)

    def extra_repr(self) -> str:
        return (f"size={self.size}, interpolation={self.interpolation}, backend={self.backend}, "
                f"rounding={self.rounding}")


class PaddleCenterCrop(nn.Module):
    """Center crop with PaddleClas's ``CropImage`` offsets, ``(dim - size) // 2`` (``rounding="paddle"``), or
    torchvision's ``CenterCrop`` offsets, ``round((dim - size) / 2)`` (``"torchvision"``); smaller inputs are an
    error."""

    def __init__(self, size: int | tuple[int, int], rounding: str = "paddle") -> None:
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.rounding = _check_rounding(rounding)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        (h, w), (ch, cw) = _hw(img), self.size
        if h < ch or w < cw:
            raise ValueError(f"cannot crop {ch}x{cw} from a {h}x{w} image; resize it to at least the crop size first")
        if self.rounding == "torchvision":
            return F.crop(img, int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0)), ch, cw)
        return F.crop(img, (h - ch) // 2, (w - cw) // 2, ch, cw)

    def extra_repr(self) -> str:
        return f"size={self.size}, rounding={self.rounding}"


class PaddleRandCrop(nn.Module):
    """PaddleClas's training crop, ``RandCropImage``: a random area and aspect ratio, resized to ``size``.

    Unlike torchvision's ``RandomResizedCrop`` it never falls back to a center crop: the scale range is
    narrowed so that the sampled aspect ratio always fits.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        interpolation: str = "bilinear",
        backend: str = "cv2",
    ) -> None:
        super().__init__()
        self.size, self.scale, self.ratio = (size, size), scale, ratio
        self.interpolation, self.backend = interpolation, backend
        self.mode, self.antialias = _resize_mode(interpolation, backend)

    def get_params(self, h: int, w: int) -> tuple[int, int, int, int]:
        """The crop box ``(top, left, height, width)`` of an ``h`` x ``w`` image."""
        aspect = math.sqrt(random.uniform(*self.ratio))
        bound = min((w / h) / aspect**2, (h / w) * aspect**2)
        area = w * h * random.uniform(min(self.scale[0], bound), min(self.scale[1], bound))
        cw, ch = int(math.sqrt(area) * aspect), int(math.sqrt(area) / aspect)
        left, top = random.randint(0, w - cw), random.randint(0, h - ch)
        return top, left, ch, cw

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return _resize(F.crop(img, *self.get_params(*_hw(img))), self.size, self.mode, self.antialias)

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={self.ratio}, interpolation={self.interpolation}"


class TimmRandCrop(PaddleRandCrop):
    """timm's training crop (``RandomResizedCropAndInterpolation``, torchvision's ``RandomResizedCrop``): area
    uniform and aspect log-uniform, the crop rounded to whole pixels; up to 10 draws, then a center crop of the
    whole image (its aspect clamped to ``ratio``). Same RNG (Python's ``random``) and draws as timm's, so a seeded
    crop box is timm's. Unlike :class:`PaddleRandCrop` it can take the whole image, and on small images its
    rounding keeps crops larger: on 28 x 28 with areas 0.85-1, 90% of the image on average against 82%."""

    def get_params(self, h: int, w: int) -> tuple[int, int, int, int]:
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            area = random.uniform(*self.scale) * w * h
            aspect = math.exp(random.uniform(*log_ratio))
            cw, ch = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if cw <= w and ch <= h:
                top = random.randint(0, h - ch)
                return top, random.randint(0, w - cw), ch, cw
        ch, cw = h, w
        if w / h < min(self.ratio):
            ch = int(round(w / min(self.ratio)))
        elif w / h > max(self.ratio):
            cw = int(round(h * max(self.ratio)))
        return (h - ch) // 2, (w - cw) // 2, ch, cw


class ConvertChannels(nn.Module):
    """Give a uint8 (..., C, H, W) image ``in_chans`` channels: RGB → gray exactly as PIL's ``convert("L")``
    (ITU-R 601-2 luma in PIL's fixed point, ``(19595 R + 38470 G + 7471 B + 32768) >> 16``, so a grayscale file
    decoded to three equal channels comes back unchanged; torchvision's ``rgb_to_grayscale`` truncates
    ``0.2989 R + 0.587 G + 0.114 B``, one level low on gray pixels), gray → replicated, RGBA → RGB."""

    def __init__(self, in_chans: int) -> None:
        super().__init__()
        self.in_chans = in_chans

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        c = img.shape[-3]
        if c == 4:
            img, c = img[..., :3, :, :], 3
        if c == self.in_chans:
            return img
        if c == 3 and self.in_chans == 1:
            if img.dtype != torch.uint8:
                raise TypeError(f"ConvertChannels takes uint8 images, got {img.dtype}")
            r, g, b = img.to(torch.int32).unbind(-3)
            return ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).to(torch.uint8).unsqueeze(-3)
        if c == 1:
            return img.expand(*img.shape[:-3], self.in_chans, *img.shape[-2:])
        raise ValueError(f"cannot turn a {c}-channel image into the model's {self.in_chans} channels")

    def extra_repr(self) -> str:
        return f"in_chans={self.in_chans}"


_TIMM_ARGS = ("args", "pretrained_cfg", "model", "use_test_size", "verbose")


def resolve_data_config(
    cfg: PretrainedCfg | None = None,
    *,
    resize_short: int | None = None,
    crop_size: int | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    resize_backend: str | None = None,
    size_rounding: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **timm_args,
) -> dict:
    """The preprocessing settings: ``cfg``'s (PaddleClas's defaults without one), then any overrides.

    ``crop_pct`` sets ``resize_short = round(crop_size / crop_pct)`` (timm's convention) unless
    ``resize_short`` is also given; changing only ``crop_size`` keeps the cfg's resize/crop ratio.

    Called as timm calls its function of this name (``resolve_data_config(model=model)``,
    ``resolve_data_config(vars(args), model=model)``, ``pretrained_cfg=``, ``use_test_size=``, ``verbose=``), it
    is that function and returns timm's keys: see :func:`hgzoo.data.timm_config.resolve_timm_data_config`.
    """
    if timm_args or isinstance(cfg, dict):
        return _timm_call(cfg, timm_args, dict(resize_short=resize_short, crop_size=crop_size, crop_pct=crop_pct,
                                               interpolation=interpolation, resize_backend=resize_backend, mean=mean,
                                               std=std))
    base = dict(resize_short=256, crop_size=224, interpolation="bilinear", resize_backend="cv2",
                size_rounding="paddle", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    if cfg is not None:
        base.update(resize_short=cfg.resize_short, crop_size=cfg.crop_size, interpolation=cfg.interpolation,
                    resize_backend=cfg.resize_backend, size_rounding=getattr(cfg, "size_rounding", "paddle"),
                    mean=tuple(cfg.mean), std=tuple(cfg.std))
    out = dict(base)
    if crop_size is not None:
        out["crop_size"] = crop_size
        if resize_short is None and crop_pct is None:
            out["resize_short"] = int(round(crop_size * base["resize_short"] / base["crop_size"]))
    if crop_pct is not None:
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        out["resize_short"] = int(round(out["crop_size"] / crop_pct))
    for key, value in (("resize_short", resize_short), ("interpolation", interpolation),
                       ("resize_backend", resize_backend), ("size_rounding", size_rounding), ("mean", mean),
                       ("std", std)):
        if value is not None:
            out[key] = tuple(value) if key in ("mean", "std") else value
    if out["resize_short"] < out["crop_size"]:
        raise ValueError(f"resize_short {out['resize_short']} is smaller than crop_size {out['crop_size']}")
    _resize_mode(out["interpolation"], out["resize_backend"])  # fail early on an unknown combination
    _check_rounding(out["size_rounding"])
    return out


def _timm_call(args: dict | None, timm_args: dict, hgzoo_args: dict) -> dict:
    """``resolve_data_config`` called timm's way: check the arguments, then timm's resolution."""
    from .timm_config import resolve_timm_data_config

    unknown = sorted(set(timm_args) - set(_TIMM_ARGS))
    if unknown:
        raise TypeError(f"resolve_data_config got unexpected keyword argument(s) {', '.join(map(repr, unknown))}")
    mixed = sorted(k for k, v in hgzoo_args.items() if v is not None)
    if mixed:
        raise TypeError(f"resolve_data_config: {', '.join(mixed)} are hgzoo's overrides; called timm's way (model=, "
                        "args=, pretrained_cfg=) put them in args")
    if args is not None and "args" in timm_args:
        raise TypeError("resolve_data_config got args twice")
    return resolve_timm_data_config(timm_args.pop("args", args), **timm_args)


def create_transform(
    cfg: PretrainedCfg | dict | None = None,
    training: bool = False,
    *,
    normalize: bool = True,
    in_chans: int = 3,
    **overrides,
) -> v2.Compose:
    """PaddleClas's preprocessing for a weight tag, as a torchvision ``v2.Compose``.

    Args:
        cfg: a :class:`~hgzoo.PretrainedCfg` (e.g. ``model.pretrained_cfg``), a dict from
            :func:`resolve_data_config`, or None for PaddleClas's defaults (resize 256 bilinear, crop 224).
        training: PaddleClas's basic training ops instead (``RandCropImage`` + horizontal flip); the
            recipes' RandAugment, random erasing and mixing are applied by the training script.
        normalize: end with ``float32`` scaled to [0, 1] and normalized; ``False`` stops at the uint8 crop
            (batch it and normalize on the batch, as :class:`~hgzoo.data.Normalizer` does).
        in_chans: the model's input channels; other than 3, images are converted first (:class:`ConvertChannels`).
        **overrides: ``resize_short``, ``crop_size``, ``crop_pct``, ``interpolation``, ``resize_backend``,
            ``size_rounding``, ``mean``, ``std`` (see :func:`resolve_data_config`).

    The result takes a uint8 (C, H, W) tensor from :func:`read_image`, a PIL image or an HWC uint8 array.
    """
    if isinstance(cfg, dict) and overrides:
        raise TypeError("pass overrides to resolve_data_config, not with a dict cfg")
    dc = dict(cfg) if isinstance(cfg, dict) else resolve_data_config(cfg, **overrides)
    ops: list = [v2.ToImage()] + ([ConvertChannels(in_chans)] if in_chans != 3 else [])
    if training:
        ops += [PaddleRandCrop(dc["crop_size"], interpolation=dc["interpolation"], backend=dc["resize_backend"]),
                v2.RandomHorizontalFlip()]
    else:
        rounding = dc.get("size_rounding", "paddle")
        ops += [ResizeShort(dc["resize_short"], dc["interpolation"], dc["resize_backend"], rounding),
                PaddleCenterCrop(dc["crop_size"], rounding)]
    if normalize:
        ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(dc["mean"]), list(dc["std"]))]
    return v2.Compose(ops)


class Normalizer(nn.Module):
    """Normalize a uint8 batch (B, C, H, W) to float: ``(x / 255 - mean) / std`` in one fused pass."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t), persistent=False)
        self.register_buffer("shift", -torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) / std_t,
                             persistent=False)

    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``out``: a float32 tensor of ``x``'s shape to write into (no allocation)."""
        if out is None:
            return torch.addcmul(self.shift, x.float(), self.scale)
        return torch.addcmul(self.shift, x, self.scale, out=out)

