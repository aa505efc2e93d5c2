"""D-FINE's own backbone code (PyPI ``d-fine-project`` 1.0.0, extracted by tests/reference/detectors_setup.sh into
.ref-detectors/), imported by path under the unique package name ``hgzoo_ref_dfine``.

Its files import ``register`` from ``...core`` and their siblings, and the package's ``__init__`` files import
everything (datasets, COCO evaluation, tensorboard). Only what the backbones need is loaded: empty package modules
stand for ``hgzoo_ref_dfine``, ``.core``, ``.nn``, ``.nn.backbone`` (their ``__init__`` never runs), and ``.core`` gets
``register`` from their own ``core/workspace.py``. For their ``-t`` loader, ``solver/_solver.py`` is loaded with
stand-ins for the two names it imports and does not use there (``BaseConfig``, ``dist_utils``).
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION = "1.0.0"
PACKAGE = "hgzoo_ref_dfine"


def reference_dir() -> Path:
    base = Path(os.environ.get("HGZOO_DETECTOR_REF", ROOT / ".ref-detectors"))
    return base / f"d_fine_project-{VERSION}"


def ensure_reference() -> Path | None:
    """The extracted package, made by the setup script if missing (it downloads from PyPI); None if it cannot be."""
    folder = reference_dir()
    if not (folder / "nn" / "backbone" / "hgnetv2.py").is_file():
        proc = subprocess.run(["bash", str(ROOT / "tests" / "reference" / "detectors_setup.sh")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return None
    return folder


def _package(name: str, folder: Path) -> types.ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    module = types.ModuleType(name)
    module.__path__ = [str(folder)]
    sys.modules[name] = module
    return module


def load(folder: Path) -> types.SimpleNamespace:
    """Their ``core`` (register, create, load_config, merge_config), ``HGNetv2``, ``PResNet`` and the solver's
    ``_matched_state``."""
    _package(PACKAGE, folder)
    core = _package(f"{PACKAGE}.core", folder / "core")
    for sub in ("nn", "nn/backbone", "solver"):
        _package(f"{PACKAGE}.{sub.replace('/', '.')}", folder / sub)
    workspace = importlib.import_module(f"{PACKAGE}.core.workspace")
    core.register, core.create, core.GLOBAL_CONFIG = workspace.register, workspace.create, workspace.GLOBAL_CONFIG
    yaml_utils = importlib.import_module(f"{PACKAGE}.core.yaml_utils")
    core.BaseConfig = object  # stand-in: _solver.py subclasses it, _matched_state does not use it
    misc = _package(f"{PACKAGE}.misc", folder / "misc")
    misc.dist_utils = types.ModuleType(f"{PACKAGE}.misc.dist_utils")  # stand-in, unused by _matched_state
    hgnetv2 = importlib.import_module(f"{PACKAGE}.nn.backbone.hgnetv2")
    presnet = importlib.import_module(f"{PACKAGE}.nn.backbone.presnet")
    solver = importlib.import_module(f"{PACKAGE}.solver._solver")
    return types.SimpleNamespace(
        core=core, workspace=workspace, yaml_utils=yaml_utils, HGNetv2=hgnetv2.HGNetv2, PResNet=presnet.PResNet,
        matched_state=solver.BaseSolver._matched_state, backbone_package=f"{PACKAGE}.nn.backbone")
