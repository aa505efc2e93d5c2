"""train.py --checkpoint-hist N (issue 26): the N best evaluated epochs kept by timm's rule, as best.pt and
checkpoint-<epoch>.pt, recovered from the run folder on --resume.

The reference is timm's own CheckpointSaver, driven with the same (epoch, metric) sequence in a scratch folder.
"""
from __future__ import annotations

import csv
import errno
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hgzoo.checkpoint import read_info
from hgzoo.train.history import BEST, CheckpointHistory

pytestmark = pytest.mark.usefixtures("one_thread")

SEQUENCES = {
    "rising": [10.0, 20.0, 30.0, 40.0, 50.0],
    "falling": [50.0, 40.0, 30.0, 20.0, 10.0],
    "ties": [30.0, 30.0, 20.0, 30.0, 40.0, 30.0, 40.0, 20.0],
    "mixed": [20.0, 50.0, 10.0, 40.0, 40.0, 30.0, 60.0, 5.0, 60.0],
}


def timm_kept(seq: list[float], keep: int, decreasing: bool, folder: Path) -> list[tuple[list[int], int]]:
    """After each epoch 1, 2, ... of ``seq``: the epochs timm's CheckpointSaver keeps (best first), its best epoch."""
    from timm.utils import CheckpointSaver

    model = torch.nn.Linear(1, 1)
    saver = CheckpointSaver(model, torch.optim.SGD(model.parameters(), lr=0.1), checkpoint_dir=str(folder),
                            recovery_dir=str(folder), decreasing=decreasing, max_history=keep)
    steps = []
    for epoch, metric in enumerate(seq, 1):
        saver.save_checkpoint(epoch, metric)
        steps.append(([int(Path(f).name[len("checkpoint-"):-len(".pth.tar")]) for f, _ in saver.checkpoint_files],
                      saver.best_epoch))
    files = sorted(p.name for p in folder.glob("checkpoint-*"))
    assert files == sorted(f"checkpoint-{e}.pth.tar" for e in steps[-1][0])
    return steps


def _state(epoch: int, metric: float) -> dict:
    """A train.py checkpoint's description, tiny weights, and the epoch's metric as its top-1."""
    return {"hgzoo_checkpoint": 3, "model_name": "pphgnetv2_b0", "model": {"w": torch.full((2,), float(epoch))},
            "epoch": epoch, "top1": metric, "top5": 100.0}


def hgzoo_kept(seq: list[float], keep: int, decreasing: bool, folder: Path, start: int = 1,
               history: CheckpointHistory | None = None, cls=CheckpointHistory, steps: list | None = None
               ) -> CheckpointHistory:
    """``seq`` offered as epochs ``start``, ``start + 1``, ...; ``steps`` collects the kept epochs after each."""
    history = history or cls(folder, keep, decreasing)
    for epoch, metric in enumerate(seq, start):
        history.add(epoch, metric, lambda e=epoch, m=metric: _state(e, m))
        if steps is not None:
            steps.append([k.epoch for k in history.kept])
    return history


def on_disk(folder: Path) -> dict[str, tuple[int, float]]:
    """Each kept file in ``folder`` as hgzoo's checkpoint reader reads it: name -> (epoch, top-1)."""
    out = {}
    for p in sorted(folder.iterdir()):
        info = read_info(p)
        assert torch.equal(torch.load(p, weights_only=True)["model"]["w"], torch.full((2,), float(info.epoch)))
        out[p.name] = (info.epoch, info.top1)
    return out


def expected_files(kept: list[int], seq: list[float], start: int = 1) -> dict[str, tuple[int, float]]:
    return {(BEST if i == 0 else f"checkpoint-{e}.pt"): (e, seq[e - start]) for i, e in enumerate(kept)}


@pytest.mark.parametrize("decreasing", [False, True], ids=["top1", "loss"])
@pytest.mark.parametrize("keep", [1, 3])
@pytest.mark.parametrize("name", list(SEQUENCES))
def test_keeps_the_epochs_timm_keeps(name, keep, decreasing, tmp_path):
    """After every epoch the same kept epochs in the same order as timm's saver, its best first; on disk N files,
    each read back by hgzoo's checkpoint reader with its epoch and metric."""
    seq = SEQUENCES[name]
    (tmp_path / "timm").mkdir(), (tmp_path / "hgzoo").mkdir()
    reference, steps = timm_kept(seq, keep, decreasing, tmp_path / "timm"), []
    hgzoo_kept(seq, keep, decreasing, tmp_path / "hgzoo", steps=steps)
    assert steps == [kept for kept, _ in reference] and all(kept[0] == best for kept, best in reference)
    assert on_disk(tmp_path / "hgzoo") == expected_files(reference[-1][0], seq)  # the best is best.pt, not a copy


def test_a_rule_that_lets_a_tie_displace_the_worst_is_caught(tmp_path):
    """The comparison can fail: with >= a later epoch equal to the worst kept one displaces it; timm's does not."""
    class TiesDisplace(CheckpointHistory):
        def better(self, a: float, b: float) -> bool:
            return a >= b

    seq = SEQUENCES["ties"]
    (tmp_path / "timm").mkdir(), (tmp_path / "broken").mkdir(), (tmp_path / "hgzoo").mkdir()
    reference, steps, broken = [kept for kept, _ in timm_kept(seq, 3, False, tmp_path / "timm")], [], []
    hgzoo_kept(seq, 3, False, tmp_path / "hgzoo", steps=steps)
    hgzoo_kept(seq, 3, False, tmp_path / "broken", cls=TiesDisplace, steps=broken)
    assert steps == reference and broken != reference
    assert broken[5] == [5, 1, 6] and reference[5] == [5, 1, 2]  # epoch 6 (30.0) ties the worst, epoch 2 (30.0)


@pytest.mark.parametrize("name", ["ties", "mixed"])
@pytest.mark.parametrize("stop", [2, 4, 6])
def test_resume_continues_the_rule_from_the_files(name, stop, tmp_path):
    """A new history over the folder (as --resume builds it) reads what each file records and goes on as an
    uninterrupted run would, and as timm's saver does."""
    seq, keep = SEQUENCES[name], 3
    (tmp_path / "timm").mkdir(), (tmp_path / "run").mkdir()
    kept = timm_kept(seq, keep, False, tmp_path / "timm")[-1][0]
    hgzoo_kept(seq[:stop], keep, False, tmp_path / "run")
    resumed, removed = CheckpointHistory.recover(tmp_path / "run", keep, up_to_epoch=stop)
    assert removed == []
    hgzoo_kept(seq[stop:], keep, False, tmp_path / "run", start=stop + 1, history=resumed)
    assert [k.epoch for k in resumed.kept] == kept
    assert on_disk(tmp_path / "run") == expected_files(kept, seq)


def test_a_run_killed_before_its_last_pt(tmp_path):
    """Epoch 5 became the best (best.pt) and the old best became checkpoint-2.pt, then the run died before last.pt
    recorded epoch 5: resuming after epoch 4 removes epoch 5's file and makes epoch 2's best.pt again."""
    seq = [10.0, 50.0, 20.0, 30.0, 90.0]
    hgzoo_kept(seq, 3, False, tmp_path)
    assert on_disk(tmp_path)[BEST] == (5, 90.0)
    history, removed = CheckpointHistory.recover(tmp_path, 3, up_to_epoch=4)
    assert removed == [BEST] and [k.epoch for k in history.kept] == [2, 4]
    assert on_disk(tmp_path) == {BEST: (2, 50.0), "checkpoint-4.pt": (4, 30.0)}


def test_a_copy_left_between_two_writes_and_a_smaller_hist(tmp_path):
    """best.pt hard-linked as checkpoint-<epoch>.pt but not yet replaced (a crash in between): the copy is dropped.
    Resuming with a smaller --checkpoint-hist removes the worst files beyond it."""
    hgzoo_kept([10.0, 50.0, 20.0, 30.0], 3, False, tmp_path)
    os.link(tmp_path / BEST, tmp_path / "checkpoint-2.pt")
    history, removed = CheckpointHistory.recover(tmp_path, 3, up_to_epoch=4)
    assert removed == ["checkpoint-2.pt"] and [k.epoch for k in history.kept] == [2, 4, 3]
    os.replace(tmp_path / BEST, tmp_path / "checkpoint-2.pt")  # best.pt holding another kept epoch than the best
    os.replace(tmp_path / "checkpoint-4.pt", tmp_path / BEST)
    history, removed = CheckpointHistory.recover(tmp_path, 3, up_to_epoch=4)
    assert removed == [] and on_disk(tmp_path) == expected_files([2, 4, 3], [10.0, 50.0, 20.0, 30.0])
    history, removed = CheckpointHistory.recover(tmp_path, 1, up_to_epoch=4)
    assert sorted(removed) == ["checkpoint-3.pt", "checkpoint-4.pt"] and on_disk(tmp_path) == {BEST: (2, 50.0)}


def test_a_file_that_does_not_say_its_epoch_is_named(tmp_path):
    torch.save({"model": {}}, tmp_path / "checkpoint-3.pt")
    with pytest.raises(ValueError, match=r"checkpoint-3.pt does not record its epoch and top-1"):
        CheckpointHistory.recover(tmp_path, 2, up_to_epoch=5)
    torch.save(_state(4, 1.0), tmp_path / "checkpoint-3.pt")
    with pytest.raises(ValueError, match=r"checkpoint-3.pt records epoch 4, not the epoch its name says"):
        CheckpointHistory.recover(tmp_path, 2, up_to_epoch=5)


def test_a_full_disk_names_the_file_and_keeps_the_files(tmp_path, capsys, monkeypatch):
    """A write that fails (ENOSPC at fsync) is one line naming the checkpoint, exit 1; the kept files are as before."""
    import hgzoo._files
    from hgzoo.cli.base import guarded_main

    history = hgzoo_kept([10.0, 50.0, 20.0], 2, False, tmp_path)
    before = on_disk(tmp_path)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(hgzoo._files.os, "fsync", full)
    assert guarded_main(lambda argv: hgzoo_kept([90.0], 2, False, tmp_path, start=4, history=history) and 0) == 1
    monkeypatch.undo()
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot write {tmp_path / 'checkpoint-4.pt'}: no space left on the device (ENOSPC); free " \
                  "some space and run again", err
    assert on_disk(tmp_path) == before and [k.epoch for k in history.kept] == [2, 3]


def test_bad_values_and_the_run_folder(tmp_path, capsys):
    """--checkpoint-hist 0 is one line and exit 2; --overwrite removes the kept checkpoints, and a folder that holds
    them is not reused without it."""
    from hgzoo.cli.train import main
    from hgzoo.train.config import ConfigError, resolve_config
    from hgzoo.train.output import prepare_output

    for bad in ("0", "-2"):
        assert main(["--model", "pphgnetv2_b0", "--data-dir", str(tmp_path), "--checkpoint-hist", bad]) == 2
        assert capsys.readouterr().err.strip() == f"error: --checkpoint-hist must be in [1, inf), got {bad}"
    with pytest.raises(ValueError, match="--checkpoint-hist must be a whole number >= 1, got 0"):
        CheckpointHistory(tmp_path, 0)
    out = tmp_path / "run"
    hgzoo_kept([10.0, 50.0, 20.0], 2, False, out)
    (out / "notes.txt").write_text("mine")
    base = ["--model", "pphgnetv2_b0", "--data-dir", str(tmp_path), "--output", str(out), "--checkpoint-hist", "2"]
    with pytest.raises(ConfigError, match=r"already holds files \(best.pt, checkpoint-3.pt, notes.txt\)"):
        prepare_output(resolve_config(base))
    prepare_output(resolve_config([*base, "--overwrite"]))
    assert sorted(p.name for p in out.iterdir()) == [".lock", "notes.txt"]


@pytest.mark.slow
def test_train_keeps_two_and_resume_goes_on(tmp_path, capsys):
    """train.py --checkpoint-hist 2 for 2 epochs, then --resume to 3: best.pt and one checkpoint-<epoch>.pt, the
    epochs timm's saver keeps when fed the run's own summary.csv, each file holding its epoch's top-1."""
    from image_samples import photos, write_png

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import train as train_cli

    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 8)):
        for cls, img in photos(("chelsea", "coffee")).items():
            (data / split / cls).mkdir(parents=True)
            for i in range(n):
                y, x = rng.integers(0, 200, 2)
                write_png(data / split / cls / f"{i}.png", img[y:y + 96:3, x:x + 96:3])
    out = tmp_path / "run"
    argv = ["--model", "pphgnetv2_b0", "--img-size", "32", "--batch-size", "4", "--workers", "0", "--no-progress",
            "--lr", "0.05", "--warmup-epochs", "0", "--plot", "false", "--data-dir", str(data), "--output", str(out),
            "--checkpoint-hist", "2"]
    assert train_cli.main([*argv, "--epochs", "2"]) == 0, capsys.readouterr().err
    assert train_cli.main(["--resume", str(out / "last.pt"), "--epochs", "3"]) == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(out / "summary.csv")))
    seq = [float(r["eval_top1"]) for r in rows]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    (tmp_path / "timm").mkdir()
    kept = timm_kept(seq, 2, False, tmp_path / "timm")[-1][0]
    files = {p.name: p for p in out.glob("*.pt") if p.name != "last.pt"}
    assert {n: (read_info(p).epoch, round(read_info(p).top1, 3)) for n, p in files.items()} == \
        expected_files(kept, seq)
    assert read_info(files[BEST]).model_name == "pphgnetv2_b0"
    other = next(p for n, p in files.items() if n != BEST)
    other.write_bytes(b"not a checkpoint")  # a kept file that cannot be read: one line naming it, exit 2
    capsys.readouterr()
    assert train_cli.main(["--resume", str(out / "last.pt"), "--epochs", "4"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: --resume: {other} is not a weights file hgzoo reads")
