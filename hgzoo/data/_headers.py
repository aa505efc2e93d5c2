"""The size an image decoder will produce, read from the file's own headers before anything is decoded.

torchvision's decoders (libjpeg-turbo, libpng, giflib, libwebp) allocate what a header declares. PIL's
header reader is not a safe stand-in for them: it stops at problems the decoders do not care about (a bad
checksum on a PNG text chunk), and takes another SOF marker of a JPEG than libjpeg does. So each format is
parsed here as its decoder parses it, and a header that cannot be read is refused, never waved through:

* PNG: the IHDR chunk, which must come first (libpng's output is exactly its width and height);
* JPEG: every frame header (SOFn) before the first scan, the largest counted (libjpeg skips stray bytes
  between markers, and so does this parser); more than :data:`MAX_JPEG_SCANS` scans are refused (each
  progressive scan is another pass over the whole image);
* GIF: the logical screen and the first frame's descriptor (giflib allocates both); :func:`first_gif_frame`
  cuts the file after its first frame, so that an animation decodes one frame (as OpenCV reads a GIF);
* WebP: the canvas (VP8X) and every frame or bitstream header (ANMF, VP8, VP8L), the largest counted.
"""
from __future__ import annotations

import struct

__all__ = ["HeaderError", "torchvision_format", "declared_size", "first_gif_frame", "is_animated_webp",
           "MAX_JPEG_SCANS"]

#: Progressive JPEGs have about 10 scans; a file with thousands makes libjpeg pass over the image thousands of times.
MAX_JPEG_SCANS = 1000

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class HeaderError(ValueError):
    """The header cannot be read: the image is refused (the message says why)."""


def torchvision_format(data: bytes) -> str | None:
    """``"jpeg"``, ``"png"``, ``"gif"`` or ``"webp"`` (what torchvision decodes), or None, from the magic bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def declared_size(data: bytes, fmt: str) -> tuple[int, int]:
    """``(width, height)`` of the largest buffer the decoder of ``fmt`` allocates for ``data``."""
    sizes = {"png": _png, "jpeg": _jpeg, "gif": _gif, "webp": _webp}[fmt](data)
    if not sizes:
        raise HeaderError(f"its {fmt.upper()} header declares no image size")
    w, h = max(sizes, key=lambda s: s[0] * s[1])
    if min(min(s) for s in sizes) <= 0:
        raise HeaderError(f"its {fmt.upper()} header declares an empty image")
    return w, h


def _png(data: bytes) -> list[tuple[int, int]]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise HeaderError("its PNG header (IHDR) is missing or truncated")
    w, h = struct.unpack(">II", data[16:24])
    return [(w, h)]


def _jpeg(data: bytes) -> list[tuple[int, int]]:
    sizes, i, n = [], 2, len(data)
    while i + 1 < n:
        if data[i] != 0xFF:  # stray bytes before a marker: libjpeg skips them, with a warning
            i = data.find(b"\xff", i)
            if i < 0:
                break
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x00, 0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or the first scan: the frame is known by now
            break
        if i + 4 > n:
            break
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in _SOF:
            if i + 9 > n:
                raise HeaderError("its JPEG frame header (SOF) is truncated")
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            sizes.append((w, h))
        i += 2 + max(length, 2)
    if not sizes:
        raise HeaderError("it has no JPEG frame header (SOF) before its image data")
    if data.count(b"\xff\xda") > MAX_JPEG_SCANS:
        raise HeaderError(f"it has more than {MAX_JPEG_SCANS} JPEG scans (each one a pass over the whole image)")
    return sizes


def _gif_blocks(data: bytes, i: int) -> int:
    """The offset after a chain of GIF data sub-blocks starting at ``i``."""
    n = len(data)
    while True:
        if i >= n:
            raise HeaderError("its GIF data is truncated before the end of its first frame")
        size = data[i]
        i += 1 + size
        if size == 0:
            return i


def _gif_first_frame(data: bytes) -> tuple[int, tuple[int, int]]:
    """(the offset after the first frame, that frame's size)."""
    if len(data) < 13:
        raise HeaderError("its GIF header is truncated")
    flags, i, n = data[10], 13, len(data)
    if flags & 0x80:
        i += 3 << ((flags & 7) + 1)
    while i < n:
        kind = data[i]
        if kind == 0x21:  # an extension: label, then sub-blocks
            i = _gif_blocks(data, i + 2)
        elif kind == 0x2C:  # the first frame: descriptor, local color table, LZW code size, sub-blocks
            if i + 10 > n:
                raise HeaderError("its first GIF frame descriptor is truncated")
            w, h = struct.unpack("<HH", data[i + 5:i + 9])
            local = data[i + 9]
            i += 10 + ((3 << ((local & 7) + 1)) if local & 0x80 else 0)
            return _gif_blocks(data, i + 1), (w, h)
        elif kind == 0x3B:
            break
        else:
            raise HeaderError(f"it holds an unknown GIF record (0x{kind:02x} at byte {i}), which giflib refuses too")
    raise HeaderError("it has no GIF frame")


def _gif(data: bytes) -> list[tuple[int, int]]:
    w, h = struct.unpack("<HH", data[6:10]) if len(data) >= 10 else (0, 0)
    return [(w, h), _gif_first_frame(data)[1]]


def first_gif_frame(data: bytes) -> bytes:
    """The GIF cut after its first frame (with its trailer): giflib then decodes that frame only."""
    end, _ = _gif_first_frame(data)
    return bytes(data[:end]) + b"\x3b"


def _webp(data: bytes) -> list[tuple[int, int]]:
    sizes, i, n = [], 12, len(data)
    while i + 8 <= n:
        kind, length = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
        body = data[i + 8:i + 8 + min(length, 32)]
        if kind == b"VP8X" and len(body) >= 10:
            sizes.append((1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little")))
        elif kind == b"ANMF" and len(body) >= 12:
            sizes.append((1 + int.from_bytes(body[6:9], "little"), 1 + int.from_bytes(body[9:12], "little")))
            i += 8 + 16  # the frame's own chunks follow its 16-byte header
            continue
        elif kind == b"VP8 " and len(body) >= 10:
            w, h = struct.unpack("<HH", body[6:10])
            sizes.append((w & 0x3FFF, h & 0x3FFF))
        elif kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
            bits = int.from_bytes(body[1:5], "little")
            sizes.append(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        i += 8 + length + (length & 1)
    return sizes


def is_animated_webp(data: bytes) -> bool:
    """A WebP with an animation (VP8X's animation flag): torchvision refuses it, PIL decodes its first frame."""
    return data[12:16] == b"VP8X" and len(data) > 20 and bool(data[20] & 0x02)
