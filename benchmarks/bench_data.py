"""Throughput of the evaluation input pipeline: hgzoo.data against PaddleClas's own, side by side.

Both sides read the same JPEG files from disk, decode them, resize the short side, center-crop, normalize,
and deliver float32 batches through a multi-process data loader with the same batch size and number of
workers; each worker process, and the main process, computes on one thread (torch.set_num_threads(1),
cv2.setNumThreads(1)).

* PaddleClas: a ``paddle.io.Dataset`` as ppcls's ``CommonDataset`` writes it (read the bytes, apply the
  transform ops) with the ops of ``paddleclas.deploy.python.preprocess`` (DecodeImage → ResizeImage →
  CropImage → NormalizeImage → ToCHWImage), batched by ``paddle.io.DataLoader``. It runs in the reference
  environment (tests/reference/setup.sh), in a subprocess of this script.
* hgzoo: ``LabelListDataset`` + ``create_transform(..., normalize=False)`` batched by ``create_eval_loader``
  (the workers send uint8 crops), normalized in the main process by ``Normalizer``.

Usage:
    python benchmarks/bench_data.py [--images DIR] [--num-images 512] [--workers 2] [--batch-size 32]
                                    [--config cv2|pil|both] [--repeats 3]

Without ``--images`` it writes scikit-image's photos (sizes 300x451 to 1411x1411) as JPEGs, repeated up
to ``--num-images`` files. Each side runs ``--repeats`` epochs, taking turns; the best epoch counts. It
prints images/second for both and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {  # PaddleClas's two evaluation pipelines
    "cv2": dict(resize_short=256, interpolation="bilinear", backend="cv2"),  # PP-LCNetV2, HRNet, ResNet-vd
    "pil": dict(resize_short=236, interpolation="bicubic", backend="pil"),  # PP-HGNet_small / _base
}
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _epoch_rate(loader, consume) -> float:
    n = 0
    start = time.perf_counter()
    for batch in loader:
        n += consume(batch)
    return n / (time.perf_counter() - start)


def run_paddle(files: list[str], cfg: dict, workers: int, batch_size: int, repeats: int) -> list[float]:
    """The PaddleClas side (runs in the reference environment)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)
    import cv2
    import paddle
    from paddleclas.deploy.python.preprocess import CropImage, DecodeImage, NormalizeImage, ResizeImage, ToCHWImage

    cv2.setNumThreads(1)
    paddle.set_device("cpu")
    paddle.set_num_threads(1) if hasattr(paddle, "set_num_threads") else None

    class CommonDataset(paddle.io.Dataset):
        def __init__(self) -> None:
            self.ops = [
                DecodeImage(to_rgb=True, channel_first=False),
                ResizeImage(resize_short=cfg["resize_short"], interpolation=cfg["interpolation"],
                            backend=cfg["backend"]),
                CropImage(size=224),
                NormalizeImage(scale=1.0 / 255.0, mean=MEAN, std=STD, order=""),
                ToCHWImage(),
            ]

        def __len__(self) -> int:
            return len(files)

        def __getitem__(self, i: int):
            with open(files[i], "rb") as f:
                img = f.read()
            for op in self.ops:
                img = op(img)
            return img, i

    rates = []
    for _ in range(repeats):
        loader = paddle.io.DataLoader(CommonDataset(), batch_size=batch_size, shuffle=False, drop_last=False,
                                      num_workers=workers, return_list=True)
        rates.append(_epoch_rate(loader, lambda b: int(b[0].shape[0])))
    return rates


def run_hgzoo(files: list[str], cfg: dict, workers: int, batch_size: int, repeats: int, list_file: Path) -> list[float]:
    import torch

    from hgzoo.data import LabelListDataset, Normalizer, create_eval_loader, create_transform, iterate_batches

    torch.set_num_threads(1)
    list_file.write_text("".join(f"{f} 0\n" for f in files))
    transform = create_transform(resize_short=cfg["resize_short"], interpolation=cfg["interpolation"],
                                 resize_backend=cfg["backend"], normalize=False)
    dataset = LabelListDataset(list_file, root="/", transform=transform)
    normalizer = Normalizer(MEAN, STD)
    rates = []
    for _ in range(repeats):
        loader = create_eval_loader(dataset, batch_size=batch_size, workers=workers)
        rates.append(_epoch_rate(iterate_batches(loader, normalizer), lambda b: int(b.images.shape[0])))
    return rates


def make_images(root: Path, num: int) -> list[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from image_samples import PHOTOS, write_photo_jpegs

    base = write_photo_jpegs(root / "photos", PHOTOS)
    files = []
    for i in range(num):
        src = base[i % len(base)]
        dst = root / f"{i:05d}_{src.name}"
        dst.write_bytes(src.read_bytes())
        files.append(str(dst))
    return files


def reference_python() -> str | None:
    for c in (os.environ.get("HGZOO_REF_PYTHON"), str(ROOT / ".venv-ref" / "bin" / "python")):
        if c and Path(c).is_file():
            return c
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", help="a folder of JPEGs (default: scikit-image's photos)")
    ap.add_argument("--num-images", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--config", choices=["cv2", "pil", "both"], default="both")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--side", choices=["paddle"], help=argparse.SUPPRESS)  # internal: the reference subprocess
    ap.add_argument("--files", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.side == "paddle":
        files = Path(args.files).read_text().split("\n")[:-1]
        out = {name: run_paddle(files, CONFIGS[name], args.workers, args.batch_size, args.repeats)
               for name in (CONFIGS if args.config == "both" else [args.config])}
        print(json.dumps(out))
        return 0

    ref_python = reference_python()
    if ref_python is None:
        print("the PaddleClas reference environment is missing: run tests/reference/setup.sh", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.images:
            files = sorted(str(p) for p in Path(args.images).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
            files = (files * (args.num_images // max(len(files), 1) + 1))[:args.num_images]
        else:
            files = make_images(tmp, args.num_images)
        if not files:
            print(f"no JPEG found under {args.images}", file=sys.stderr)
            return 1
        (tmp / "files.txt").write_text("".join(f + "\n" for f in files))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["OMP_NUM_THREADS"] = "1"
        names = list(CONFIGS) if args.config == "both" else [args.config]
        paddle_rates = {n: [] for n in names}
        our_rates = {n: [] for n in names}
        for _ in range(args.repeats):  # the two sides take turns, so that both see the same machine load
            proc = subprocess.run(
                [ref_python, __file__, "--side", "paddle", "--files", str(tmp / "files.txt"), "--config",
                 args.config, "--workers", str(args.workers), "--batch-size", str(args.batch_size), "--repeats", "1"],
                capture_output=True, text=True, env=env,
            )
            if proc.returncode != 0:
                print(f"the PaddleClas side failed:\n{proc.stdout}\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            for n, rates in json.loads(proc.stdout.strip().splitlines()[-1]).items():
                paddle_rates[n] += rates
            for n in names:
                our_rates[n] += run_hgzoo(files, CONFIGS[n], args.workers, args.batch_size, 1, tmp / "list.txt")
        print(f"{len(files)} JPEGs, batch {args.batch_size}, {args.workers} workers, best of {args.repeats} epochs")
        for name, rates in paddle_rates.items():
            ours = our_rates[name]
            cfg = CONFIGS[name]
            print(f"{name:4s} (resize {cfg['resize_short']} {cfg['interpolation']}): "
                  f"PaddleClas {max(rates):7.1f} img/s,  hgzoo {max(ours):7.1f} img/s,  "
                  f"ratio {max(ours) / max(rates):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
