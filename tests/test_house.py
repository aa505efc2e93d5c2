"""The shape of the house: ``import hgzoo`` loads the library and nothing on top of it, and the package's
imports, read from its own source, run one way (no circle)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Loaded on first use only: the packages on top of the models, and the heavy optional dependencies.
NOT_AT_IMPORT = ("hgzoo.deploy", "hgzoo.data", "hgzoo.train", "hgzoo.hub", "hgzoo.predict", "hgzoo.features",
                 "benchmarks", "torchvision.transforms.v2", "onnx", "onnxruntime", "openvino", "nncf", "timm")


def _modules_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_import_hgzoo_loads_only_the_library():
    loaded = _modules_after("import hgzoo")
    heavy = [m for m in loaded if any(m == n or m.startswith(n + ".") for n in NOT_AT_IMPORT)]
    assert not heavy, f"`import hgzoo` loads {heavy}: they should load on first use"
    assert {"hgzoo.models", "hgzoo._builder", "hgzoo._registry", "hgzoo.layers"} <= set(loaded)


@pytest.mark.parametrize("code", [
    "import hgzoo; f = hgzoo.predict",
    "import hgzoo, hgzoo.predict; f = hgzoo.predict",
    "import hgzoo; from hgzoo.predict import list_image_files; f = hgzoo.predict",
    "from hgzoo import predict as f",
])
def test_lazy_names_resolve_whatever_loads_them_first(code):
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport hgzoo\nassert callable(f) and f is hgzoo.predict"
                          "\nassert hgzoo.deploy.reparameterize is hgzoo.reparameterize"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_unknown_attribute_is_an_attribute_error():
    import hgzoo

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hgzoo.nope  # noqa: B018
