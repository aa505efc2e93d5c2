"""Shared fixtures. The parity oracle (PaddleClas) runs in its own environment, see tests/reference/."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hgzoo
from hgzoo._registry import model_entrypoint, paddle_name

ROOT = Path(__file__).resolve().parent.parent
REF_SCRIPT = Path(__file__).resolve().parent / "reference" / "paddle_ref.py"
PARITY_SIZES = ((224, 224), (193, 257))
# PaddleClas's HRNet upsamples by a fixed scale factor, so it cannot run unless the stride-4 map's sides
# are multiples of 8 (it raises a broadcast error at 193x257); 221x253 is the odd non-square size it takes.
FAMILY_PARITY_SIZES = {"hgzoo.models.hrnet": ((224, 224), (221, 253))}


def parity_sizes(name: str) -> tuple[tuple[int, int], ...]:
    """The two input sizes the parity tests use for ``name``: 224x224 and an odd, non-square one."""
    return FAMILY_PARITY_SIZES.get(model_entrypoint(name).__module__, PARITY_SIZES)


def reference_python() -> str | None:
    """The reference environment's python: $HGZOO_REF_PYTHON, or .venv-ref built by tests/reference/setup.sh."""
    candidates = [os.environ.get("HGZOO_REF_PYTHON"), str(ROOT / ".venv-ref" / "bin" / "python")]
    for c in candidates:
        if c and Path(c).is_file():
            return c
    return None


def shared_dir(tmp_path_factory, name: str) -> Path:
    """A folder that every pytest-xdist worker of this run sees (the run's base temp dir); lock it with
    :func:`filelock.FileLock` on ``<folder>.lock`` to make something once for all workers."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # each worker's base temp is a subfolder of the run's
    folder = root / f"shared-{name}"
    folder.mkdir(exist_ok=True)
    return folder


def pytest_configure(config) -> None:
    """Under pytest-xdist (tests/run.sh: one worker per core), one intra-op thread per worker and per subprocess:
    two workers of two threads on two cores spin against each other."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_thread")``): on a busy
    2-core machine more threads spin against each other (5-10x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class PaddleReference:
    """Runs PaddleClas once per family (all its variants in one process) and serves the results; under
    pytest-xdist the first worker to ask runs a family, the others wait for it and read its files."""

    def __init__(self, python: str, out_dir: Path) -> None:
        self.python, self.out_dir = python, out_dir

    def get(self, name: str) -> tuple[Path, dict[str, np.ndarray]]:
        from filelock import FileLock

        pname = paddle_name(name)
        family = model_entrypoint(name).__module__
        with FileLock(str(self.out_dir / f"{family}.lock")):
            if not (self.out_dir / f"{family}.done").is_file():
                names = [paddle_name(n) for n in hgzoo.list_models() if model_entrypoint(n).__module__ == family]
                sizes = ",".join(f"{h}x{w}" for h, w in parity_sizes(name))
                self._run("--sizes", sizes, *names)
                (self.out_dir / f"{family}.done").write_text("\n".join(names))
        data = np.load(self.out_dir / f"{pname}.npz")
        return self.out_dir / f"{pname}.pdparams", {k: data[k] for k in data.files}

    def as_built(self, names: list[str]) -> dict[str, Path]:
        """PaddleClas's freshly initialized weights (nothing randomized) for ``names``, one process for all."""
        from filelock import FileLock

        pnames = [paddle_name(n) for n in names]
        with FileLock(str(self.out_dir / "as_built.lock")):
            self._run("--as-built", *pnames)
        return {n: self.out_dir / f"{p}.init.pdparams" for n, p in zip(names, pnames)}

    def _run(self, *args: str) -> None:
        """Run tests/reference/paddle_ref.py with ``args``, writing into ``out_dir``."""
        # A clean environment: nothing of hgzoo's interpreter may leak into Paddle's.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        proc = subprocess.run([self.python, str(REF_SCRIPT), "--out", str(self.out_dir), *args],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"the PaddleClas reference failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")


@pytest.fixture(scope="session")
def paddle_reference(tmp_path_factory) -> PaddleReference:
    python = reference_python()
    if python is None:
        msg = "the PaddleClas reference environment is missing: run tests/reference/setup.sh (or set HGZOO_REF_PYTHON)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return PaddleReference(python, shared_dir(tmp_path_factory, "paddle_ref"))


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute difference, relative to the reference's scale (its largest magnitude)."""
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))


class WheelInstall:
    """hgzoo installed from its wheel into a fresh venv (its dependencies from this environment): a user's
    ``pip install hgzoo``, with no repository around it. ``run(*argv)`` runs ``python -m hgzoo ...`` there."""

    def __init__(self, python: Path, site: Path, env: dict[str, str]) -> None:
        self.python, self.site, self.env = python, site, env

    def run(self, *argv: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.python), *argv], env=self.env, capture_output=True, text=True, cwd=cwd,
                              timeout=timeout)


@pytest.fixture(scope="session")
def wheel_install(tmp_path_factory) -> WheelInstall:
    from filelock import FileLock

    root = shared_dir(tmp_path_factory, "wheel_install")
    with FileLock(str(root) + ".lock"):
        if not (root / "done").is_file():
            _install_wheel(root)
            (root / "done").write_text("")
    site = next((root / "venv" / "lib").glob("python3*/site-packages"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    return WheelInstall(root / "venv" / "bin" / "python", site, env)


def _install_wheel(root: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(root / "wheel")], check=True, capture_output=True, timeout=300)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(next((root / "wheel").glob("*.whl")))], check=True, capture_output=True, timeout=300)
    # hgzoo's dependencies (torch, ...) from this environment; hgzoo itself only from the wheel
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (site / "_deps.pth").write_text("\n".join(deps) + "\n")
