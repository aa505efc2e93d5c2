"""Finding weights: a tag's own list of exact sources (a timm Hub repo, the official Paddle URL), and the cache.

The hub returns files; the builder converts them (:func:`hgzoo._builder.load_pretrained`). Nothing is asked of a
Hub organisation or a host that the tag does not name. Each downloaded file's sha256 is computed, checked against
the tag's pin if it has one, and recorded beside the converted file in the cache
(``<cache>/converted/<arch>.<tag>.safetensors`` and ``.json``), which is used only while the tag still lists the
source it came from and that source's pins still hold.

Every file is written atomically (a temporary file renamed into place when complete) under a lock, so an
interrupted download never leaves a file that looks valid, and two processes loading the same weights at once
both succeed. A Hub that cannot be reached (``HF_HUB_OFFLINE``, no network, an unreachable ``HF_ENDPOINT``) is
noticed within seconds, and the Hugging Face cache alone is used.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ._files import atomic_open, atomic_write, read_safetensors
from .pretrained import PADDLE_BUCKET, PretrainedCfg, WeightSource

__all__ = [
    "cache_dir", "resolve_weights", "download_url", "WeightsNotFoundError", "WeightsIntegrityError", "hub_offline",
    "ResolvedWeights", "converted_path", "cached_problem", "write_converted", "read_hub_config", "PROBE_TIMEOUT",
]

#: Seconds to wait for a TCP connection to a host before deciding it cannot be reached.
PROBE_TIMEOUT = 3.0


class WeightsNotFoundError(RuntimeError):
    """No source could provide the weights."""


class WeightsIntegrityError(ValueError):
    """A downloaded file is not the one the tag pins (another sha256 or Hub revision)."""


@dataclass(frozen=True)
class ResolvedWeights:
    """A local file of a tag's weights: where it came from, its sha256, the Hub commit (``hf-hub`` sources), and
    whether it is a download hgzoo owns and removes once converted (a Paddle ``.pdparams``)."""

    path: Path
    source: WeightSource
    sha256: str
    revision: str | None = None
    temporary: bool = False

    def record(self) -> dict:
        """What the cache keeps about the file: the source, its digest and commit."""
        return {"source": {"kind": self.source.kind, "location": self.source.location,
                           "filename": self.source.filename if self.source.kind == "hf-hub" else None,
                           "layout": self.source.layout},
                "sha256": self.sha256, "revision": self.revision}


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """``override`` (``create_model(cache_dir=...)``), else ``$HGZOO_CACHE``, else ``~/.cache/hgzoo``: where converted
    weights (and Paddle downloads, while they are converted) are kept."""
    if override is not None:
        return Path(override)
    return Path(os.environ.get("HGZOO_CACHE") or Path.home() / ".cache" / "hgzoo")


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def converted_path(cfg: PretrainedCfg, cache: str | os.PathLike | None = None) -> Path:
    return cache_dir(cache) / "converted" / f"{cfg.name}.safetensors"


def paddle_download_url(url: str) -> str:
    """``url``, or its copy under ``$HGZOO_PADDLE_MIRROR`` (a folder URL mirroring the bucket's
    ``dygraph/legendary_models/``, or the bucket's root for files outside it) for networks that cannot reach Baidu."""
    mirror = os.environ.get("HGZOO_PADDLE_MIRROR")
    if not mirror or not url.startswith(PADDLE_BUCKET):
        return url
    rest = url[len(PADDLE_BUCKET):]
    legendary = "dygraph/legendary_models/"
    return mirror.rstrip("/") + "/" + (rest[len(legendary):] if rest.startswith(legendary) else rest)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=None)
def _reachable(url: str) -> bool:
    """Whether a TCP connection to ``url``'s host (or the proxy for it) opens within :data:`PROBE_TIMEOUT`: the
    Hub's client retries an unreachable host for 23 s before giving up."""
    parts = urllib.parse.urlsplit(url)
    proxy = None if urllib.request.proxy_bypass(parts.hostname or "") else urllib.request.getproxies().get(parts.scheme)
    target = urllib.parse.urlsplit(proxy) if proxy else parts
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((target.hostname, port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def download_url(url: str, dest: Path, progress: bool = True, timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest`` atomically, with a progress bar; returns the file's sha256. Refuses a short
    (truncated) body."""
    from tqdm.auto import tqdm

    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as r, atomic_open(dest) as f:
        total = int(r.headers.get("Content-Length") or 0) or None
        done = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                h.update(chunk)
                done += len(chunk)
                bar.update(len(chunk))
        if total is not None and done != total:
            raise OSError(f"download of {url} was cut short: {done} of {total} bytes")
    return h.hexdigest()


def _check_pins(source: WeightSource, sha256: str, revision: str | None, path: Path) -> None:
    if source.sha256 and sha256 != source.sha256:
        raise WeightsIntegrityError(f"{source.describe()}: the file downloaded ({path}) has sha256 {sha256}, the tag "
                                    f"pins {source.sha256}; refused (a changed or tampered file)")
    if source.revision and revision != source.revision:
        raise WeightsIntegrityError(f"{source.describe()}: the file is from commit {revision}, the tag pins "
                                    f"{source.revision}; refused")


def _from_hub(source: WeightSource, cache: str | os.PathLike | None) -> ResolvedWeights:
    from huggingface_hub import constants, hf_hub_download

    offline = hub_offline()
    local_only = offline or not _reachable(constants.ENDPOINT)
    try:
        path = Path(hf_hub_download(source.location, source.filename, revision=source.revision,
                                    cache_dir=cache, local_files_only=local_only))
    except FileNotFoundError as e:  # LocalEntryNotFoundError: not cached, and the Hub was not asked
        if not local_only:
            raise
        why = "HF_HUB_OFFLINE is set" if offline else f"{constants.ENDPOINT} cannot be reached (no TCP connection " \
                                                       f"in {PROBE_TIMEOUT:.0f} s)"
        raise FileNotFoundError(f"not in the Hugging Face cache, and {why}") from e
    # The Hub cache keeps each file under snapshots/<commit>/: that is the commit it came from.
    revision = path.parent.name if path.parent.parent.name == "snapshots" else None
    sha = _sha256(path)
    _check_pins(source, sha, revision, path)
    return ResolvedWeights(path, source, sha, revision)


def _from_url(source: WeightSource, cache: str | os.PathLike | None, progress: bool) -> ResolvedWeights:
    url = paddle_download_url(source.location)
    if not _reachable(url):
        raise OSError(f"{urllib.parse.urlsplit(url).netloc} cannot be reached (no TCP connection in "
                      f"{PROBE_TIMEOUT:.0f} s)")
    raw = cache_dir(cache) / "downloads" / Path(urllib.parse.urlsplit(source.location).path).name
    sha = download_url(url, raw, progress=progress)
    try:
        _check_pins(source, sha, None, raw)
    except WeightsIntegrityError:
        raw.unlink(missing_ok=True)
        raise
    return ResolvedWeights(raw, source, sha, temporary=True)


def _not_found(cfg: PretrainedCfg, errors: list[str], cache: str | os.PathLike | None) -> WeightsNotFoundError:
    url = cfg.paddle_url
    lines = [f"Could not find weights for {cfg.name}.", *(f"  {e}" for e in errors), "To fix, either:"]
    if url:
        lines.append(f"  - download {url} yourself and pass pretrained_file='.../{Path(url).name}';")
    lines += [f"  - or put the converted file at {converted_path(cfg, cache)} (python -m hgzoo.convert writes it);",
              "  - or set HF_ENDPOINT to a reachable Hub mirror, or HGZOO_PADDLE_MIRROR to a mirror of the Paddle "
              "files (and unset HF_HUB_OFFLINE)."]
    return WeightsNotFoundError("\n".join(lines))


def resolve_weights(cfg: PretrainedCfg, progress: bool = True,
                    cache: str | os.PathLike | None = None) -> ResolvedWeights:
    """A local file of ``cfg``'s weights, from its ``sources`` in order and nowhere else: a Hub file from the Hugging
    Face cache or the Hub (``HF_HUB_OFFLINE``, ``HF_HOME``, ``HF_ENDPOINT`` honoured; ``cache`` is the Hub cache
    folder if given), or a URL (``HGZOO_PADDLE_MIRROR`` honoured) downloaded into ``cache_dir(cache)/downloads``.

    A source that cannot be reached or does not have the file is passed over (an unreachable host within
    :data:`PROBE_TIMEOUT` seconds); a file that breaks the tag's sha256 or revision pin is refused
    (:class:`WeightsIntegrityError`). Raises :class:`WeightsNotFoundError` naming every source and why it failed.
    """
    errors = []
    for source in cfg.sources:
        if source.kind == "hf-hub":
            try:
                return _from_hub(source, cache)
            except WeightsIntegrityError:
                raise
            except Exception as e:  # not cached offline, no network, no such repo: all mean "try the next source"
                errors.append(f"{source.describe()}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        elif hub_offline():
            errors.append(f"{source.describe()}: not tried, HF_HUB_OFFLINE is set")
        else:
            try:
                return _from_url(source, cache, progress)
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                errors.append(f"{paddle_download_url(source.location)}: {type(e).__name__}: {e}")
    if not cfg.sources:
        errors.append("the tag lists no source")
    raise _not_found(cfg, errors, cache)


def cached_problem(path: Path, cfg: PretrainedCfg) -> str | None:
    """Why the converted file ``path`` must not serve ``cfg`` (None if it may): it came from a source the tag no
    longer lists, or breaks that source's sha256 or revision pin. A file with no record was put there by hand (or by
    an older hgzoo) and is used like a ``pretrained_file``, unless the tag pins its source, which it cannot prove."""
    beside = path.with_suffix(".json")
    try:  # the record beside the file; the copy in the file's own metadata if that is gone
        if beside.is_file() and beside.stat().st_size < 1 << 16:
            record = json.loads(beside.read_text())
        else:
            record = json.loads(read_safetensors(path)[1].get("hgzoo_source") or "null")
    except (ValueError, OSError) as e:
        return f"its record cannot be read ({str(e).splitlines()[0]})"
    if record is None:
        pinned = [s.describe() for s in cfg.sources if s.sha256 or s.revision]
        return f"it records no source, and {cfg.name} pins {pinned[0]}" if pinned else None
    if not isinstance(record, dict) or not isinstance(record.get("source"), dict):
        return "its source record is malformed"
    location = record["source"].get("location")
    source = next((s for s in cfg.sources if s.location == location), None)
    if source is None:
        return f"it came from {location}, which {cfg.name} does not list"
    if source.sha256 and record.get("sha256") != source.sha256:
        return f"it was converted from a file with sha256 {record.get('sha256')}, the tag pins {source.sha256}"
    if source.revision and record.get("revision") != source.revision:
        return f"it was converted from commit {record.get('revision')}, the tag pins {source.revision}"
    return None


def write_converted(path: Path, state_dict: dict, cfg: PretrainedCfg, resolved: ResolvedWeights) -> Path:
    """The converted ``state_dict`` as safetensors at ``path`` (the source record in its metadata), and the record
    as ``<path>.json`` beside it; both written atomically."""
    from safetensors.torch import save

    record = {"tag": cfg.name, **resolved.record()}
    meta = {"format": "pt", "hgzoo_pretrained_cfg": json.dumps(cfg.to_dict()), "hgzoo_source": json.dumps(record)}
    atomic_write(path, save({k: v.contiguous() for k, v in state_dict.items()}, metadata=meta))
    atomic_write(path.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    return path


def read_hub_config(repo_id: str, cache: str | os.PathLike | None = None) -> tuple[dict, Path]:
    """``config.json`` and ``model.safetensors`` of a Hub repo (``hf-hub:org/repo``): one written by
    ``python -m hgzoo.convert`` (an hgzoo architecture) or by timm (a timm architecture)."""
    from huggingface_hub import constants, hf_hub_download

    local_only = hub_offline() or not _reachable(constants.ENDPOINT)
    path = Path(hf_hub_download(repo_id, "config.json", cache_dir=cache, local_files_only=local_only))
    config = _model_config(path, f"hf-hub:{repo_id}")
    weights = hf_hub_download(repo_id, "model.safetensors", cache_dir=cache, local_files_only=local_only)
    return config, Path(weights)


def read_local_dir(folder: str | os.PathLike) -> tuple[dict, Path]:
    """``config.json`` and ``model.safetensors`` of a Hub folder on disk (``local-dir:FOLDER``, timm's spelling):
    what ``python -m hgzoo.convert --output FOLDER`` or :func:`hgzoo.publish.save_pretrained` wrote."""
    folder = Path(folder).expanduser()
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"local-dir:{folder}: no {name} (a folder written by python -m hgzoo.convert "
                                    "--output or hgzoo.publish.save_pretrained)")
    return _model_config(folder / "config.json", f"local-dir:{folder}"), folder / "model.safetensors"


def _model_config(path: Path, label: str) -> dict:
    if path.stat().st_size > 1 << 20:
        raise ValueError(f"{label}: config.json is {path.stat().st_size:,} bytes, not a model config")
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{label}: config.json is not valid JSON ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise ValueError(f"{label}: config.json has no 'architecture'; is it an hgzoo or timm repo?")
    return config
