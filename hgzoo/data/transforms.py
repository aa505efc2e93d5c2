"""Image decoding and PaddleClas's preprocessing, on torchvision (``io.decode_image``, ``transforms.v2``).

PaddleClas evaluates every model with the same five ops (``paddleclas.deploy.python.preprocess``):
``DecodeImage(to_rgb=True)``, ``ResizeImage(resize_short, interpolation, backend)``, ``CropImage(224)``,
``NormalizeImage(scale=1/255, mean, std)`` and ``ToCHWImage``. :func:`read_image` and
:func:`create_transform` reproduce them:

* **Decoding** is ``cv2.imdecode(bytes, IMREAD_COLOR)`` in PaddleClas. We decode JPEG, GIF and WebP with
  ``torchvision.io.decode_image``, PNG and the rest with PIL (see :func:`decode_bytes`), and get the same
  pixels: EXIF orientation applied (IMREAD_COLOR applies it too), grayscale replicated to three channels,
  alpha dropped (not composited over a background),
  16-bit PNGs reduced to 8 bits by their high byte, and CMYK JPEGs converted with OpenCV's formula
  ``k - ((255 - c) * k >> 8)`` (torchvision's and PIL's own conversions are one level off). A file that
  cannot be decoded raises :class:`ImageDecodeError` naming it (PaddleClas fails on ``None.shape``).
* **Bounds**: regular files only, at most :func:`max_image_bytes` read, at most :func:`max_image_pixels` decoded
  (the size each decoder will allocate, read from the headers first), an animation's first frame only, and a
  resize whose output would exceed the pixel limit refused (:class:`ResizeShort`).
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

import contextlib
import io
import math
import os
import random
import re
import threading
import warnings
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

try:
    from torchvision.io import ImageReadMode, decode_image
except ImportError:  # a torchvision without its (deprecated) decoders: PIL decodes everything
    ImageReadMode = decode_image = None
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from .._files import FileRefusedError, env_limit, read_regular_file
from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD, SIZE_ROUNDINGS, resolve_preprocessing
from ._headers import HeaderError, declared_size, first_gif_frame, is_animated_webp, torchvision_format
from .timm_config import TIMM_TRANSFORM_KEYS, from_timm_keywords


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
    "ImageDecodeError", "read_image", "decode_bytes", "transform_file", "max_image_pixels", "max_image_bytes",
    "pil_to_rgb", "ToRGBImage", "ResizeShort", "PaddleCenterCrop", "PaddleRandCrop",
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

#: The formats PIL may decode (what torchvision does not, and OpenCV does): each one's size at open is the size
#: it decodes to. Others (EPS runs Ghostscript; ICO and ICNS change size on load; JPEG 2000 ...) are refused.
PIL_FORMATS = ("BMP", "DIB", "TIFF", "PPM", "SUN", "WEBP", "GIF", "PNG", "JPEG")


_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pil_size_check_off() -> Iterator[None]:
    """PIL's own pixel limit off while a header is read: :func:`max_image_pixels` is checked instead, on the
    size that is then decoded (PIL would refuse at twice its limit, whatever the user set)."""
    from PIL import Image

    with _PIL_LIMIT_LOCK:  # threads that read at once restore PIL's own value, not each other's None
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


def pil_to_rgb(img) -> torch.Tensor:
    """A PIL image as a (3, H, W) uint8 tensor, as OpenCV's ``IMREAD_COLOR`` reads the file it would save to:
    alpha dropped (not composited), a palette expanded (its transparency ignored), gray replicated, 16-bit gray
    reduced to its high byte (``v >> 8``, as OpenCV reduces 16-bit samples; 32-bit gray is read as 16-bit,
    clipped)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return F.pil_to_tensor(img)


def _decode_with_pil(data: bytes, name: str, fmt: str | None = None) -> torch.Tensor:
    """Formats torchvision does not decode (BMP, TIFF, ...): PIL, its first frame, EXIF-transposed, to 8-bit RGB.
    The size checked is the size of the image object that is then decoded."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with _pil_size_check_off():
            img = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
    except UnidentifiedImageError:
        if fmt is not None:  # PIL checks every chunk's checksum, and stops at the first bad one
            raise ImageDecodeError(name, f"PIL cannot read its header (a corrupt {fmt.upper()} file)") from None
        raise ImageDecodeError(name, "not a known image format (neither torchvision nor PIL can read it)") from None
    except Exception as e:  # noqa: BLE001  (any PIL failure means "not an image we can read")
        raise ImageDecodeError(name, f"PIL cannot read its header ({type(e).__name__}: {_one_line(e)})") from None
    with img:
        _check_pixels(name, *img.size)
        try:
            return pil_to_rgb(ImageOps.exif_transpose(img))
        except Exception as e:  # noqa: BLE001
            raise ImageDecodeError(name, f"PIL cannot decode it ({type(e).__name__}: {_one_line(e)})") from None


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else ""


def _cmyk_to_rgb(cmyk: torch.Tensor) -> torch.Tensor:
    """OpenCV's conversion of (Adobe, inverted) CMYK JPEG samples: ``k - ((255 - c) * k >> 8)``."""
    c = cmyk.to(torch.int32)
    k = c[3:]
    return (k - (((255 - c[:3]) * k) >> 8)).to(torch.uint8)


#: PIL's own default limit (``PIL.Image.MAX_IMAGE_PIXELS``): about 0.27 GB of RGB pixels.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
#: An uncompressed 24-bit image at the default pixel limit, and 1 MiB of headers: 257 MiB.
DEFAULT_MAX_IMAGE_BYTES = 3 * DEFAULT_MAX_IMAGE_PIXELS + (1 << 20)


def max_image_pixels() -> int:
    """The largest image decoded, in pixels: ``$HGZOO_MAX_IMAGE_PIXELS`` (the ``--max-image-pixels`` flag sets
    it), default PIL's limit, 89,478,485. A larger image is refused before it is decoded, and so is an image
    whose resize (:class:`ResizeShort`) would be larger."""
    return env_limit("HGZOO_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS, "pixels")


def max_image_bytes() -> int:
    """The largest image file read, in bytes: ``$HGZOO_MAX_IMAGE_BYTES``, default :data:`DEFAULT_MAX_IMAGE_BYTES`
    (257 MiB). A larger file is refused before it is read."""
    return env_limit("HGZOO_MAX_IMAGE_BYTES", DEFAULT_MAX_IMAGE_BYTES, "bytes")


def _check_pixels(name: str, width: int, height: int) -> None:
    """Refuse a ``width`` x ``height`` image over :func:`max_image_pixels` (a 132 KB PNG can declare 33000x33000
    pixels: 3.3 GB once decoded)."""
    limit = max_image_pixels()
    if width * height > limit:
        raise ImageDecodeError(name, f"it declares {width}x{height} = {width * height:,} pixels, over the "
                               f"{limit:,}-pixel limit (--max-image-pixels or HGZOO_MAX_IMAGE_PIXELS raise it)")


def decode_bytes(data: bytes | bytearray | memoryview, name: str = "<bytes>") -> torch.Tensor:
    """Decode an encoded image to a (3, H, W) uint8 RGB tensor, as PaddleClas's ``DecodeImage(to_rgb=True)``.

    The size the decoder will produce is read from the file's headers first (:mod:`hgzoo.data._headers`), and
    an image over :func:`max_image_pixels`, or one whose header cannot be read, is refused
    (:class:`ImageDecodeError`) before it is decoded. An animation decodes its first frame only.
    """
    if len(data) == 0:
        raise ImageDecodeError(name, "the file is empty")
    if len(data) > max_image_bytes():
        raise ImageDecodeError(name, f"it is {len(data):,} bytes, over the {max_image_bytes():,}-byte limit "
                               "(HGZOO_MAX_IMAGE_BYTES raises it)")
    fmt = torchvision_format(data)
    try:
        if fmt is not None:
            _check_pixels(name, *declared_size(data, fmt))
        if fmt == "gif":
            data = first_gif_frame(data)
    except HeaderError as e:
        raise ImageDecodeError(name, str(e)) from None
    # PNGs go through PIL: torchvision 0.29's decode_png kills the process (SIGSEGV) when libpng reports a corrupt
    # data stream (a bad filter byte, a bad zlib checksum; found by tests/fuzz_inputs.py). Same pixels, lossless.
    if fmt in (None, "png") or decode_image is None or (fmt == "webp" and is_animated_webp(data)):
        return _decode_with_pil(bytes(data), name, fmt)
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:  # JPEGs are decoded as stored, so that CMYK ones can be converted exactly as OpenCV does.
        img = decode_image(encoded, mode=ImageReadMode.UNCHANGED if fmt == "jpeg" else ImageReadMode.RGB,
                           apply_exif_orientation=True)
    except RuntimeError as e:
        reason = _TV_PREFIX.sub("", _one_line(e))
        if "Unsupported image file" not in reason:
            raise ImageDecodeError(name, reason) from None
        return _decode_with_pil(bytes(data), name)
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

    Only a regular file (links resolved) of at most :func:`max_image_bytes` is read: a FIFO or a device behind
    an image's name is refused before it is read. Raises :class:`ImageDecodeError` (naming the file) if it is
    refused or cannot be decoded, ``FileNotFoundError`` if it does not exist.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(source)
    path = os.fspath(source)
    try:
        data = read_regular_file(path, max_image_bytes(), "HGZOO_MAX_IMAGE_BYTES")
    except FileRefusedError as e:
        raise ImageDecodeError(path, e.reason) from None
    except PermissionError as e:
        raise ImageDecodeError(path, f"it cannot be read ({e.strerror})") from None
    return decode_bytes(data, path)


#: The ``path`` of an :class:`ImageDecodeError` raised by a transform, which does not know the file's name.
UNNAMED = "<image>"


def transform_file(path: str | os.PathLike, transform: Callable | None) -> torch.Tensor:
    """``transform(read_image(path))``; an image a step of ``transform`` refuses (:class:`ResizeShort`'s bound)
    is reported under ``path``."""
    img = read_image(path)
    if transform is None:
        return img
    try:
        return transform(img)
    except ImageDecodeError as e:
        if e.path != UNNAMED:
            raise
        raise ImageDecodeError(os.fspath(path), e.reason) from None


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


def _check_rounding(rounding: str) -> str:
    if rounding not in SIZE_ROUNDINGS:
        raise ValueError(f"size_rounding must be one of {SIZE_ROUNDINGS}, got {rounding!r}")
    return rounding


class ToRGBImage(nn.Module):
    """The first op of :func:`create_transform`: a PIL image of any mode becomes the tensor :func:`read_image`
    gives for the file it would be saved to (:func:`pil_to_rgb`: alpha dropped, as PaddleClas reads it);
    tensors and arrays go through torchvision's ``ToImage`` unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.to_image = v2.ToImage()

    def forward(self, img):
        from PIL import Image

        if isinstance(img, Image.Image):
            return tv_tensors.Image(pil_to_rgb(img))
        return self.to_image(img)


class ResizeShort(nn.Module):
    """Resize so that the short side is ``size``, as PaddleClas's ``ResizeImage(resize_short=size)``.

    PaddleClas and timm both resize the short side first, and hgzoo keeps that order for parity; so the work is
    bounded by the size of the resize's output, not only by the decoded input: a 1 x 65535 image (65,535 pixels)
    would become 256 x 16,776,960 (a 12 GB tensor). An output over :func:`max_image_pixels` is refused with an
    :class:`ImageDecodeError` (``--skip-bad-images`` skips it; :func:`transform_file` names the file).

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
        (h, w), limit = _hw(img), max_image_pixels()
        oh, ow = self.output_size(h, w)
        if oh * ow > limit:
            raise ImageDecodeError(UNNAMED, f"it is {w}x{h}: resized to a short side of {self.size} it would be "
                                   f"{ow}x{oh} = {oh * ow:,} pixels, over the {limit:,}-pixel limit (an extreme "
                                   "aspect ratio; --max-image-pixels or HGZOO_MAX_IMAGE_PIXELS raise it)")
        return _resize(img, (oh, ow), self.mode, self.antialias)

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
        # At least one pixel: on a very thin or tiny image the product rounds to 0 (PaddleClas then fails in cv2).
        cw, ch = max(1, int(math.sqrt(area) * aspect)), max(1, int(math.sqrt(area) / aspect))
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
            if 0 < cw <= w and 0 < ch <= h:  # as torchvision's RandomResizedCrop checks
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


def resolve_data_config(cfg: Any = None, **kwargs: Any) -> dict:
    """The preprocessing settings of ``cfg`` (a :class:`~hgzoo.PretrainedCfg`, or None for PaddleClas's defaults)
    with overrides (``resize_short``, ``crop_size``, ``crop_pct``, ``interpolation``, ``resize_backend``,
    ``size_rounding``, ``mean``, ``std``): :func:`hgzoo.preprocessing.resolve_preprocessing`, the one resolver.

    Called as timm calls its function of this name (``resolve_data_config(model=model)``,
    ``resolve_data_config(vars(args), model=model)``, ``pretrained_cfg=``, ``use_test_size=``, ``verbose=``), it
    is that function and returns timm's keys: see :func:`hgzoo.data.timm_config.resolve_timm_data_config`.
    """
    timm_args = {k: kwargs.pop(k) for k in _TIMM_ARGS if k in kwargs}
    if timm_args or isinstance(cfg, dict):
        return _timm_call(cfg, timm_args, kwargs)
    return resolve_preprocessing(cfg, **kwargs)


def _timm_call(args: dict | None, timm_args: dict, hgzoo_args: dict) -> dict:
    """``resolve_data_config`` called timm's way: check the arguments, then timm's resolution."""
    from ..preprocessing import OVERRIDE_KEYS
    from .timm_config import resolve_timm_data_config

    unknown = sorted(set(hgzoo_args) - set(OVERRIDE_KEYS))
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
    cfg: Any = None,
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
            ``size_rounding``, ``mean``, ``std`` (see :func:`resolve_data_config`); and timm's ``input_size``,
            ``crop_mode`` and ``is_training``, so that ``create_transform(**timm.data.resolve_data_config(...))``
            works (:func:`~hgzoo.data.timm_config.from_timm_keywords` says with what meaning).

    The result takes a uint8 (C, H, W) tensor from :func:`read_image`, a PIL image or an HWC uint8 array.
    """
    if any(k in overrides for k in TIMM_TRANSFORM_KEYS):  # create_transform(**timm.data.resolve_data_config(...))
        overrides, in_chans = from_timm_keywords(overrides, in_chans)
    if isinstance(cfg, dict) and overrides:
        raise TypeError("pass overrides to resolve_data_config, not with a dict cfg")
    dc = dict(cfg) if isinstance(cfg, dict) else resolve_preprocessing(cfg, None, in_chans, **overrides)
    ops: list = [ToRGBImage()] + ([ConvertChannels(in_chans)] if in_chans != 3 else [])
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

