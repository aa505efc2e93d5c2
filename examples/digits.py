#!/usr/bin/env python
"""Write scikit-learn's bundled handwritten digits (1,797 8x8 grayscale images, 10 classes, no download) as an
ImageFolder: ``OUT/train/<digit>/*.png`` and ``OUT/val/<digit>/*.png``, a stratified 80/20 split.

    python examples/digits.py data/digits

It is the "own classes" set of the README's fine-tuning walk-through: a domain unlike Fashion-MNIST's clothes,
small enough to fine-tune on in minutes on a CPU.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def write_digits(out: Path, val_fraction: float = 0.2, seed: int = 0) -> dict[str, int]:
    """Write the folder tree; returns the number of images per split. The 17 grey levels (0..16) become 0..255."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "val": 0}
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == label))
        n_val = int(round(len(idx) * val_fraction))
        for split, chosen in (("val", idx[:n_val]), ("train", idx[n_val:])):
            folder = out / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(images[i]).save(folder / f"{i:04d}.png")
            counts[split] += len(chosen)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", help="folder to write (must not hold a train/ or val/ folder already)")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.output)
    if (out / "train").exists() or (out / "val").exists():
        print(f"error: {out} already holds train/ or val/; give an empty folder", file=sys.stderr)
        return 2
    counts = write_digits(out, args.val_fraction, args.seed)
    print(f"wrote {counts['train']} training and {counts['val']} validation images to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
