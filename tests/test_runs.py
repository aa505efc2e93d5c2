"""Runs and files under a careless user and a hostile machine: two runs in one folder, a failed run's folder,
a full disk, a file-size limit and a read-only folder, each through the command a user runs.

Each case checks the exit code, one ``error:`` line naming the file and the cause, no traceback, and that nothing
was left half-written (no ``.part`` temporary, no partial target, no lock).
"""
from __future__ import annotations

import csv
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import one_error_line
from image_samples import photos, write_png

ROOT = Path(__file__).resolve().parent.parent
MODEL = "pplcnetv2_small"
TRAIN = ["--model", MODEL, "--img-size", "32", "--batch-size", "4", "--workers", "0", "--no-progress", "--epochs",
         "1", "--max-steps-per-epoch", "1", "--lr", "0.01", "--warmup-epochs", "0", "--threads", "1",
         "--plot", "false"]

# Real train.py, export and convert runs in processes: the full suite, not the fast tier.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def _limits(fsize: int | None, memory: int | None) -> callable:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so that a write over the limit fails with EFBIG
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    return apply


def command(*argv: str, fsize: int | None = None, memory: int | None = None) -> subprocess.Popen:
    """Start ``python argv...`` (``fsize``: the largest file it may write; ``memory``: its address space, bytes)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT, preexec_fn=_limits(fsize, memory))


def run(*argv: str, fsize: int | None = None, memory: int | None = None) -> subprocess.CompletedProcess:
    proc = command(*argv, fsize=fsize, memory=memory)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def leftovers(folder: Path) -> list[str]:
    """Temporaries and locks: what a finished or failed command must not leave."""
    return sorted(p.name for p in folder.rglob(".*") if p.name.endswith(".part") or p.name == ".lock"
                  or p.is_dir() and p.name.startswith("."))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """An ImageFolder with train/ and val/, two classes of real photo crops (32x32 PNGs)."""
    root = tmp_path_factory.mktemp("data")
    ph = photos(("chelsea", "coffee"))
    for split, n in (("train", 4), ("val", 2)):
        for cls, img in ph.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                write_png(root / split / cls / f"{i}.png", img[20 * i:20 * i + 96:3, 30 * i:30 * i + 96:3])
    return root


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    proc = run("train.py", *TRAIN, "--data-dir", str(data), "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _train_in_process(argv: list[str], capsys) -> subprocess.CompletedProcess:
    from hgzoo.cli.train import main

    capsys.readouterr()
    code = main(argv)
    cap = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, cap.out, cap.err)


# ---------------------------------------------------------------------------------------------- one folder, one run

def test_two_runs_started_together_in_one_folder(data, tmp_path):
    """The issue's case: two train.py runs, one --output. One trains; the other refuses in one line; summary.csv
    holds one run's rows."""
    out = tmp_path / "run"
    argv = ["train.py", *TRAIN, "--data-dir", str(data), "--output", str(out), "--max-steps-per-epoch", "3",
            "--batch-size", "2"]
    procs = [command(*argv), command(*argv)]
    outputs = [p.communicate(timeout=600) for p in procs]
    results = [subprocess.CompletedProcess(argv, p.returncode, *o) for p, o in zip(procs, outputs)]
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], [r.stderr[-2000:] for r in results]
    refused = next(r for r in results if r.returncode == 2)
    line = one_error_line(refused, 2, str(out))
    assert "in use by another run" in line or "already holds files" in line, line
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [row["epoch"] for row in rows] == ["1"]
    assert leftovers(out) == []


def test_a_live_lock_refuses_and_a_stale_one_is_taken_over(data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(f'{{"pid": {holder.pid}, "host": "{socket.gethostname()}"}}')
        proc = _train_in_process([*TRAIN, "--data-dir", str(data), "--output", str(out)], capsys)
        one_error_line(proc, 2, "--output", "in use by another run", f"process {holder.pid}")
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the owner's lock is kept, nothing written
    finally:
        holder.kill()
        holder.wait()
    (out / ".lock").write_text(f'{{"pid": {holder.pid}, "host": "another-host"}}')  # alive or not: cannot tell
    proc = _train_in_process([*TRAIN, "--data-dir", str(data), "--output", str(out)], capsys)
    one_error_line(proc, 2, "in use by another run", "another-host", f"delete {out / '.lock'}")
    dead = _dead_pid()
    (out / ".lock").write_text(f'{{"pid": {dead}, "host": "{socket.gethostname()}"}}')
    proc = _train_in_process([*TRAIN, "--data-dir", str(data), "--output", str(out)], capsys)
    assert proc.returncode == 0, proc.stderr
    assert f"was left by process {dead}, which is no longer running; taking it over" in proc.stderr
    assert (out / "last.pt").is_file() and leftovers(out) == []


def test_a_failed_runs_folder_suggests_what_exists(finished, data, tmp_path, capsys):
    """A run that stopped before its first checkpoint has no last.pt: the refusal does not suggest resuming it."""
    failed = tmp_path / "failed"
    failed.mkdir()
    shutil.copy(finished / "config.yaml", failed / "config.yaml")
    line = one_error_line(_train_in_process([*TRAIN, "--data-dir", str(data), "--output", str(failed)], capsys), 2,
                          "already holds files (config.yaml)", "no last.pt", "--overwrite")
    assert "--resume" not in line
    line = one_error_line(_train_in_process([*TRAIN, "--data-dir", str(data), "--output", str(finished)], capsys), 2,
                          f"--resume {finished / 'last.pt'}")  # the one that can be resumed says how


# ---------------------------------------------------------------------------------------------- full disk, size limit

def test_checkpoint_over_the_file_size_limit(data, tmp_path):
    """train.py under RLIMIT_FSIZE (EFBIG, as a full disk would give ENOSPC): one line naming the checkpoint."""
    out = tmp_path / "run"
    proc = run("train.py", *TRAIN, "--data-dir", str(data), "--output", str(out), fsize=64 << 10)
    one_error_line(proc, 1, "cannot write", str(out), ".pt", "EFBIG", "file-size limit")
    assert not [p for p in out.iterdir() if p.suffix == ".pt"] and leftovers(out) == []


def test_export_over_the_file_size_limit(tmp_path):
    target = tmp_path / "m.onnx"
    proc = run("-m", "hgzoo", "export", "--model", MODEL, "--num-classes", "2", "--img-size", "32", "--no-verify",
               "--output", str(target), fsize=64 << 10)
    one_error_line(proc, 1, f"cannot write {target}", "EFBIG")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no file, no work folder


def test_convert_over_the_file_size_limit(finished, tmp_path):
    out = tmp_path / "hub"
    proc = run("-m", "hgzoo.convert", "--input", str(finished / "best.pt"), "--output", str(out), fsize=64 << 10)
    one_error_line(proc, 1, "cannot write", str(out), "model.safetensors", "EFBIG")
    assert not (out / "model.safetensors").exists() and leftovers(out) == []


@pytest.fixture
def read_only_folder(tmp_path) -> Path:
    """A folder on a read-only bind mount (EROFS: chmod does not stop root); skipped where mounting is not allowed."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir(), ro.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "--bind", "-o", "ro", str(src), str(ro)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("no read-only bind mount here (needs mount and CAP_SYS_ADMIN)")
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("the bind mount is not read-only here")
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def test_export_into_a_read_only_folder(read_only_folder):
    proc = run("-m", "hgzoo", "export", "--model", MODEL, "--num-classes", "2", "--img-size", "32", "--no-verify",
               "--output", str(read_only_folder / "m.onnx"))
    one_error_line(proc, 2, "--output", str(read_only_folder), "read-only", "EROFS")
    assert list(read_only_folder.iterdir()) == []


def test_a_write_that_fails_inside_torch_save_names_the_file(tmp_path, capsys):
    """torch.save turns a failed write into a RuntimeError that never says why; the cause (here EROFS, simulated
    with a monkeypatched write) is found behind it, and the atomic writer leaves nothing."""
    import errno

    import torch

    from hgzoo._files import atomic_open
    from hgzoo.cli.base import guarded_main

    class ReadOnly:
        def write(self, data):
            raise OSError(errno.EROFS, "Read-only file system")

        def flush(self):
            pass

    def save(argv):
        with atomic_open(tmp_path / "x.pt"):
            torch.save({"w": torch.zeros(4)}, ReadOnly())
        return 0

    assert guarded_main(save) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: cannot write {tmp_path / 'x.pt'}: the file system is read-only (EROFS); give a " \
                          "writable place", err
    assert list(tmp_path.iterdir()) == []


def test_an_unrelated_runtime_error_still_shows_its_traceback():
    """The check that the test above can fail: no OSError behind it, so it is a bug and not one line."""
    from hgzoo.cli.base import guarded_main

    def bug(argv):
        raise RuntimeError("unexpected pos 704 vs 598")

    with pytest.raises(RuntimeError):
        guarded_main(bug)


# ---------------------------------------------------------------------------------------------- a tampered last.pt

def _tamper(state: dict, case: str) -> None:
    import torch

    if case == "epoch-string":
        state["epoch"] = "1"
    elif case == "epoch-negative":
        state["epoch"] = -5
    elif case == "best-nan":
        state["best_top1"] = float("nan")
    elif case == "optimizer-shape":
        pid, entry = next((k, v) for k, v in state["optimizer"]["state"].items()
                          if any(isinstance(t, torch.Tensor) and t.ndim > 0 for t in v.values()))
        name = next(n for n, t in entry.items() if isinstance(t, torch.Tensor) and t.ndim > 0)
        entry[name] = torch.zeros(3)
    elif case == "optimizer-groups":
        state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"][:1] * 7
    elif case == "rng-torch":
        state["rng"][0]["torch"] = torch.zeros(10, dtype=torch.uint8)
    elif case == "rng-python":
        state["rng"][0]["python"][1] = state["rng"][0]["python"][1][:5]
    elif case == "scheduler":
        state["scheduler"] = {"steps": "x"}


@pytest.mark.parametrize("case, field", [
    ("epoch-string", "'epoch' must be a whole number >= 0, found '1'"),
    ("epoch-negative", "'epoch' must be a whole number >= 0, found -5"),
    ("best-nan", "'best_top1' must be a number in [-1, 100]"),
    ("optimizer-shape", "has shape (3,), its parameter"),
    ("optimizer-groups", "'optimizer' has 7 parameter groups"),
    ("rng-torch", "'rng[0].torch' must be a uint8 tensor"),
    ("rng-python", "'rng[0].python' must be random.getstate()'s state"),
    ("scheduler", "its 'scheduler' does not load (KeyError"),
])
def test_a_tampered_last_pt_names_the_bad_field(case, field, finished, tmp_path, capsys):
    """Checkpoints the safe reader accepts but --resume cannot use: one line naming the field, exit 2, and the run's
    files untouched."""
    import torch

    from hgzoo._files import safe_load

    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    state = safe_load(copy / "last.pt")
    _tamper(state, case)
    torch.save(state, copy / "last.pt")
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    proc = _train_in_process(["--resume", str(copy / "last.pt"), "--epochs", "2"], capsys)
    one_error_line(proc, 2, "--resume", str(copy / "last.pt"), field)
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before


def test_an_untampered_last_pt_resumes(finished, tmp_path, capsys):
    """The check that the cases above can pass: the same copy, unchanged, resumes."""
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    proc = _train_in_process(["--resume", str(copy / "last.pt"), "--epochs", "2"], capsys)
    assert proc.returncode == 0, proc.stderr
    assert [row["epoch"] for row in csv.DictReader(open(copy / "summary.csv"))] == ["1", "2"]


# ---------------------------------------------------------------------------------------------- one rule for bad files

def test_an_image_that_would_not_decode_is_bad_input_like_a_bad_checkpoint(data, finished, tmp_path, capsys):
    """The one rule: a user's bad file is exit 2, whether it is a checkpoint or an image found during the run."""
    folder = tmp_path / "data"
    shutil.copytree(data, folder)
    bad = folder / "train" / "chelsea" / "zz_broken.png"
    bad.write_bytes((folder / "train" / "chelsea" / "0.png").read_bytes()[:60])
    proc = _train_in_process([*TRAIN, "--data-dir", str(folder), "--output", str(tmp_path / "o"),
                              "--max-steps-per-epoch", "100", "--batch-size", "3"], capsys)  # the whole epoch
    one_error_line(proc, 2, str(bad))
    (finished / "notes.pt").write_bytes(b"not a checkpoint")
    try:
        proc = _train_in_process([*TRAIN, "--data-dir", str(data), "--output", str(tmp_path / "p"),
                                  "--initial-checkpoint", str(finished / "notes.pt")], capsys)
        one_error_line(proc, 2, "notes.pt")
    finally:
        (finished / "notes.pt").unlink()


# ---------------------------------------------------------------------------------------------- unbounded requests

def test_benchmark_refuses_what_memory_cannot_hold_before_allocating():
    """The issue's request (batch 100000 at 4096 px) under an 8 GiB address-space limit: the estimate of one image
    (a forward on the meta device) is over what the limit leaves, so it refuses in one line, exit 2, instead of
    allocating until it is killed."""
    proc = run("benchmark.py", "-m", MODEL, "--batch-sizes", "100000", "--img-size", "4096", "--backend", "eager",
               "--compare", "none", "--no-roofline", "--quiet", memory=8 << 30)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "one 4096x4096 image needs ~" in lines[0] and "GiB of working memory (estimated)" in lines[0]
    assert "--img-size" in lines[0]


def test_benchmark_estimate_is_an_upper_bound_of_the_real_forward():
    """The estimate the refusal rests on, against a real forward's largest activation (the check that can fail)."""
    import torch

    import hgzoo
    from benchmarks.harness.subjects import activation_bytes_per_image, flops_at
    from hgzoo._flops import count_flops

    model = hgzoo.create_model(MODEL).eval()
    largest = 0

    def hook(_m, _inp, out):
        nonlocal largest
        largest = max(largest, out.numel() if isinstance(out, torch.Tensor) else 0)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.inference_mode():
        model(torch.zeros(1, 3, 96, 96))
    for h in handles:
        h.remove()
    estimate = activation_bytes_per_image(model, 96)
    assert 4 * largest < estimate < 4 * (6 * largest + 3 * 96 * 96)
    assert flops_at(model, 96) == count_flops(model, 96)  # meta-device counting is exact
