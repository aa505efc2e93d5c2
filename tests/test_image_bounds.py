"""Issue 27's image cases, on the reader itself: every file is decoded within the pixel and byte limits, or
refused in one line naming it. The same cases as commands under a memory limit are in test_input_limits.py."""
from __future__ import annotations

import io
import os
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from hgzoo.data import (
    ImageDecodeError,
    ImageFolder,
    LabelListDataset,
    LabelListError,
    create_transform,
    read_class_names,
    read_image,
    transform_file,
)
from hgzoo.data.loader import GuardedDataset
from hgzoo.data.transforms import UNNAMED, pil_to_rgb

Image = pytest.importorskip("PIL.Image")


# ------------------------------------------------------------------------------------------ crafted files

def png_chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def zero_png(width: int, height: int, extra: bytes = b"") -> bytes:
    """A 1-bit gray PNG of zeros (tiny on disk whatever its size), with ``extra`` chunks before its data."""
    row = bytes(1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row * min(1024, height - i)) for i in range(0, height, 1024)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


BAD_CRC_TEXT = png_chunk(b"tEXt", b"Comment\x00hello", crc=0)  # an ancillary chunk with a wrong checksum


def jpeg_bytes(width: int = 40, height: int = 30) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)).save(out, "JPEG")
    return out.getvalue()


def with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    i = data.index(b"\xff\xc0")
    return data[:i + 5] + struct.pack(">HH", height, width) + data[i + 9:]


def animated_gif(size: int, frames: int) -> bytes:
    """``frames`` frames on a ``size`` x ``size`` canvas, each differing by one pixel: PIL stores each frame as a
    1x1 patch, so the file is tiny while decoding every frame would take ``frames * size**2 * 3`` bytes."""
    imgs = []
    for k in range(frames):
        a = np.zeros((size, size), np.uint8)
        a[k % size, k % size] = 1 + k % 200
        img = Image.fromarray(a, "L").convert("P")
        imgs.append(img)
    out = io.BytesIO()
    imgs[0].save(out, "GIF", save_all=True, append_images=imgs[1:], optimize=False)
    return out.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(path: Path | bytes, *words: str) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as info:
        read_image(path)
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    if isinstance(path, Path):
        assert info.value.path == str(path)
    return info.value


# ------------------------------------------------------------------------------------------ the pixel cap

def test_png_with_a_bad_ancillary_checksum_is_still_sized(tmp_path):
    """PIL cannot read this header (the text chunk's CRC), so the old check consented; the size is read from the
    IHDR chunk instead, and refused. Under the cap, the file is refused as PIL cannot read it."""
    path = write(tmp_path, "crc.png", zero_png(20_000, 20_000, BAD_CRC_TEXT))
    assert path.stat().st_size < 100_000
    with pytest.raises(OSError, match="cannot identify"):  # what made the old check consent
        Image.open(path)
    refused(path, "crc.png", "20000x20000 = 400,000,000 pixels", "HGZOO_MAX_IMAGE_PIXELS")
    small = write(tmp_path, "small.png", zero_png(64, 48, BAD_CRC_TEXT))
    refused(small, "small.png", "PIL cannot read its header")  # PNGs decode through PIL, which stops there
    assert read_image(write(tmp_path, "good.png", zero_png(64, 48))).shape == (3, 48, 64)


def test_jpeg_gif_webp_tiff_bmp_over_the_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("HGZOO_MAX_IMAGE_PIXELS", "1000000")
    refused(write(tmp_path, "big.jpg", with_jpeg_size(jpeg_bytes(), 4000, 3000)), "4000x3000")
    two = jpeg_bytes()  # a second frame header after the first: libjpeg stops, PIL takes the last; the largest counts
    i = two.index(b"\xff\xc0")
    sof = two[i:i + 2 + struct.unpack(">H", two[i + 2:i + 4])[0]]
    refused(write(tmp_path, "two.jpg", two[:i] + with_jpeg_size(sof, 5000, 5000) + two[i:]), "5000x5000")
    gif = bytearray(animated_gif(8, 2))
    gif[6:10] = struct.pack("<HH", 3000, 3000)  # the canvas
    refused(write(tmp_path, "canvas.gif", bytes(gif)), "3000x3000")
    gif = bytearray(animated_gif(8, 2))
    d = gif.index(b"\x2c\x00\x00\x00\x00")
    gif[d + 5:d + 9] = struct.pack("<HH", 60000, 60000)  # the first frame (giflib allocates it)
    refused(write(tmp_path, "frame.gif", bytes(gif)), "60000x60000")
    out = io.BytesIO()
    Image.new("RGB", (20, 20)).save(out, "WEBP", lossless=True)
    webp = bytearray(out.getvalue())
    j = webp.index(b"VP8L") + 9
    webp[j:j + 4] = ((3999) | (2999 << 14)).to_bytes(4, "little")
    refused(write(tmp_path, "big.webp", bytes(webp)), "4000x3000")
    for fmt in ("TIFF", "BMP"):
        out = io.BytesIO()
        Image.new("RGB", (2000, 1000)).save(out, fmt)
        refused(write(tmp_path, f"big.{fmt.lower()}", out.getvalue()), "2000x1000 = 2,000,000 pixels")


def test_headers_that_cannot_be_read_are_refused(tmp_path):
    jpeg = jpeg_bytes()
    i = jpeg.index(b"\xff\xc0")
    refused(write(tmp_path, "nosof.jpg", jpeg[:i]), "no JPEG frame header")
    refused(write(tmp_path, "noihdr.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"tEXt", b"a\x00b")), "IHDR")
    refused(write(tmp_path, "noframe.gif", b"GIF89a\x10\x00\x10\x00\x00\x00\x00\x3b"), "no GIF frame")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"  # PIL would run Ghostscript on it
    refused(write(tmp_path, "x.eps.png", eps), "not a known image format")


# ------------------------------------------------------------------------------------------ animations

def test_animated_gif_decodes_its_first_frame_only(tmp_path):
    data = animated_gif(300, 40)
    path = write(tmp_path, "anim.gif", data)
    img = read_image(path)
    with Image.open(path) as first:
        assert torch.equal(img, pil_to_rgb(first))  # frame 0, as PIL (and OpenCV) read it
    from torchvision.io import decode_image

    assert decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8)).shape[0] == 40  # what it did before


def test_animated_webp_and_multipage_tiff_decode_their_first_frame(tmp_path):
    frames = [Image.new("RGB", (24, 16), (10 * k, 0, 0)) for k in range(1, 4)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], lossless=True)
    assert torch.equal(read_image(path), pil_to_rgb(frames[0]))
    pages = [Image.new("RGB", (8, 6), (1, 2, 3)), Image.new("RGB", (3000, 3000))]
    path = tmp_path / "pages.tiff"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    assert torch.equal(read_image(path), pil_to_rgb(pages[0]))


# ------------------------------------------------------------------------------------------ not files, too many bytes

@pytest.fixture
def alarm():
    """Fail instead of hanging if a read blocks."""
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the read blocked"))
    signal.alarm(20)
    yield
    signal.alarm(0)


def test_fifo_and_devices_are_refused_without_reading(tmp_path, alarm):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    refused(fifo, "x.jpg", "FIFO", "not a regular file")
    zero = tmp_path / "zero.png"
    zero.symlink_to("/dev/zero")
    refused(zero, "zero.png", "character device")
    refused(Path("/dev/zero"), "character device")
    with pytest.raises(ImageDecodeError, match="directory"):
        read_image(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")


def test_image_byte_limit(tmp_path, monkeypatch):
    path = write(tmp_path, "a.jpg", jpeg_bytes())
    monkeypatch.setenv("HGZOO_MAX_IMAGE_BYTES", "100")
    refused(path, "a.jpg", "over the 100-byte limit", "HGZOO_MAX_IMAGE_BYTES")
    with pytest.raises(ImageDecodeError, match="HGZOO_MAX_IMAGE_BYTES"):
        read_image(path.read_bytes())
    monkeypatch.setenv("HGZOO_MAX_IMAGE_BYTES", "lots")
    with pytest.raises(ValueError, match="HGZOO_MAX_IMAGE_BYTES='lots' is not a whole number of bytes"):
        read_image(path)


# ------------------------------------------------------------------------------------------ the resize's output

@pytest.mark.parametrize("shape", [(1, 65535), (65535, 1)])
def test_extreme_aspect_ratio_is_refused_by_the_resize(tmp_path, shape):
    h, w = shape
    path = write(tmp_path, "thin.png", zero_png(w, h))
    assert path.stat().st_size < 1000
    img = read_image(path)  # 65,535 pixels: under the pixel cap
    transform = create_transform(None, normalize=False)
    with pytest.raises(ImageDecodeError) as info:
        transform(img)
    assert info.value.path == UNNAMED and "16776960" in str(info.value) and "over the 89,478,485-pixel" in str(
        info.value)
    with pytest.raises(ImageDecodeError, match=f"^cannot decode image {path}: it is {w}x{h}: resized"):
        transform_file(path, transform)
    assert create_transform(None, normalize=False)(torch.zeros(3, 1, 300, dtype=torch.uint8)).shape == (3, 224, 224)


@pytest.mark.parametrize("crop", ["paddle", "timm"])
def test_training_crops_of_thin_and_tiny_images(crop):
    """The random crops resize to the crop size (bounded whatever the input), and never crop zero pixels: a
    1 x 1, 2 x 3 or 1 x 65535 image gave an empty crop and a reshape error before."""
    import random

    from hgzoo.data import PaddleRandCrop, TimmRandCrop

    op = (PaddleRandCrop if crop == "paddle" else TimmRandCrop)(32)
    for shape in [(1, 65535), (65535, 1), (1, 1), (2, 3)]:
        for seed in range(30):
            random.seed(seed)
            assert op(torch.zeros(3, *shape, dtype=torch.uint8)).shape == (3, 32, 32), (shape, seed)


def test_datasets_name_the_file_a_resize_refuses(tmp_path):
    (tmp_path / "a").mkdir()
    write(tmp_path / "a", "thin.png", zero_png(65535, 1))
    write(tmp_path / "a", "ok.png", zero_png(300, 260))
    folder = ImageFolder(tmp_path, transform=create_transform(None, normalize=False))
    assert folder[0][0].shape == (3, 224, 224)
    with pytest.raises(ImageDecodeError, match="thin.png: it is 65535x1"):
        folder[1]
    guarded = GuardedDataset(folder)
    assert guarded[1][0] is None and "thin.png: it is 65535x1" in guarded[1][2]

    class Bare:  # a dataset that only reads (predict's): the guard names the file from its samples
        samples = folder.samples

        def __getitem__(self, i):
            return folder.transform(read_image(self.samples[i][0])), i

        def __len__(self):
            return 2

    assert "thin.png: it is 65535x1" in GuardedDataset(Bare())[1][2]


# ------------------------------------------------------------------------------------------ PIL images of every mode

def pil_images() -> dict[str, tuple]:
    """mode → (image, the format that keeps the mode when saved)."""
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (37, 53, 4), dtype=np.uint8), "RGBA")
    pal = rgba.convert("RGB").quantize(16)
    pal.info["transparency"] = 3
    wide = Image.fromarray(rng.integers(0, 65536, (37, 53)).astype(np.uint16))
    return {"RGBA": (rgba, "png"), "LA": (rgba.convert("LA"), "png"), "P": (pal, "png"),
            "1": (rgba.convert("1"), "png"), "L": (rgba.convert("L"), "png"), "I;16": (wide, "png"),
            "I": (wide.convert("I"), "tiff"), "CMYK": (rgba.convert("RGB").convert("CMYK"), "tiff"),
            "F": (Image.fromarray(rng.random((37, 53)).astype(np.float32) * 300), "tiff")}


@pytest.mark.parametrize("mode", list(pil_images()))
def test_create_transform_on_any_pil_mode_equals_reading_the_saved_file(tmp_path, mode):
    img, fmt = pil_images()[mode]
    path = tmp_path / f"img.{fmt}"
    img.save(path)
    with Image.open(path) as saved:
        assert saved.mode == img.mode  # the file keeps the mode: this compares modes, not a conversion on save
    transform = create_transform(None, resize_short=60, crop_size=32)
    assert torch.equal(transform(img), transform(read_image(path)))


def test_pil_mode_test_can_fail():
    """torchvision's ToImage (the first op before) gives the palette's indices, or four channels."""
    from torchvision.transforms import v2

    images = pil_images()
    pal, rgba = images["P"][0], images["RGBA"][0]
    assert v2.ToImage()(pal).shape[0] == 1 and not torch.equal(v2.ToImage()(pal).expand(3, -1, -1), pil_to_rgb(pal))
    assert v2.ToImage()(rgba).shape[0] == 4


# ------------------------------------------------------------------------------------------ label lists

def test_label_list_paths_stay_in_the_root(tmp_path):
    (tmp_path / "data").mkdir()
    write(tmp_path / "data", "a.png", zero_png(8, 8))
    for bad in ("../x.png", "/etc/passwd", "sub/../../x.png"):
        lst = write(tmp_path, "list.txt", f"a.png 0\n\n{bad} 1\n".encode())
        with pytest.raises(LabelListError, match=rf"list.txt:3: the path '{bad}' is outside the data root"):
            LabelListDataset(lst, root=tmp_path / "data")
    trusted = LabelListDataset(lst, root=tmp_path / "data", allow_outside_root=True)
    assert trusted.samples[1] == (str(tmp_path / "data" / "sub/../../x.png"), 1)
    ok = write(tmp_path, "ok.txt", b"a.png 0\nsub/../a.png 1\n")
    assert len(LabelListDataset(ok, root=tmp_path / "data")) == 2


def test_label_list_labels_name_the_line(tmp_path):
    lst = write(tmp_path, "list.txt", b"a.png 0\n\nb.png 1\nc.png 7\n")
    with pytest.raises(LabelListError, match="list.txt:4: label 7 is out of range for a model with 5 classes"):
        LabelListDataset(lst, num_classes=5)
    assert len(LabelListDataset(lst, num_classes=8)) == 3
    write(tmp_path, "list.txt", b"a.png 0\nb.png one\n")
    with pytest.raises(LabelListError, match="list.txt:2: expected"):
        LabelListDataset(lst)
    write(tmp_path, "list.txt", b"a.png 0\nb\xff.png 1\n")
    with pytest.raises(LabelListError, match="list.txt:2: not UTF-8"):
        LabelListDataset(lst)


def test_train_py_names_the_list_line_and_keeps_its_paths_in_the_root(tmp_path):
    """train.py's --dataset list: a label out of --num-classes and a path outside --data-dir name file and line (as
    train.py reports a ConfigError: one line, exit 2); --allow-outside-root lets the path through."""
    import hgzoo
    from hgzoo.train.config import ConfigError, TrainConfig
    from hgzoo.train.data import build_datasets

    data = tmp_path / "data"
    data.mkdir()
    write(data, "a.png", zero_png(8, 8))
    write(tmp_path, "outside.png", zero_png(8, 8))
    good = write(tmp_path, "val.txt", b"a.png 0\n")
    eval_cfg = hgzoo.get_pretrained_cfg("pphgnetv2_b0").data_config()
    base = dict(model="pphgnetv2_b0", dataset="list", data_dir=str(data), val_list=str(good), num_classes=2)
    write(tmp_path, "train.txt", b"a.png 0\na.png 5\n")
    with pytest.raises(ConfigError, match="train.txt:2: label 5 is out of range for a model with 2 classes"):
        build_datasets(TrainConfig(**base, train_list=str(tmp_path / "train.txt")), eval_cfg)
    write(tmp_path, "train.txt", b"a.png 0\n../outside.png 1\n")
    with pytest.raises(ConfigError, match="train.txt:2: the path '../outside.png' is outside the data root"):
        build_datasets(TrainConfig(**base, train_list=str(tmp_path / "train.txt")), eval_cfg)
    ds = build_datasets(TrainConfig(**base, train_list=str(tmp_path / "train.txt"), allow_outside_root=True), eval_cfg)
    assert len(ds.train) == 2


def test_label_lists_and_class_maps_are_regular_bounded_files(tmp_path, monkeypatch, alarm):
    fifo = tmp_path / "list.txt"
    os.mkfifo(fifo)
    with pytest.raises(LabelListError, match="list.txt: it is a FIFO"):
        LabelListDataset(fifo)
    with pytest.raises(ValueError, match="character device"):
        read_class_names("/dev/zero")
    lst = write(tmp_path, "big.txt", b"a.png 0\n" * 100)
    monkeypatch.setenv("HGZOO_MAX_LIST_BYTES", "500")
    with pytest.raises(LabelListError, match="big.txt: it is 800 bytes, over the 500-byte limit"):
        LabelListDataset(lst)


def test_weight_readers_refuse_what_is_not_a_regular_file(tmp_path, alarm):
    from hgzoo._files import CorruptCheckpointError, safe_load

    fifo = tmp_path / "w.pdparams"
    os.mkfifo(fifo)
    with pytest.raises(CorruptCheckpointError, match="w.pdparams is not a weights file: it is a FIFO"):
        safe_load(fifo)
    (tmp_path / "zero.pt").symlink_to("/dev/zero")
    with pytest.raises(CorruptCheckpointError, match="character device"):
        safe_load(tmp_path / "zero.pt")
