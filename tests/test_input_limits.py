"""Issue 27's image cases through the command a user runs, ``python -m hgzoo predict <files>``, under a memory limit.

One run reads every hostile file beside a good one (a run costs seconds to start): each hostile file must give
exactly one ``error:`` line naming it and saying why, the good ones must still be classified, the exit code is 1
(predict's "some images failed"), there is no traceback, no hang (a FIFO among the files), and the process's
peak memory stays under a stated bound while its address space is limited (``RLIMIT_AS``) far below what the
old reader allocated (7 to 19 GB on these files).
"""
from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_image_bounds import BAD_CRC_TEXT, animated_gif, jpeg_bytes, with_jpeg_size, zero_png

import hgzoo

# Each case runs the command in a process with a memory limit: the full suite, not the fast tier.
pytestmark = pytest.mark.slow

Image = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parent.parent
MODEL = "pplcnetv2_small"
#: The address space the command may map: torch's import maps about 3 GiB of it (its libraries, not memory used).
ADDRESS_SPACE = 4 << 30
#: The peak resident memory allowed: predict's baseline is about 0.9 GiB (torch and the model).
PEAK_RSS = 1536 << 20
PIXELS = 2_000_000  # --max-image-pixels for the run: the files stay small
ANIMATION = animated_gif(1000, 600)  # 600 frames, each 1000 x 1000 once decoded; 0.1 MB on disk


def hostile_files(d: Path) -> dict[str, tuple[Path, str | None]]:
    """name → (file, what its error line must say; None: it must be classified)."""
    out: dict[str, tuple[Path, str | None]] = {}

    def put(name: str, data: bytes, expect: str | None) -> None:
        (d / name).write_bytes(data)
        out[name] = (d / name, expect)

    Image.new("RGB", (300, 200), (30, 60, 90)).save(d / "good.jpg")
    out["good.jpg"] = (d / "good.jpg", None)
    put("thin.png", zero_png(1, 65535), "resized to a short side of 256 it would be 256x16776960")
    put("wide.png", zero_png(65535, 1), "it would be 16776960x256")
    put("crc.png", zero_png(20_000, 20_000, BAD_CRC_TEXT), "20000x20000 = 400,000,000 pixels")
    put("anim.gif", ANIMATION, None)  # a million-pixel canvas, 600 frames: 1.8 GB decoded before
    put("big.jpg", with_jpeg_size(jpeg_bytes(), 30_000, 30_000), "30000x30000")
    buf = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buf, "WEBP", lossless=True)
    webp = bytearray(buf.getvalue())
    j = webp.index(b"VP8L") + 9
    webp[j:j + 4] = (16383 | (16383 << 14)).to_bytes(4, "little")
    put("big.webp", bytes(webp), "16384x16384")
    pages = [Image.new("RGB", (64, 48), (200, 10, 10)), Image.new("L", (4000, 4000))]
    pages[0].save(d / "pages.tiff", save_all=True, append_images=pages[1:], compression="tiff_deflate")
    out["pages.tiff"] = (d / "pages.tiff", None)  # the first page is read, not the 16-megapixel second one
    Image.new("L", (4000, 4000)).save(d / "big.tiff", compression="tiff_deflate")
    out["big.tiff"] = (d / "big.tiff", "4000x4000 = 16,000,000 pixels")
    bmp = struct.pack("<2sIHHI", b"BM", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 30_000, 30_000, 1, 24, 0, 0,
                                                                     0, 0, 0, 0)
    put("big.bmp", bmp, "30000x30000")
    sys.path.insert(0, str(Path(__file__).parent))
    from fuzz_inputs import mutate, seeds

    corrupt = mutate(seeds()["png"], random.Random(3412707896))  # a bad filter byte: it killed torchvision's decoder
    put("corrupt.png", corrupt, "PIL cannot decode it")
    Image.new("RGB", (1200, 1000)).save(d / "heavy.bmp")  # 3.6 MB: over the byte limit set below
    out["heavy.bmp"] = (d / "heavy.bmp", "over the 3,000,000-byte limit (HGZOO_MAX_IMAGE_BYTES")
    os.mkfifo(d / "pipe.jpg")
    out["pipe.jpg"] = (d / "pipe.jpg", "FIFO (named pipe), not a regular file")
    (d / "zero.png").symlink_to("/dev/zero")
    out["zero.png"] = (d / "zero.png", "character device, not a regular file")
    try:
        os.mknod(d / "node.png", 0o600 | 0o020000, os.makedev(1, 5))  # /dev/zero's own device number
        out["node.png"] = (d / "node.png", "character device")
    except (PermissionError, OSError):
        pass  # not root: the symbolic link covers the device
    return out


# Runs the command from a small Python process: a child forked from pytest would count pytest's own memory
# (the fork's copy) in its peak RSS.
_WRAPPER = """
import resource, subprocess, sys

limit, timeout, report = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    code = subprocess.run(sys.argv[4:], preexec_fn=cap, timeout=timeout).returncode
except subprocess.TimeoutExpired:
    code = "timeout"
open(report, "w").write(f"{code} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
"""


def run_limited(argv: list[str], out_dir: Path, env: dict[str, str], timeout: float = 300):
    """Run ``argv`` with its address space limited; (exit code, stdout, stderr, peak RSS in bytes). A run that
    hangs is killed after ``timeout`` seconds and reported as exit code ``"timeout"``."""
    report = out_dir / "report"
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, str(ADDRESS_SPACE), str(timeout), str(report), *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout + 60,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **env})
    code, peak_kib = report.read_text().split()
    return (code if code == "timeout" else int(code)), proc.stdout, proc.stderr, int(peak_kib) * 1024


def test_predict_on_hostile_images_under_a_memory_limit(tmp_path):
    files = tmp_path / "in"
    files.mkdir()
    cases = hostile_files(files)
    weights = tmp_path / "w.pt"
    torch.save({"model": hgzoo.create_model(MODEL, num_classes=2).state_dict()}, weights)
    argv = [sys.executable, "-m", "hgzoo", "predict", "--model", MODEL, "--pretrained-file", str(weights),
            "--max-image-pixels", str(PIXELS), "--batch-size", "64", "--topk", "1", *(str(p) for p, _ in
                                                                                       cases.values())]
    code, out, err, peak = run_limited(argv, tmp_path, {"HGZOO_MAX_IMAGE_BYTES": "3000000"})
    assert "Traceback" not in err and "MemoryError" not in err, err[-3000:]
    assert code == 2, (code, err[-3000:])  # bad input files: exit 2 (docs/safety.md), the good ones still printed
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    for name, (path, expect) in cases.items():
        mine = [line for line in errors if f"cannot decode image {path}:" in line]
        if expect is None:
            assert not mine and f"{path}:" in out, (name, mine, out)
        else:
            assert len(mine) == 1 and expect in mine[0], (name, mine)
    assert len(errors) == sum(expect is not None for _, expect in cases.values()), errors
    print(f"predict on {len(cases)} files: peak RSS {peak / 2**20:.0f} MiB")
    assert peak < PEAK_RSS, f"peak RSS {peak / 2**20:.0f} MiB, over {PEAK_RSS / 2**20:.0f} MiB"


def test_the_memory_limit_catches_an_unbounded_read(tmp_path):
    """The limit is tight enough to fail: a read that allocates what a hostile file asks is stopped by it."""
    gif = tmp_path / "anim.gif"
    gif.write_bytes(ANIMATION)
    code = ("import sys, torch; from torchvision.io import decode_image; "
            "decode_image(torch.frombuffer(bytearray(open(sys.argv[1], 'rb').read()), dtype=torch.uint8))")
    rc, _, err, _ = run_limited([sys.executable, "-c", code, str(gif)], tmp_path, {})
    assert rc != 0 and ("memory" in err.lower() or "alloc" in err.lower()), err[-2000:]


def test_validate_skips_a_thin_image_by_name(tmp_path):
    """The resize's refusal is a bad image like any other: validate --skip-bad-images counts and names it."""
    data = tmp_path / "val"
    for k, cls in enumerate(("a", "b")):
        (data / cls).mkdir(parents=True)
        Image.new("RGB", (300, 200), (30 + 100 * k, 60, 90)).save(data / cls / "good.jpg")
    (data / "a" / "thin.png").write_bytes(zero_png(65535, 1))
    weights = tmp_path / "w.pt"
    torch.save({"model": hgzoo.create_model(MODEL, num_classes=2).state_dict()}, weights)
    argv = [sys.executable, "validate.py", "--model", MODEL, "--num-classes", "2", "--checkpoint", str(weights),
            "--data-dir", str(data), "--workers", "1", "--no-progress", "--skip-bad-images"]
    code, out, err, peak = run_limited(argv, tmp_path, {})
    assert code == 0 and "Traceback" not in err, err[-3000:]
    assert "2 images, 1 bad" in out and f"{data / 'a' / 'thin.png'}: it is 65535x1: resized" in out, out
    assert peak < PEAK_RSS
