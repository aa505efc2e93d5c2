"""Apply PaddleClas's own evaluation preprocessing to image files: the oracle for hgzoo.data's parity tests.

This runs in the *reference* environment (paddlepaddle + paddleclas + faiss-cpu), never in hgzoo's.
The ops are the ones the ``paddleclas`` command and the inference configs use, from
``paddleclas.deploy.python.preprocess``:

    DecodeImage(to_rgb=True, channel_first=False)      # cv2.imdecode(bytes, IMREAD_COLOR), BGR → RGB
    ResizeImage(resize_short=N, interpolation=I, backend=B)
    CropImage(size=C)
    NormalizeImage(scale=1/255, mean, std, order="")
    ToCHWImage()

Each op takes the previous op's output; the first takes the encoded bytes of the file.

Each ``--config RESIZE_SHORT,INTERPOLATION,BACKEND`` (e.g. ``256,bilinear,cv2`` or ``236,bicubic,pil``;
an empty interpolation is the backend's default) is one ResizeImage setting; the crop is ``--crop``.

Output (``--out FILE.npz``), for the i-th file: ``decoded{i}`` the decoded HWC uint8 RGB image and, for
the c-th config, ``x{c}_{i}`` the final CHW float32 tensor; or ``error{i}`` (a string) when PaddleClas's
ops raise.

Usage: python paddle_preprocess.py --out FILE.npz [--config 256,bilinear,cv2 ...] [--crop 224] IMAGE [IMAGE ...]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)  # faiss's loader logs at import
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from paddleclas.deploy.python.preprocess import (  # noqa: E402
    CropImage,
    DecodeImage,
    NormalizeImage,
    ResizeImage,
    ToCHWImage,
)

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", action="append", default=[], help="RESIZE_SHORT,INTERPOLATION,BACKEND")
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("images", nargs="+")
    args = ap.parse_args()

    decode = DecodeImage(to_rgb=True, channel_first=False)
    pipelines = []
    for config in args.config or ["256,,cv2"]:
        resize_short, interpolation, backend = config.split(",")
        pipelines.append([
            ResizeImage(resize_short=int(resize_short), interpolation=interpolation or None, backend=backend),
            CropImage(size=args.crop),
            NormalizeImage(scale=1.0 / 255.0, mean=MEAN, std=STD, order=""),
            ToCHWImage(),
        ])
    arrays: dict[str, np.ndarray] = {}
    for i, path in enumerate(args.images):
        with open(path, "rb") as f:
            data = f.read()
        try:
            decoded = decode(data)
            arrays[f"decoded{i}"] = np.ascontiguousarray(decoded)
            for c, ops in enumerate(pipelines):
                img = decoded
                for op in ops:
                    img = op(img)
                arrays[f"x{c}_{i}"] = np.ascontiguousarray(img, dtype=np.float32)
        except Exception as e:  # noqa: BLE001  (recorded for the test to inspect)
            arrays[f"error{i}"] = np.array(f"{type(e).__name__}: {e}")
    np.savez(args.out, **arrays)
    print(f"wrote {len(args.images)} results to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
