"""Finding weights: the Hugging Face cache or Hub, then the official Paddle URL (downloaded and converted).

Every file is written atomically (a temporary file renamed into place when complete) under a lock,
so an interrupted download never leaves a file that looks valid, and two processes loading the
same weights at once both succeed.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from filelock import FileLock

from ._files import atomic_open
from .pretrained import PADDLE_URL_ROOT, PretrainedCfg

__all__ = ["cache_dir", "resolve_weights", "download_url", "WeightsNotFoundError", "hub_offline"]


class WeightsNotFoundError(RuntimeError):
    """No source could provide the weights."""


def cache_dir() -> Path:
    """``$HGZOO_CACHE``, else ``~/.cache/hgzoo``: where Paddle checkpoints converted on first use are kept."""
    return Path(os.environ.get("HGZOO_CACHE") or Path.home() / ".cache" / "hgzoo")


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def paddle_download_url(cfg: PretrainedCfg) -> str:
    """The official Paddle URL, or its copy under ``$HGZOO_PADDLE_MIRROR`` (a folder URL mirroring
    ``legendary_models/``) for networks that cannot reach Baidu's servers."""
    mirror = os.environ.get("HGZOO_PADDLE_MIRROR")
    if mirror and cfg.paddle_url and cfg.paddle_url.startswith(PADDLE_URL_ROOT):
        return mirror.rstrip("/") + "/" + cfg.paddle_url[len(PADDLE_URL_ROOT):]
    return cfg.paddle_url


def download_url(url: str, dest: Path, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, with a progress bar. Refuses a short (truncated) body."""
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as r, atomic_open(dest) as f:
        total = int(r.headers.get("Content-Length") or 0) or None
        done = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                bar.update(len(chunk))
        if total is not None and done != total:
            raise OSError(f"download of {url} was cut short: {done} of {total} bytes")
    return dest


def _from_hub(cfg: PretrainedCfg) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(cfg.hf_hub_id, "model.safetensors"))


def _from_paddle_url(cfg: PretrainedCfg, progress: bool) -> Path:
    """Download the official .pdparams, convert it, keep the safetensors in the cache, drop the .pdparams."""
    from .convert.export import write_safetensors
    from ._files import CorruptCheckpointError, load_pdparams
    from .convert.paddle import convert_paddle_state_dict
    from ._builder import _build

    out = cache_dir() / "converted" / f"{cfg.name}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if out.is_file():  # another process finished it while we waited
            return out
        raw = cache_dir() / "paddle" / Path(cfg.paddle_url).name
        download_url(paddle_download_url(cfg), raw, progress=progress)
        try:
            sd = load_pdparams(raw)
            model = _build(cfg.architecture, num_classes=cfg.num_classes)
            write_safetensors(convert_paddle_state_dict(sd, model), out, cfg)
        except CorruptCheckpointError as e:
            raise CorruptCheckpointError(f"{e}\nThe corrupt download was removed from the cache; try again.") from e
        finally:
            raw.unlink(missing_ok=True)
    return out


def resolve_weights(cfg: PretrainedCfg, progress: bool = True) -> Path:
    """Local path of ``cfg``'s weights: the Hugging Face cache or Hub, then our cache of converted Paddle
    files, then the official Paddle URL (downloaded, converted and cached). Honours ``HF_HUB_OFFLINE``,
    ``HF_HOME`` and ``HF_ENDPOINT`` (through huggingface_hub) and ``HGZOO_CACHE``.
    """
    errors = []
    if cfg.hf_hub_id:
        try:
            return _from_hub(cfg)
        except Exception as e:  # not cached offline, no network, no such repo: all mean "try the next source"
            errors.append(f"Hugging Face Hub {cfg.hf_hub_id!r}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    converted = cache_dir() / "converted" / f"{cfg.name}.safetensors"
    if converted.is_file():
        return converted
    if cfg.paddle_url and not hub_offline():
        try:
            return _from_paddle_url(cfg, progress)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            errors.append(f"Paddle URL {paddle_download_url(cfg)}: {type(e).__name__}: {e}")
    elif cfg.paddle_url:
        errors.append(f"Paddle URL {cfg.paddle_url}: not tried, HF_HUB_OFFLINE is set")
    raise WeightsNotFoundError(
        f"Could not find weights for {cfg.name}.\n  " + "\n  ".join(errors) + "\nTo fix, either:\n"
        f"  - download {cfg.paddle_url} yourself and pass pretrained_file='.../{Path(cfg.paddle_url or 'x').name}';\n"
        f"  - or convert it once (python -m hgzoo.convert --model {cfg.name} --input FILE --output DIR) and put "
        f"DIR/model.safetensors at {converted};\n"
        "  - or set HF_ENDPOINT to a reachable Hub mirror, or HGZOO_PADDLE_MIRROR to a mirror of the Paddle files "
        "(and unset HF_HUB_OFFLINE)."
    )


def read_hub_config(repo_id: str) -> tuple[dict, Path]:
    """``config.json`` and the weights file of an hgzoo-format Hub repo (``hf-hub:org/repo``)."""
    from huggingface_hub import hf_hub_download

    path = Path(hf_hub_download(repo_id, "config.json"))
    if path.stat().st_size > 1 << 20:
        raise ValueError(f"hf-hub:{repo_id}: config.json is {path.stat().st_size:,} bytes, not a model config")
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"hf-hub:{repo_id}: config.json is not valid JSON ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise ValueError(f"hf-hub:{repo_id}: config.json has no 'architecture'; is it an hgzoo repo?")
    return config, Path(hf_hub_download(repo_id, "model.safetensors"))
