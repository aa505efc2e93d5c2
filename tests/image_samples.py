"""Real sample images for the data tests: scikit-image's photos, written in the awkward formats too.

Independent of conftest.py so that the data, validate and predict tests (and the benchmark) can share it.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

#: scikit-image photos shipped inside the wheel (no download): name → kind.
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")


def photos(names: tuple[str, ...] = PHOTOS) -> dict[str, np.ndarray]:
    """Real RGB photos (HWC uint8) from scikit-image; skips the test when scikit-image is missing."""
    data = pytest.importorskip("skimage.data", reason="scikit-image (the `test` extra) provides the sample photos")
    return {n: np.ascontiguousarray(getattr(data, n)()[..., :3]) for n in names}


def write_png(path: Path, array: np.ndarray) -> Path:
    """A PNG of an HW, HW3 or HW4 uint8/uint16 array (written by hand: PIL cannot write 16-bit RGB)."""
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    h, w, c = a.shape
    depth = 16 if a.dtype == np.uint16 else 8
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = a.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8)
    scanlines = np.concatenate([np.zeros((h, 1), np.uint8), raw], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(scanlines, 6))
                     + chunk(b"IEND", b""))
    return path


def write_special_images(root: Path) -> dict[str, Path]:
    """The formats a decoder must get right, each made from a real photo, in ``root``.

    gray (8-bit grayscale JPEG), rgba (PNG with a varying alpha), cmyk (Adobe CMYK JPEG, as Photoshop
    writes them and ImageNet holds a few), png16 (16-bit RGB PNG), exif6 (a JPEG whose EXIF orientation
    is 6: the stored pixels must be rotated 90° clockwise to be upright), plus a PNG and a JPEG of a photo.
    """
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    cat = photos(("chelsea",))["chelsea"]
    h, w = cat.shape[:2]
    out = {}
    out["jpeg"] = root / "chelsea.jpg"
    Image.fromarray(cat).save(out["jpeg"], quality=92)
    out["png"] = write_png(root / "chelsea.png", cat)
    out["gray"] = root / "gray.jpg"
    Image.fromarray(cat).convert("L").save(out["gray"], quality=92)
    alpha = np.tile(np.linspace(0, 255, w, dtype=np.float32).astype(np.uint8), (h, 1))
    out["rgba"] = write_png(root / "rgba.png", np.dstack([cat, alpha]))
    out["cmyk"] = root / "cmyk.jpg"
    Image.fromarray(cat).convert("CMYK").save(out["cmyk"], quality=95)
    # High byte = the photo, low byte = noise: reducing by the high byte gives the photo back, rounding would not.
    wide = cat.astype(np.uint16) * 256 + np.random.default_rng(0).integers(0, 256, cat.shape, dtype=np.uint16)
    out["png16"] = write_png(root / "png16.png", wide)
    out["exif6"] = root / "exif6.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    # Stored rotated 90° counter-clockwise; orientation 6 says "rotate 90° clockwise to display".
    Image.fromarray(np.ascontiguousarray(np.rot90(cat, 1))).save(out["exif6"], quality=92, exif=exif)
    return out


def write_photo_jpegs(root: Path, names: tuple[str, ...] = PHOTOS, quality: int = 90) -> list[Path]:
    """The photos as JPEG files (as ImageNet's are)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, img in photos(names).items():
        p = root / f"{name}.jpg"
        Image.fromarray(img).save(p, quality=quality)
        paths.append(p)
    return paths


#: Small models for the validate and predict tests, the first registered one is used.
SMALL_MODELS = ("pplcnetv2_small", "resnet18_vd", "pphgnetv2_b0", "pphgnet_tiny", "hrnet_w18_c")


def small_model_name() -> str:
    import hgzoo

    for name in SMALL_MODELS:
        if hgzoo.is_model(name):
            return name
    pytest.skip(f"none of {SMALL_MODELS} is registered")


def calibrated_model(name: str, images, seed: int = 0, **kwargs):
    """``name`` with random weights whose BN statistics are calibrated on ``images`` (a float batch), so that
    its logits clearly depend on the input; in eval mode."""
    import torch

    import hgzoo

    torch.manual_seed(seed)
    model = hgzoo.create_model(name, **kwargs)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: the statistics of the calibration batch
    model.train()
    with torch.no_grad():
        model(images)
        fc = model.get_classifier()
        if fc is not None and hasattr(fc, "weight"):
            fc.weight.mul_(10)  # spread the logits: fewer near-ties between classes
    return model.eval()
