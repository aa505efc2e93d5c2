"""A seeded fuzz pass over the image reader and the three weight readers (issue 27).

Valid PNG, JPEG, GIF (animated), WebP, TIFF and BMP images, safetensors, torch zip files and ``.pdparams``
files are mutated at random (bytes flipped, fields set to extremes, ranges cut, copied or inserted, files
truncated) and read. The invariant: a result, or a one-line refusal of the project's types
(:class:`~hgzoo.data.ImageDecodeError`, :class:`~hgzoo._files.CorruptCheckpointError`,
:class:`~hgzoo._files.UnsafePickleError`), within the memory limit (``RLIMIT_AS``) and the time limit; never
another exception, a multi-line message, a crash or a hang.

The cases run in a worker process under the limits; a case that kills it or runs past the time limit is
recorded and the worker is restarted after it. ``tests/test_fuzz.py`` runs a short pass in CI; a longer one::

    PYTHONPATH=. python tests/fuzz_inputs.py --cases 5000 --seed 1
"""
from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KINDS = ("png", "jpeg", "gif", "webp", "tiff", "bmp", "safetensors", "torch", "pdparams")
#: The address-space limit of the worker: torch's import maps about 1.5 GiB of it; the rest is for reading.
MEMORY_LIMIT = 6 << 30
CASE_SECONDS = 20


def seeds() -> dict[str, bytes]:
    """One small valid file of each kind."""
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    out: dict[str, bytes] = {}
    for kind, fmt, extra in (("png", "PNG", {}), ("jpeg", "JPEG", {"quality": 80}), ("webp", "WEBP", {}),
                             ("tiff", "TIFF", {"compression": "tiff_lzw"}), ("bmp", "BMP", {})):
        buf = io.BytesIO()
        rgb.save(buf, fmt, **extra)
        out[kind] = buf.getvalue()
    buf = io.BytesIO()
    frames = [rgb.convert("P")] + [Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).convert("P")]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out["gif"] = buf.getvalue()
    torch.manual_seed(0)  # the same seed files, so that a seed replays the same cases
    state = {"conv.weight": torch.randn(4, 3, 3, 3), "bn.running_mean": torch.zeros(4), "fc.bias": torch.ones(2)}
    out["safetensors"] = save(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    out["torch"] = buf.getvalue()
    out["pdparams"] = pickle.dumps({k: v.numpy() for k, v in state.items()}, protocol=2)
    return out


_EXTREMES = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff", b"\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff",
             b"\x00\x00\x00\x00", b"\x00\x01\x00\x00")


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random mutations of ``data``."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        n = len(buf)
        if n < 2:
            break
        op, i = rng.randrange(7), rng.randrange(n)
        if op == 0:  # flip bits
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # a random byte
            buf[i] = rng.randrange(256)
        elif op == 2:  # a field set to an extreme (sizes, lengths, counts)
            value = rng.choice(_EXTREMES)
            buf[i:i + len(value)] = value
        elif op == 3:  # cut a range
            del buf[i:i + rng.randint(1, 64)]
        elif op == 4:  # copy a range elsewhere
            j = rng.randrange(n)
            buf[j:j] = buf[i:i + rng.randint(1, 64)]
        elif op == 5:  # insert random bytes
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:  # truncate
            del buf[rng.randrange(1, n):]
    return bytes(buf)


def _read(kind: str, data: bytes, folder: Path) -> str:
    """Read one mutated file; returns "ok" or "refused", raises anything else."""
    from hgzoo._files import CorruptCheckpointError, UnsafePickleError, safe_load
    from hgzoo.data import ImageDecodeError, create_transform, max_image_pixels, read_image

    path = folder / f"case.{kind}"
    path.write_bytes(data)
    try:
        if kind in KINDS[:6] and os.environ.get("FUZZ_READER") == "torchvision":  # the decoder before issue 27
            from torchvision.io import decode_image

            try:
                decode_image(torch_bytes(data))
            except RuntimeError:
                return "refused"
            return "ok"
        if kind in KINDS[:6]:
            img = read_image(path)
            assert img.dtype.is_floating_point is False and img.ndim == 3 and img.shape[0] == 3, img.shape
            assert img.shape[1] * img.shape[2] <= max_image_pixels(), img.shape
            create_transform(None, resize_short=64, crop_size=56)(img)
        else:
            safe_load(path)
    except (ImageDecodeError, CorruptCheckpointError, UnsafePickleError) as e:
        if "\n" in str(e).strip():
            raise AssertionError(f"a refusal of more than one line: {str(e)[:300]!r}") from None
        return "refused"
    except ValueError as e:  # a crop larger than a tiny decoded image: the transform's own one-line error
        if "cannot crop" not in str(e):
            raise
        return "refused"
    return "ok"


def torch_bytes(data: bytes):
    import torch

    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def worker(cases: list[tuple[int, str, int]], seed_files: dict[str, bytes]) -> None:
    """Run ``cases`` (index, kind, seed), printing one JSON line per case."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    with tempfile.TemporaryDirectory() as tmp:
        for index, kind, seed in cases:
            print(json.dumps({"start": index}), flush=True)
            data = mutate(seed_files[kind], random.Random(seed))
            t0 = time.perf_counter()
            try:
                outcome, detail = _read(kind, data, Path(tmp)), ""
            except BaseException as e:  # noqa: BLE001 - every other exception is a finding
                first = (str(e).strip().splitlines() or [""])[0][:300]
                outcome, detail = "finding", f"{type(e).__name__}: {first}"
            print(json.dumps({"index": index, "kind": kind, "seed": seed, "outcome": outcome, "detail": detail,
                              "seconds": round(time.perf_counter() - t0, 3)}), flush=True)


def run(cases: int, seed: int, kinds: tuple[str, ...] = KINDS, mutations: list[int] | None = None) -> dict:
    """Fuzz ``cases`` mutated files (spread over ``kinds``; or the given ``mutations`` seeds, to replay a finding);
    returns the counts and the findings."""
    rng = random.Random(seed)
    mutations = mutations or [rng.randrange(2**32) for _ in range(cases)]
    plan = [(i, kinds[i % len(kinds)], m) for i, m in enumerate(mutations)]
    cases = len(plan)
    counts = {k: {"ok": 0, "refused": 0} for k in kinds}
    findings: list[dict] = []
    slowest: dict = {}
    while plan:
        # stderr to a file: decoders warn on every corrupt file, and a pipe nobody reads would fill and block them
        log = tempfile.TemporaryFile("w+")
        proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=log, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        proc.stdin.write(json.dumps(plan))
        proc.stdin.close()
        done, current = set(), None
        deadline = time.monotonic() + 300  # the import on a busy machine; then each case resets it
        for line in _lines(proc, lambda: deadline):
            msg = json.loads(line)
            if "start" in msg:
                current, deadline = msg["start"], time.monotonic() + CASE_SECONDS
                continue
            done.add(msg["index"])
            if msg["seconds"] >= slowest.get("seconds", 0):
                slowest = {k: msg[k] for k in ("kind", "seed", "seconds")}
            if msg["outcome"] == "finding":
                findings.append(msg)
            else:
                counts[msg["kind"]][msg["outcome"]] += 1
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if current is not None and current not in done:  # killed, crashed or out of time on this case
            case = next(c for c in plan if c[0] == current)
            findings.append({"index": current, "kind": case[1], "seed": case[2], "outcome": "finding",
                             "detail": f"the reader died or hung (exit {proc.returncode}): "
                                       f"{_tail(log)}"})
            done.add(current)
        elif current is None and not done:
            raise RuntimeError(f"the fuzz worker failed to start: {_tail(log, 2000)}")
        log.close()
        plan = [c for c in plan if c[0] not in done]
    return {"cases": cases, "seed": seed, "counts": counts, "findings": findings, "slowest_case": slowest}


def _tail(log, n: int = 300) -> str:
    log.seek(0)
    return log.read().strip()[-n:]


def _lines(proc: subprocess.Popen, deadline):
    """stdout lines of ``proc`` until it ends or ``deadline()`` passes (the worker is then killed)."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while True:
        left = deadline() - time.monotonic()
        if left <= 0:
            proc.kill()
            return
        if not sel.select(timeout=min(left, 1.0)):
            continue
        line = proc.stdout.readline()
        if not line:
            return
        yield line


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kinds", default=",".join(KINDS), help="a comma-separated subset of " + ",".join(KINDS))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker([tuple(c) for c in json.loads(sys.stdin.read())], seeds())
        return
    report = run(args.cases, args.seed, tuple(args.kinds.split(",")))
    print(json.dumps(report, indent=2))
    sys.exit(1 if report["findings"] else 0)


if __name__ == "__main__":
    main()
