"""Which checkpoints a run keeps (``--checkpoint-hist N``): the N best evaluated epochs, by timm's rule.

timm's ``CheckpointSaver`` (``timm/utils/checkpoint_saver.py``) ranks epochs by their eval metric, best first, an
earlier epoch ahead of a later one with the same metric; a new epoch enters while fewer than N are kept or when it is
strictly better than the worst kept one, which it then displaces. hgzoo keeps the same epochs, in N files and no
duplicate: the best as ``best.pt`` (as with N = 1, the default), the others as ``checkpoint-<epoch>.pt`` (timm keeps
N ``checkpoint-<epoch>.pth.tar`` and a copy of the best as ``model_best.pth.tar``).

Each file records its own epoch and top-1 (``hgzoo.checkpoint.read_info`` reads them), so a resumed run recovers its
history from the folder itself (:meth:`CheckpointHistory.recover`), with no index beside the files to drift from them:
files of epochs the resumed ``last.pt`` does not contain (a run killed between the two) are removed, as are the
worst beyond N when N is smaller than before. An epoch without evaluation (``--eval-every``) has no metric and is not
kept: in timm that happens only without any validation set, where it keeps the latest epochs instead.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .utils import atomic_save

__all__ = ["CheckpointHistory", "Kept", "BEST", "kept_files"]

#: The best kept epoch's file.
BEST = "best.pt"
_OTHER = re.compile(r"checkpoint-(\d+)\.pt")


def _name(epoch: int) -> str:
    return f"checkpoint-{epoch}.pt"


def kept_files(folder: str | os.PathLike) -> list[Path]:
    """The files of kept checkpoints in ``folder``: ``best.pt`` and ``checkpoint-<epoch>.pt``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name == BEST or _OTHER.fullmatch(p.name))


@dataclass(frozen=True)
class Kept:
    """A kept checkpoint: its epoch (1-based, as in summary.csv) and the metric it is ranked by."""

    epoch: int
    metric: float


class CheckpointHistory:
    """The ``keep`` best epochs of the run in ``folder``, best first (:attr:`kept`), and their files.

    ``decreasing``: a lower metric is better (timm's ``decreasing=True``, for a loss); hgzoo ranks by top-1.
    """

    def __init__(self, folder: str | os.PathLike, keep: int, decreasing: bool = False) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"--checkpoint-hist must be a whole number >= 1, got {keep!r}")
        self.folder, self.keep, self.decreasing = Path(folder), keep, decreasing
        self.kept: list[Kept] = []

    def better(self, a: float, b: float) -> bool:
        """Whether metric ``a`` ranks strictly ahead of ``b`` (a tie does not)."""
        return a < b if self.decreasing else a > b

    def admits(self, metric: float) -> bool:
        return len(self.kept) < self.keep or self.better(metric, self.kept[-1].metric)

    def _order(self, entries: list[Kept]) -> list[Kept]:
        """Best first; among equal metrics the earlier epoch first (timm's stable sort of epochs in order)."""
        return sorted(entries, key=lambda k: (-k.metric if not self.decreasing else k.metric, k.epoch))

    def add(self, epoch: int, metric: float, state: Callable[[], dict]) -> bool:
        """Offer an evaluated epoch; if it earns a place, write ``state()`` as its file and drop the worst one
        beyond ``keep``. Returns whether it was kept. Each file is written by the one atomic writer before any
        other changes, so a failed write (a full disk: one line naming the file) leaves the kept files as they were.
        """
        if not self.admits(metric):
            return False
        new = Kept(epoch, metric)
        if not self.kept or (self.keep == 1 and self.better(metric, self.kept[0].metric)):
            atomic_save(state(), self.folder / BEST)  # the only one, or it replaces the only one
            self.kept = [new]
            return True
        evicted = self.kept[-1] if len(self.kept) == self.keep else None
        atomic_save(state(), self.folder / _name(epoch))
        if self.better(metric, self.kept[0].metric):  # a new best: the old best.pt becomes checkpoint-<its epoch>
            self._demote_best(self.kept[0].epoch)
            os.replace(self.folder / _name(epoch), self.folder / BEST)
        self.kept = self._order([*self.kept, new])
        if evicted is not None:
            self.kept.remove(evicted)
            (self.folder / _name(evicted.epoch)).unlink(missing_ok=True)
        return True

    def _demote_best(self, epoch: int) -> None:
        """``best.pt`` becomes ``checkpoint-<epoch>.pt``, and stays in place until the new best replaces it (a hard
        link; where the file system has none, a rename: a crash then leaves no best.pt until recovered)."""
        target = self.folder / _name(epoch)
        target.unlink(missing_ok=True)
        try:
            os.link(self.folder / BEST, target)
        except OSError:
            os.replace(self.folder / BEST, target)

    @classmethod
    def recover(cls, folder: str | os.PathLike, keep: int, up_to_epoch: int, decreasing: bool = False,
                read: Callable[[Path], tuple[int | None, float | None]] | None = None
                ) -> tuple[CheckpointHistory, list[str]]:
        """The history of the run in ``folder`` as its files record it (epoch and top-1, read by
        ``hgzoo.checkpoint.read_info``, or ``read``), for a run that continues after epoch ``up_to_epoch``.
        Files of later epochs, duplicates and those beyond ``keep`` are removed, and the best is made ``best.pt``;
        returns the history and the names of the removed files. ValueError (one line, naming the file) for a
        kept file that cannot be read or does not say its epoch and top-1."""
        self = cls(folder, keep, decreasing)
        found: dict[int, Path] = {}
        removed: list[Path] = []
        entries: list[Kept] = []
        for path in sorted(kept_files(folder), key=lambda p: p.name != BEST):  # best.pt first: it wins a duplicate
            epoch, metric = (read or _read)(path)
            if epoch is None or metric is None:
                raise ValueError(f"{path} does not record its epoch and top-1, so --checkpoint-hist cannot rank it; "
                                 "move it out of the run folder")
            named = _OTHER.fullmatch(path.name)
            if named and int(named.group(1)) != epoch:
                raise ValueError(f"{path} records epoch {epoch}, not the epoch its name says; move it out of the run "
                                 "folder")
            if epoch > up_to_epoch or epoch in found:  # an epoch the resumed run redoes, or a copy left by a crash
                removed.append(path)
                continue
            found[epoch] = path
            entries.append(Kept(epoch, metric))
        ranked = self._order(entries)
        self.kept = ranked[:keep]
        removed += [found[k.epoch] for k in ranked[keep:]]
        for path in removed:
            path.unlink()
        if self.kept and found[self.kept[0].epoch].name != BEST:
            best = self.folder / BEST
            if best.exists():  # the best file holds a kept epoch that is no longer the best
                os.replace(best, self.folder / _name(next(e for e, p in found.items() if p.name == BEST)))
            os.replace(found[self.kept[0].epoch], best)
        return self, [p.name for p in removed]


def _read(path: Path) -> tuple[int | None, float | None]:
    from ..checkpoint import read_info

    info = read_info(path)
    return info.epoch, info.top1
