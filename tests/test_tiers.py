"""The fast tier stays fast: a test in it cannot start a process, and the rules of tests/conftest.py put what needs
a process, the PaddleClas reference or a large model in the slow tier (``-m "not slow"`` leaves them out)."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import pytest
from conftest import FAST_MODELS, SLOW, SPAWNED, TIERS


def _refused(request, start, what: str) -> None:
    """``start()`` raises in this fast-tier test, and is recorded so the report fails even where it was caught."""
    with pytest.raises(RuntimeError, match=f"in the fast tier but starts a process \\({what}\\)"):
        start()
    assert request.node.stash[SPAWNED] == what
    del request.node.stash[SPAWNED]  # this test starts them on purpose: do not fail it for that


def test_a_fast_test_cannot_start_a_process(request):
    assert not request.node.get_closest_marker("slow")
    _refused(request, lambda: subprocess.run([sys.executable, "-c", "pass"]), "subprocess")
    _refused(request, lambda: multiprocessing.get_context("spawn").Process(target=print).start(), "multiprocessing")
    _refused(request, os.fork, "os.fork")


def test_the_rules_put_each_test_in_its_tier(request):
    tiers = {nodeid.split("/")[-1]: slow for nodeid, slow in request.config.stash[TIERS].items()}
    contract = {n: slow for n, slow in tiers.items() if n.startswith("test_models.py::test_contract[")}
    parity = [slow for n, slow in tiers.items() if n.startswith("test_parity.py::")]
    listed = [slow for n, slow in tiers.items() if n.split("[")[0] == f"test_train.py::{SLOW['test_train.py'][0]}"]
    if not (contract and parity and listed):
        pytest.skip("needs test_models.py, test_parity.py and test_train.py collected in the same run")
    assert all(parity) and all(listed)  # marked parity (and uses paddle_reference); listed in SLOW
    small = {n for n in contract if n[:-1].endswith(FAST_MODELS)}
    assert small and not any(contract[n] for n in small)
    assert len(contract) > len(small) and all(slow for n, slow in contract.items() if n not in small)
