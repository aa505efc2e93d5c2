"""Hostile and careless input, as an attacker and a careless user would give it, through the commands they run.

Every CLI case runs the command's ``main`` (in this process, through :func:`call`, or in a fresh process
through :func:`run`, once per command where the real entry point's exit code or a fresh interpreter is the
point) and checks: the exit code (2 bad input, 1 it ran and failed), one ``error:`` line naming the file or
flag and no traceback, and that nothing ran, was overwritten or was left half-written.
"""
from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing as mp
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import one_error_line
from image_samples import photos, write_png

import hgzoo
from hgzoo._files import CorruptCheckpointError, UnsafePickleError, atomic_open, atomic_write, load_pdparams, safe_load
from hgzoo.data import ImageFolder, read_image
from hgzoo.data.transforms import ImageDecodeError

ROOT = Path(__file__).resolve().parent.parent
MODEL = "pplcnetv2_small"
TRAIN = ["--model", MODEL, "--img-size", "32", "--batch-size", "4", "--workers", "0", "--no-progress", "--epochs",
         "1", "--max-steps-per-epoch", "1", "--lr", "0.01", "--warmup-epochs", "0",
         "--threads", "1", "--plot", "false"]


class Payload:
    """A pickle that runs a shell command when loaded: touches ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def run(*argv: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=full_env, cwd=cwd,
                          timeout=600)


def _load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _show_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def call(command: str, argv: list[str], capsys) -> subprocess.CompletedProcess:
    """Run a command's ``main`` in this process (the same code as the command line, without the start-up cost)."""
    from hgzoo.cli.convert import main as convert_main
    from hgzoo.cli.main import main as hgzoo_main

    main = {"train": lambda a: _load_script("train").main(a), "validate": lambda a: _load_script("validate").main(a),
            "hgzoo": hgzoo_main, "convert": convert_main}[command]
    capsys.readouterr()
    env, threads = dict(os.environ), torch.get_num_threads()
    try:
        with warnings.catch_warnings():  # shown on stderr, as in the command's own process (pytest records them)
            warnings.showwarning = _show_on_stderr
            code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    finally:  # what a command sets for its own process (--max-image-pixels, --threads) is not left to later tests
        os.environ.clear()
        os.environ.update(env)
        torch.set_num_threads(threads)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """An ImageFolder with train/ and val/, two classes of real photo crops (32x32 PNGs)."""
    root = tmp_path_factory.mktemp("data")
    ph = photos(("chelsea", "coffee"))
    for split, n in (("train", 4), ("val", 3)):
        for cls, img in ph.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                crop = img[20 * i:20 * i + 96, 30 * i:30 * i + 96]
                write_png(root / split / cls / f"{i}.png", crop[::3, ::3])
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Hostile and broken weight files, each in its own right."""
    d = tmp_path_factory.mktemp("files")
    marker = d / "PWNED"
    out = {"dir": d, "marker": marker}
    model = hgzoo.create_model(MODEL, num_classes=2)
    sd = model.state_dict()
    torch.save({"state_dict": {"x": Payload(marker)}}, d / "evil.pth")
    out["evil.pth"] = d / "evil.pth"
    with open(d / "evil.pdparams", "wb") as f:
        pickle.dump({"w": Payload(marker)}, f, protocol=2)
    out["evil.pdparams"] = d / "evil.pdparams"
    torch.save({"model": sd}, d / "good.pt")
    out["good.pt"] = d / "good.pt"
    (d / "empty.pt").write_bytes(b"")
    out["empty.pt"] = d / "empty.pt"
    raw = (d / "good.pt").read_bytes()
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    out["truncated.pt"] = d / "truncated.pt"
    (d / "text.pth").write_text("this is not a checkpoint\n")
    out["text.pth"] = d / "text.pth"
    torch.save(torch.zeros(3), d / "tensor.pth")
    out["tensor.pth"] = d / "tensor.pth"
    torch.save([torch.zeros(3)], d / "list.pth")
    out["list.pth"] = d / "list.pth"
    torch.save({"model": sd}, d / "legacy.pt", _use_new_zipfile_serialization=False)
    out["legacy.pt"] = d / "legacy.pt"
    return out


# ---------------------------------------------------------------------------------------------- code execution

def test_train_never_runs_code_from_a_checkpoint(files, data, tmp_path, capsys):
    """Each flag that reads a checkpoint refuses the pickle; the first through the real train.py, the others
    through the same main in this process."""
    for i, flag in enumerate(["--initial-checkpoint", "--teacher-checkpoint", "--resume"]):
        extra = ["--teacher", MODEL] if flag == "--teacher-checkpoint" else []
        argv = [*TRAIN, "--data-dir", str(data), "--output", str(tmp_path / flag / "out"), flag,
                str(files["evil.pth"]), *extra]
        proc = run("train.py", *argv) if i == 0 else call("train", argv, capsys)
        line = one_error_line(proc, 2, "evil.pth", "refused", "system")
        assert flag in line, line
        assert not files["marker"].exists(), f"the pickle's command ran ({flag})"
        assert not (tmp_path / flag / "out" / "last.pt").exists(), flag


COMMANDS = {
    "validate": ("validate", ["--model", MODEL, "--checkpoint", "{f}", "--data-dir", "{data}/val"]),
    "predict": ("hgzoo", ["predict", "--model", MODEL, "--pretrained-file", "{f}", "{data}/val/chelsea/0.png"]),
    "convert": ("convert", ["--model", MODEL, "--input", "{f}", "--output", "{tmp}/out"]),
}


@pytest.mark.parametrize("name", ["evil.pth", "evil.pdparams"])
def test_commands_never_run_code_from_weights(name, files, data, tmp_path, capsys):
    """validate, predict and convert each refuse the pickle (their main in this process: the payload would run
    here as well; test_publishing_never_runs_code_from_a_checkpoint runs the real convert command)."""
    for label, (command, argv) in COMMANDS.items():
        tmp = tmp_path / label
        tmp.mkdir()
        proc = call(command, [a.format(f=files[name], data=data, tmp=tmp) for a in argv], capsys)
        one_error_line(proc, 2, name, "refused")
        assert not files["marker"].exists(), f"the pickle's command ran ({label})"
        assert not (tmp / "out").exists(), label


def test_pdparams_refuses_every_callable_but_numpys(tmp_path):
    for module, name in (("builtins", "eval"), ("os", "system"), ("subprocess", "Popen"), ("torch", "load")):
        body = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x01\x00\x00\x001\x85R."
        (tmp_path / "x.pdparams").write_bytes(body)
        with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
            load_pdparams(tmp_path / "x.pdparams")
    # protocol 2 carries bytes through _codecs.encode(text, "latin1"); any other use is refused
    codecs_call = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf-7\x86R."
    (tmp_path / "y.pdparams").write_bytes(codecs_call)
    with pytest.raises(UnsafePickleError, match="_codecs.encode"):
        load_pdparams(tmp_path / "y.pdparams")


def test_object_arrays_and_non_arrays_are_refused(tmp_path):
    for value, what in ((np.array([{"a": 1}], dtype=object), "object"), ("text", "str")):
        with open(tmp_path / "x.pdparams", "wb") as f:
            pickle.dump({"w": value}, f, protocol=2)
        with pytest.raises((CorruptCheckpointError, UnsafePickleError)):
            load_pdparams(tmp_path / "x.pdparams")


# ---------------------------------------------------------------------------------------------- genuine files

@pytest.fixture(scope="module")
def paddle_protocols(paddle_reference, tmp_path_factory) -> dict[int, Path]:
    """The same randomized PaddleClas model saved by real Paddle at pickle protocols 2, 3 and 4."""
    pdparams, _ = paddle_reference.get(MODEL)
    d = tmp_path_factory.mktemp("protocols")
    script = (
        "import sys, paddle\n"
        "state = paddle.load(sys.argv[1])\n"
        "for p in (2, 3, 4):\n"
        "    paddle.save(state, f'{sys.argv[2]}/p{p}.pdparams', protocol=p)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([paddle_reference.python, "-c", script, str(pdparams), str(d)], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {p: d / f"p{p}.pdparams" for p in (2, 3, 4)}


@pytest.mark.parity
def test_real_paddle_files_load_at_protocols_2_3_and_4(paddle_protocols):
    assert b"_codecs\nencode" in paddle_protocols[2].read_bytes()[:4000]  # protocol 2 really carries bytes so
    loaded = {p: load_pdparams(path) for p, path in paddle_protocols.items()}
    for p in (2, 3):
        assert loaded[p].keys() == loaded[4].keys()
        for k in loaded[4]:
            np.testing.assert_array_equal(loaded[p][k], loaded[4][k])
    model = hgzoo.create_model(MODEL, pretrained_file=paddle_protocols[2])
    ref = hgzoo.create_model(MODEL, pretrained_file=paddle_protocols[4])
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ref.state_dict()[k], rtol=0, atol=0)


@pytest.mark.parity
def test_train_fine_tunes_from_a_real_pdparams(paddle_protocols, data, tmp_path, capsys):
    """A genuine PaddleClas file (1000 classes) as --initial-checkpoint: converted, its head re-initialised."""
    proc = _train(data, tmp_path / "out", "--initial-checkpoint", str(paddle_protocols[2]), capsys=capsys)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "classifier is re-initialised" in proc.stderr
    assert (tmp_path / "out" / "last.pt").is_file()


@pytest.mark.parity
def test_a_pdparams_for_another_class_count_reinitialises_the_head(paddle_protocols):
    with pytest.warns(UserWarning, match="classifier has 1000 classes, the model 5; the classifier is re-init"):
        five = hgzoo.create_model(MODEL, num_classes=5, pretrained_file=paddle_protocols[4])
    full = hgzoo.create_model(MODEL, pretrained_file=paddle_protocols[4])
    assert five.num_classes == 5
    for k, v in five.state_dict().items():
        if not k.startswith("head.fc."):
            torch.testing.assert_close(v, full.state_dict()[k], rtol=0, atol=0)


def test_timm_style_checkpoint_with_namespace_loads(tmp_path):
    import argparse

    model = hgzoo.create_model(MODEL, num_classes=3)
    torch.save({"epoch": 3, "arch": MODEL, "state_dict": model.state_dict(), "args": argparse.Namespace(lr=0.1),
                "version": 2}, tmp_path / "model_best.pth.tar")
    loaded = hgzoo.create_model(MODEL, num_classes=3, pretrained_file=tmp_path / "model_best.pth.tar")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- size bombs

def test_safetensors_header_bomb(tmp_path):
    path = tmp_path / "bomb.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(CorruptCheckpointError, match="header claims"):
        safe_load(path)


def test_zip_declaring_more_than_it_holds(files, tmp_path):
    """A .pth whose zip member claims 4 GiB (a crafted central directory) is refused before torch reads it."""
    data = bytearray(files["good.pt"].read_bytes())
    at = data.find(b"PK\x01\x02")  # the first central-directory entry: uncompressed size at offset 24
    struct.pack_into("<I", data, at + 24, 0xFFFFFF00)
    path = tmp_path / "bomb.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="zip bomb"):
        safe_load(path)


def test_pdparams_whose_arrays_share_memory(tmp_path):
    """The same array referenced 1000 times (pickle memo): a small file that would convert to 1000 copies."""
    arr = np.zeros(100_000, np.float32)
    path = tmp_path / "shared.pdparams"
    path.write_bytes(pickle.dumps({f"w{i}": arr for i in range(1000)}, protocol=4))
    assert path.stat().st_size < 1_000_000
    with pytest.raises(CorruptCheckpointError, match="declare .* more than"):
        load_pdparams(path)


def test_file_size_limit(files, monkeypatch):
    monkeypatch.setenv("HGZOO_MAX_FILE_BYTES", "1000")
    with pytest.raises(CorruptCheckpointError, match="HGZOO_MAX_FILE_BYTES"):
        safe_load(files["good.pt"])


def test_legacy_torch_format_is_refused(files):
    with pytest.raises(CorruptCheckpointError, match="pre-1.6"):
        safe_load(files["legacy.pt"])


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A 132 KB PNG that declares 33000 x 33000 pixels (3.3 GB once decoded): 1-bit rows of zeros, deflated once
    per 1000 rows and that block repeated (PIL's own save of the same image deflates all 136 MB, ~9 s)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    side = 33000
    rows = bytes((1 + (side + 7) // 8) * 1000)  # filter byte + packed bits, 1000 rows
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(rows) + deflate.flush(zlib.Z_FULL_FLUSH)  # self-contained: repeatable
    adler = 1
    for _ in range(side // 1000):
        adler = zlib.adler32(rows, adler)
    idat = b"\x78\xda" + block * (side // 1000) + deflate.flush() + struct.pack(">I", adler)
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    assert path.stat().st_size < 200_000
    assert zlib.decompressobj().decompress(idat[:4096], 1 << 20) == bytes(1 << 20)  # it does inflate to zeros
    return path


def test_image_bomb_refused_before_decoding(bomb, monkeypatch):
    with pytest.raises(ImageDecodeError, match=r"bomb.png.*1,089,000,000 pixels.*limit"):
        read_image(bomb)
    monkeypatch.setenv("HGZOO_MAX_IMAGE_PIXELS", "1000")
    small = bomb.parent / "small.png"
    write_png(small, np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(ImageDecodeError, match="40x40 = 1,600 pixels, over the 1,000-pixel limit"):
        read_image(small)


def test_validate_and_predict_refuse_the_image_bomb(bomb, data, files, tmp_path, capsys):
    """Refused from its header, inside a loader worker process too (--workers 2): the real validate.py once, then
    the same main in this process."""
    folder = tmp_path / "val"
    shutil.copytree(data / "val", folder)
    shutil.copy(bomb, folder / "chelsea" / "bomb.png")
    argv = ["--model", MODEL, "--num-classes", "2", "--checkpoint", str(files["good.pt"]), "--data-dir", str(folder),
            "--workers", "2", "--no-progress"]
    proc = run("validate.py", *argv)
    one_error_line(proc, 2, "bomb.png", "pixels", "--skip-bad-images")
    proc = call("validate", [*argv, "--skip-bad-images"], capsys)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6 images, 1 bad" in proc.stdout and "bomb.png" in proc.stdout
    proc = call("hgzoo", ["predict", "--model", MODEL, "--pretrained-file", str(files["good.pt"]),
                          str(folder / "chelsea"), "--max-image-pixels", "100000"], capsys)
    assert proc.returncode == 2 and "bomb.png" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout.count("chelsea/") == 3  # the good images are still classified


HUB_CONFIGS = {"bomb": {"architecture": MODEL, "num_classes": 10 ** 9},
               **{f"chans{i}": {"architecture": MODEL, "num_classes": 2, "model_args": {"in_chans": c}}
                  for i, c in enumerate([10 ** 9, "3", -1])}}
_LOAD_EACH = """import json, sys, traceback
import hgzoo
out = {}
for name in sys.argv[1:]:
    try:
        hgzoo.create_model(f"hf-hub:org/{name}", pretrained=True)
        out[name] = None
    except Exception as e:
        out[name] = "".join(traceback.format_exception_only(e))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hub_refusals(tmp_path_factory) -> dict[str, str | None]:
    """Each of HUB_CONFIGS as an offline hf-hub: repo, loaded in one fresh process (HF_HOME is read at import):
    what each create_model raised, None where it did not raise."""
    home = tmp_path_factory.mktemp("hf")
    for name, config in HUB_CONFIGS.items():
        repo = home / "hub" / f"models--org--{name}"
        snap = repo / "snapshots" / ("0" * 40)
        snap.mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0" * 40)
        (snap / "config.json").write_text(json.dumps(config))
        (snap / "model.safetensors").write_bytes(b"")
    proc = run("-c", _LOAD_EACH, *HUB_CONFIGS, env={"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_hub_config_declaring_a_billion_classes(hub_refusals):
    """An hf-hub: repo whose config.json asks for 10**9 classes is refused before anything is built."""
    err = hub_refusals["bomb"]
    assert err is not None and "1,000,000,000 classes" in err and "HGZOO_MAX_NUM_CLASSES" in err, err


@pytest.mark.parametrize("in_chans", [10 ** 9, "3", -1])
def test_hub_config_declaring_bad_input_channels(in_chans, hub_refusals):
    """model_args.in_chans of an hf-hub: config.json (timm's field, which hgzoo reads) is checked before building."""
    err = hub_refusals[f"chans{[10 ** 9, '3', -1].index(in_chans)}"]
    assert err is not None and "model_args.in_chans" in err and "config.json" in err, err


def test_publishing_never_runs_code_from_a_checkpoint(files, tmp_path):
    """python -m hgzoo.convert --input X.pt (a train.py checkpoint to publish) reads through the safe reader."""
    proc = run("-m", "hgzoo.convert", "--input", str(files["evil.pth"]), "--output", str(tmp_path / "out"))
    one_error_line(proc, 2, "evil.pth", "refused")
    assert not files["marker"].exists(), "the pickle's command ran"
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- results lost

def _train(data: Path, out: Path, *extra: str, capsys=None) -> subprocess.CompletedProcess:
    """train.py: in this process through :func:`call` when ``capsys`` is given, else the real command."""
    argv = [*TRAIN, "--data-dir", str(data), "--output", str(out), *extra]
    return call("train", argv, capsys) if capsys is not None else run("train.py", *argv)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    """A finished one-epoch run, by the real train.py (its exit code 0 is checked here)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    proc = _train(data, out, "--img-size", "40")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_a_finished_run_is_never_overwritten(finished, data, capsys):
    before = {p.name: digest(p) for p in finished.iterdir() if p.is_file()}
    proc = _train(data, finished, capsys=capsys)
    one_error_line(proc, 2, "--output", "--resume", "--overwrite")
    assert {p.name: digest(p) for p in finished.iterdir() if p.is_file()} == before


def test_overwrite_replaces_the_run(finished, data, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    (copy / "notes.txt").write_text("mine")
    proc = _train(data, copy, "--overwrite", capsys=capsys)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (copy / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    assert len((copy / "summary.csv").read_text().splitlines()) == 2


def test_resume_keeps_the_saved_config_and_prints_changes(finished, data, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    proc = call("train", ["--resume", str(copy / "last.pt"), "--model", MODEL, "--epochs", "2", "--no-progress"],
                capsys)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming with changed settings: epochs 1 -> 2" in proc.stderr
    import yaml

    saved = yaml.safe_load((copy / "config.yaml").read_text())
    assert saved["img_size"] == 40 and saved["epochs"] == 2  # not the 224 default, not the recipe's
    assert safe_load(copy / "last.pt")["img_size"] == 40


def test_resuming_a_finished_run_says_how_to_continue(finished, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    proc = call("train", ["--resume", str(copy / "last.pt")], capsys)
    one_error_line(proc, 2, "already finished", "--epochs")


@pytest.mark.parametrize("case", ["best.pt", "empty", "truncated", "evil"])
def test_resume_from_what_cannot_be_resumed(case, finished, files, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    target = {"best.pt": copy / "best.pt", "empty": files["empty.pt"], "truncated": files["truncated.pt"],
              "evil": files["evil.pth"]}[case]
    if case != "best.pt":
        shutil.copy(target, copy / "last.pt")
        target = copy / "last.pt"
    before = digest(copy / "summary.csv")
    proc = call("train", ["--resume", str(target), "--epochs", "3"], capsys)
    expected = {"best.pt": "best.pt keeps the weights only", "empty": "empty (0 bytes)",
                "truncated": "corrupt", "evil": "refused"}[case]
    one_error_line(proc, 2, "--resume", expected)
    assert digest(copy / "summary.csv") == before
    assert not files["marker"].exists()


def test_output_that_is_a_file_or_read_only(data, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    one_error_line(_train(data, tmp_path / "file", capsys=capsys), 2, "--output", "is a file")
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here, so no folder is read-only for root")
    try:
        one_error_line(_train(data, ro / "run", capsys=capsys), 2, "--output", "cannot be written")
    finally:
        subprocess.run(["chattr", "-i", str(ro)])


def test_full_disk_during_a_checkpoint(data, tmp_path, monkeypatch, capsys):
    """ENOSPC while writing last.pt: one line naming 'no space left', exit 1, and no partial file left."""
    sys.path.insert(0, str(ROOT))
    import hgzoo.train.utils as utils
    import train as train_cli

    def full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(utils.torch, "save", full)
    code = train_cli.main(TRAIN + ["--data-dir", str(data), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "no space left" in err and ".pt" in err and "Traceback" not in err, err
    assert not [p for p in (tmp_path / "out").iterdir() if p.suffix in (".pt", ".part")]


def test_atomic_writer_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write(b"new, half")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def _write_folder(args) -> int:
    folder, i = args
    from hgzoo.publish import write_hub_folder

    model = hgzoo.create_model(MODEL, num_classes=2)
    cfg = hgzoo.get_pretrained_cfg(MODEL)
    for _ in range(5):
        write_hub_folder(model, model.state_dict(), cfg, Path(folder), source=f"writer {i}")
    return i


def test_concurrent_writers_of_a_hub_folder(tmp_path):
    """Four processes writing the same Hub folder: every write succeeds, config.json always parses."""
    folder = tmp_path / "repo"
    ctx = mp.get_context("forkserver")  # fresh processes, forked from one that imported hgzoo once (not four times)
    ctx.set_forkserver_preload(["hgzoo", "hgzoo.publish"])
    with ctx.Pool(4) as pool:
        pending = pool.map_async(_write_folder, [(str(folder), i) for i in range(4)])
        reads = 0
        while not pending.ready() or reads == 0:
            if (folder / "config.json").exists():
                json.loads((folder / "config.json").read_text())
                reads += 1
            time.sleep(0.005)
        assert sorted(pending.get()) == [0, 1, 2, 3]
    assert not list(folder.glob(".*part"))
    expected = hgzoo.create_model(MODEL, num_classes=2).state_dict().keys()
    assert safe_load(folder / "model.safetensors").keys() == expected


def test_symlink_loop_is_counted_once(data, files, tmp_path, capsys):
    folder = tmp_path / "val"
    shutil.copytree(data / "val", folder)
    (folder / "chelsea" / "up").symlink_to("..")
    (folder / "coffee" / "again.png").symlink_to(folder / "coffee" / "0.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageFolder(folder)
    assert len(ds) == 6
    assert any("symbolic-link loop" in str(w.message) for w in caught)
    proc = call("validate", ["--model", MODEL, "--num-classes", "2", "--checkpoint", str(files["good.pt"]),
                             "--data-dir", str(folder), "--workers", "0", "--no-progress"], capsys)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6 images" in proc.stdout and "warning:" in proc.stderr and "loop" in proc.stderr
    proc = _train(folder.parent, tmp_path / "out", "--val-split", "val", "--train-split", "val", capsys=capsys)
    assert proc.returncode == 0 and "6 train images" in proc.stdout, proc.stderr[-3000:]


# ---------------------------------------------------------------------------------------------- values

@pytest.mark.parametrize("extra, flag", [
    (["--lr", "nan"], "--lr"), (["--lr", "inf"], "--lr"), (["--lr", "-1"], "--lr"), (["--epochs", "0"], "--epochs"),
    (["--epochs", "-2"], "--epochs"), (["--batch-size", "0"], "--batch-size"), (["--img-size", "0"], "--img-size"),
    (["--num-classes", "-1"], "--num-classes"), (["--in-chans", "0"], "--in-chans"),
    (["--label-smoothing", "1.5"], "--label-smoothing"), (["--model", "PPLCNetV2_smal"], "PPLCNetV2_small"),
    (["--model", "no_such_model"], "--model"),
])
def test_train_values_checked_before_work(extra, flag, data, tmp_path, capsys):
    proc = call("train", TRAIN + ["--data-dir", str(data), "--output", str(tmp_path / "out"), *extra], capsys)
    one_error_line(proc, 2, flag)
    assert not (tmp_path / "out").exists()


def test_train_takes_paddleclas_spellings(data, tmp_path, capsys):
    proc = call("train", [*[("PPLCNetV2_small" if a == MODEL else a) for a in TRAIN], "--data-dir", str(data),
                          "--output", str(tmp_path / "out")], capsys)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert safe_load(tmp_path / "out" / "last.pt")["model_name"] == MODEL


@pytest.mark.parametrize("command, argv, names", [
    ("hgzoo", ["predict", "--model", MODEL, "--topk", "0", "x.png"], ["--topk"]),
    ("hgzoo", ["predict", "--model", MODEL, "--topk", "-3", "x.png"], ["--topk"]),
    ("validate", ["--model", MODEL, "--pretrained", "--data-dir", ".", "--img-size", "0"], ["--img-size"]),
    ("validate", ["--model", MODEL, "--pretrained", "--data-dir", ".", "--batch-size", "-1"], ["--batch-size"]),
    ("validate", ["--model", MODEL, "--pretrained", "--data-dir", ".", "--results-file", "/nope/r.csv"],
     ["--results-file", "/nope"]),
    ("hgzoo", ["models", "no_such*"], ["no_such*"]),
])
def test_cli_values_checked_before_work(command, argv, names, capsys):
    proc = call(command, argv, capsys)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert all(n in proc.stderr for n in names), proc.stderr


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=-1), "num_classes"), (dict(in_chans=0), "in_chans"), (dict(in_chans=-3), "in_chans"),
    (dict(features_only=True, out_indices=()), "out_indices"), (dict(global_pool="mean"), "global_pool"),
    (dict(pretrained_cfg_overlay=dict(crop_pct=2.0)), "crop_pct"),
])
def test_create_model_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hgzoo.create_model(MODEL, **kwargs)


# ----------------------------------------------------------------------------------------- one line, not a traceback

@pytest.mark.parametrize("name, expected", [
    ("empty.pt", "empty (0 bytes)"), ("truncated.pt", "corrupt"), ("text.pth", "not a weights file"),
    ("tensor.pth", "holds a Tensor, not a state dict"), ("list.pth", "holds a list, not a state dict"),
    ("legacy.pt", "pre-1.6"), ("dir", "is not a file"), ("missing.pt", "does not exist"),
])
def test_bad_weight_files_give_one_line(name, expected, files, data, capsys):
    path = files.get(name, files["dir"] / name)
    proc = call("validate", ["--model", MODEL, "--checkpoint", str(path), "--data-dir", str(data / "val")], capsys)
    one_error_line(proc, 2, expected)
    proc = call("hgzoo", ["predict", "--model", MODEL, "--pretrained-file", str(path),
                          str(data / "val" / "chelsea" / "0.png")], capsys)
    one_error_line(proc, 2, expected)


def test_missing_weights_offline_give_one_line(data, tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "HGZOO_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    proc = run("-m", "hgzoo", "predict", "--model", MODEL, str(data / "val" / "chelsea" / "0.png"), env=env)
    one_error_line(proc, 2, MODEL)
