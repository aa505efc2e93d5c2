"""The docs: the MkDocs site builds in strict mode (a broken link, anchor or API reference fails), and every Python
example of the README and of docs/ runs, so no example can drift from the code.

The examples run offline: the weight tags they load with ``pretrained=True`` are pre-filled with random weights in
hgzoo's cache of converted weights (``$HGZOO_CACHE/converted/<tag>.safetensors``, which hgzoo reads before any
source), the Hugging Face Hub is switched off and the Paddle mirror points at a closed port. A block that cannot run
here is preceded by ``<!-- skip: next "why" -->``; setup a reader does not need to see goes in an
``<!-- invisible-code-block: python -->`` comment.
"""
from __future__ import annotations

import logging
import re
import unittest
from pathlib import Path

import pytest
import torch

import hgzoo

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# The architectures (default tag) or arch.tags the examples load with pretrained=True; the last is the tag
# D-FINE's stage-1 file corresponds to (hgzoo.integrations.rtdetr.HGNetv2("B4", pretrained=True)).
PRETRAINED = ("pphgnet_small", "pphgnetv2_b0", "pphgnetv2_b4", "resnet50_vd", "pphgnetv2_b4.ssld_stage1_in22k_in1k")


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory) -> Path:
    """hgzoo's cache of converted weights, holding random weights for the default tag of each of PRETRAINED."""
    from safetensors.torch import save_file

    cache = tmp_path_factory.mktemp("hgzoo_cache")
    (cache / "converted").mkdir()
    torch.manual_seed(0)
    for arch in PRETRAINED:
        cfg = hgzoo.get_pretrained_cfg(arch)
        model = hgzoo.create_model(arch.split(".")[0], num_classes=cfg.num_classes)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(cache / "converted" / f"{cfg.name}.safetensors"))
    return cache


@pytest.fixture
def offline(weights_cache, tmp_path, monkeypatch) -> Path:
    """Run in an empty folder, with the pre-filled cache and no network source."""
    from huggingface_hub import constants

    monkeypatch.setenv("HGZOO_CACHE", str(weights_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # huggingface_hub reads the variable at import
    monkeypatch.setenv("HGZOO_PADDLE_MIRROR", "http://127.0.0.1:9/")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _sybil():
    from doctest import ELLIPSIS, NORMALIZE_WHITESPACE

    from sybil import Sybil
    from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

    # A block of ``>>>`` lines is a doctest (its printed values are checked); any other block is run as code.
    return Sybil(parsers=[PythonCodeBlockParser(doctest_optionflags=ELLIPSIS | NORMALIZE_WHITESPACE), SkipParser()])


def _python_blocks(path: Path) -> int:
    return len(re.findall(r"^```python\s*$", path.read_text(encoding="utf-8"), flags=re.M))


@pytest.mark.slow  # about a minute for all the files on 2 cores: outside the fast tier
@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(path, offline):
    """Every ```python block of the file runs, top to bottom, in one namespace per file."""
    document = _sybil().parse(path)
    document.namespace["hgzoo_checkout"] = str(ROOT)  # for torch.hub.load(..., source="local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for example in document:
            try:
                example.evaluate()
            except unittest.SkipTest:  # a block marked <!-- skip: next "why" -->
                continue
            except Exception as e:
                raise AssertionError(f"{path.relative_to(ROOT)}, line {example.line}: {type(e).__name__}: {e}") from e
    finally:
        torch.set_num_threads(threads)


def test_examples_are_found():
    """The parser sees every python fence (a fence it missed would silently never run)."""
    from sybil import Sybil
    from sybil.parsers.markdown import PythonCodeBlockParser

    total = 0
    for path in DOC_FILES:
        found = len(list(Sybil(parsers=[PythonCodeBlockParser()]).parse(path)))
        assert found >= _python_blocks(path), f"{path.name}: {found} examples parsed, {_python_blocks(path)} fences"
        total += found
    assert total >= 10


def test_a_drifted_example_fails(tmp_path):
    """The check can fail: an example that calls an API wrongly, or whose printed value is no longer what the call
    returns, is reported."""
    wrong_call = tmp_path / "call.md"
    wrong_call.write_text('# x\n\n```python\nimport hgzoo\nhgzoo.create_model("pphgnet_smal")\n```\n', encoding="utf-8")
    with pytest.raises(Exception, match="pphgnet_small"):  # the error lists the close match
        for example in _sybil().parse(wrong_call):
            example.evaluate()
    wrong_value = tmp_path / "value.md"
    wrong_value.write_text('# x\n\n```python\n>>> import hgzoo\n>>> hgzoo.list_models("pphgnet_*")\n'
                           "['pphgnet_small']\n```\n", encoding="utf-8")
    with pytest.raises(Exception, match="pphgnet_base"):
        for example in _sybil().parse(wrong_value):
            example.evaluate()


def _anchors(page: Path) -> set[str]:
    """The heading anchors of a Markdown page, as MkDocs' ``toc`` makes them."""
    from markdown.extensions.toc import slugify

    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
    return {slugify(re.sub(r"[`*]", "", h), "-") for h in headings}


def test_readme_links_resolve():
    """The README is not part of the MkDocs site, so its relative links (to docs/ pages and their headings) are
    checked here."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not t.startswith(("http://", "https://"))]
    assert len(links) > 10
    for link in links:
        target, _, anchor = link.partition("#")
        path = ROOT / target
        assert path.exists(), f"README.md links to {link}, which does not exist"
        if anchor:
            assert anchor in _anchors(path), f"README.md links to {link}: no heading makes #{anchor}"


def _model_table(page: Path) -> list[str]:
    return [line for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("| ") and "_" in line
            and line.split("|")[1].strip() in set(hgzoo.list_models())]


def test_model_tables_agree():
    """The README's model table and docs/models.md's are the same rows, one per registered model."""
    readme, models = _model_table(ROOT / "README.md"), _model_table(ROOT / "docs" / "models.md")
    assert readme == models
    assert [row.split("|")[1].strip() for row in readme] == sorted(hgzoo.list_models())


def test_no_machine_paths():
    """The docs and their records name no path of the machine they were written on."""
    files = [ROOT / "mkdocs.yml", *DOC_FILES, *(p for p in (ROOT / "docs").rglob("*") if p.suffix in (".json", ".csv"))]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(?<![\w.])/(work|root|home)/", text), f"{path.relative_to(ROOT)} names a machine path"


def test_ci_runs_the_readme_commands():
    """.ci/run is the README's set-up and test commands, verbatim: a fresh machine does what CI does."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Set up and test on a fresh machine.*?```bash\n(.*?)```", readme, flags=re.S).group(1)
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert len(commands) == 2 and commands == ci[-2:]


def _build(config_file: Path, site_dir: Path) -> None:
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    config = load_config(str(config_file), strict=True, site_dir=str(site_dir))
    config.plugins.on_startup(command="build", dirty=False)
    try:
        build(config)
    finally:
        config.plugins.on_shutdown()


def test_mkdocs_build_strict(tmp_path, caplog):
    """``mkdocs build --strict``: a broken link, a missing anchor or an API name that does not resolve fails."""
    pytest.importorskip("mkdocstrings")
    with caplog.at_level(logging.WARNING):
        _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert (tmp_path / "site" / "api" / "index.html").is_file()
    assert "create_model" in (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")


def test_mkdocs_strict_can_fail(tmp_path):
    """The build check can fail: the same site with one broken link is refused."""
    from mkdocs.exceptions import Abort

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\nSee [the missing page](missing.md).\n", encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text("site_name: x\ndocs_dir: docs\nstrict: true\n", encoding="utf-8")
    with pytest.raises(Abort, match="strict"):
        _build(tmp_path / "mkdocs.yml", tmp_path / "site")
