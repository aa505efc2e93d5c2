"""A run's output folder: checked before any work, locked against a second run, and what reusing it needs."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch.distributed as dist

from .._files import LOCK_NAME, FolderInUseError, lock_folder, unlock_folder
from .config import ConfigError, TrainConfig
from .history import kept_files

__all__ = ["prepare_output", "RUN_FILES"]

#: The files a run writes into its output folder (``--overwrite`` removes them before a new run starts), besides the
#: ``checkpoint-<epoch>.pt`` that ``--checkpoint-hist N`` keeps (:func:`hgzoo.train.history.kept_files`).
RUN_FILES = ("config.yaml", "summary.csv", "last.pt", "best.pt", "curves.png", "tb")


def _refuse_reuse(out: Path, existing: list[str]) -> ConfigError:
    """Why ``out`` is not reused, and what would work with the files that are there."""
    held = f"{', '.join(existing[:4])}{', ...' if len(existing) > 4 else ''}"
    if "last.pt" in existing:
        fix = f"give --resume {out / 'last.pt'} to continue that run, --overwrite to replace it, or another --output"
    else:
        fix = ("it has no last.pt to resume from (that run stopped before its first checkpoint); give --overwrite "
               "to start again there, or another --output")
    return ConfigError(f"--output {out} already holds files ({held}); {fix}")


def prepare_output(cfg: TrainConfig, main: bool = True) -> Path:
    """The run's output folder, checked before any work: not a file, writable, not in use by another run (rank 0
    holds its lock until :func:`run` ends), and not holding another run (unless ``--resume`` continues the run
    that is there, or ``--overwrite`` replaces it)."""
    if cfg.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("--tensorboard needs the tensorboard package: pip install 'hgzoo[tensorboard]'")
    out = Path(cfg.output or f"output/{cfg.model.split('.')[0]}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out} is a file, not a folder; give a folder for the run's checkpoints")
    resuming_here = cfg.resume and Path(cfg.resume).resolve().parent == out.resolve()
    lock = _lock(out) if main else None
    try:
        existing = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) if out.is_dir() else []
        if existing and not resuming_here and not cfg.overwrite:
            raise _refuse_reuse(out, existing)
        if dist.is_initialized():
            dist.barrier()  # every rank has seen the folder as it was before rank 0 writes into it
        if main:
            _clear_and_probe(out, cfg.overwrite and not resuming_here)
    except BaseException:
        if lock is not None:
            unlock_folder(lock)
        raise
    return out


def _lock(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        return lock_folder(out)
    except FolderInUseError as e:
        raise ConfigError(f"--output {e}") from None
    except OSError as e:
        raise ConfigError(f"--output {out} cannot be written ({e.strerror}); give a writable folder") from None


def _clear_and_probe(out: Path, clear: bool) -> None:
    try:
        if clear:
            for target in {*(out / name for name in RUN_FILES), *kept_files(out)}:
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"--output {out} cannot be written ({e.strerror}); give a writable folder") from None
