"""The fuzz pass of issue 27 at its CI size (seconds): mutated images and weight files are read, or refused in
one line of the project's error types, under a memory limit and a time limit, in a worker process
(``tests/fuzz_inputs.py``; a longer pass: ``PYTHONPATH=. python tests/fuzz_inputs.py --cases 5000 --seed 1``)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fuzz_inputs  # noqa: E402

# Each case runs the command (or the fuzz worker) in a process with a memory limit: the full suite.
pytestmark = pytest.mark.slow


def test_fuzz_readers_short_seeded_pass():
    report = fuzz_inputs.run(cases=90, seed=0)
    assert not report["findings"], report["findings"]
    for kind, counts in report["counts"].items():
        assert counts["ok"] + counts["refused"] == 10, (kind, counts)
    assert sum(c["refused"] for c in report["counts"].values()) > 0  # the mutations do break files


def test_fuzz_finds_what_the_old_decoder_did(monkeypatch):
    """The pass can fail: torchvision's decode_png (the PNG decoder before) kills its process on corrupt PNGs;
    the pass records each such case and goes on."""
    monkeypatch.setenv("FUZZ_READER", "torchvision")
    report = fuzz_inputs.run(0, 0, kinds=("png",), mutations=[1, 3412707896])  # the second: a bad filter byte
    assert [f["seed"] for f in report["findings"]] == [3412707896], report
    assert "died or hung (exit -11)" in report["findings"][0]["detail"]
    monkeypatch.delenv("FUZZ_READER")
    assert not fuzz_inputs.run(0, 0, kinds=("png",), mutations=[3412707896])["findings"]  # today's reader refuses it


def test_fuzz_invariant_rejects_other_errors(monkeypatch, tmp_path):
    import hgzoo.data
    from hgzoo.data import ImageDecodeError

    seeds = fuzz_inputs.seeds()

    def two_lines(path):
        raise ImageDecodeError(str(path), "one\ntwo")

    monkeypatch.setattr(hgzoo.data, "read_image", two_lines)
    with pytest.raises(AssertionError, match="more than one line"):
        fuzz_inputs._read("bmp", seeds["bmp"], tmp_path)
    monkeypatch.setattr(hgzoo.data, "read_image", lambda path: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        fuzz_inputs._read("bmp", seeds["bmp"], tmp_path)


def test_fuzz_findings_stay_fixed(tmp_path):
    """What longer passes found, replayed: a zip whose member claims version 12.7 (zipfile raised
    NotImplementedError through the torch reader)."""
    import random

    seeds = fuzz_inputs.seeds()
    for kind, seed in (("torch", 1021168488),):
        assert fuzz_inputs._read(kind, fuzz_inputs.mutate(seeds[kind], random.Random(seed)), tmp_path) == "refused"
