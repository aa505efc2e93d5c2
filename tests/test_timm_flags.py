"""What a timm user types (issue 26): timm's benchmark.py and train.py flags, timm's dataset split names, and
``hgzoo.data.create_transform(**timm.data.resolve_data_config(...))``, against timm's own code where it has one.
validate.py's spellings are tested in test_validate.py, the ``hgzoo`` console script in test_train.py."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
from image_samples import calibrated_model, photos, small_model_name, write_png
from PIL import Image

from benchmarks.harness.cli import CPU_BACKENDS, GPU_BACKENDS, build_parser, config_from_args
from benchmarks.harness.subjects import BenchmarkInputError
from hgzoo.data import create_transform
from hgzoo.deploy import BACKENDS
from hgzoo.train.config import ConfigError, resolve_config

timm = pytest.importorskip("timm")


def _help(parse) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        parse(["--help"])
    return buf.getvalue()


# --- benchmark.py ---------------------------------------------------------------------------------------------------

def _bench(*argv: str):
    return config_from_args(build_parser().parse_args(list(argv)))


def test_benchmark_timm_flags_choose_the_backends_and_precisions():
    assert _bench("--device", "cpu").backends == CPU_BACKENDS
    cfg = _bench("--device", "cuda", "--amp", "-b", "8")  # timm's AMP on a GPU: fp16 autocast
    assert cfg.backends == GPU_BACKENDS and cfg.precisions == ["fp16"] and cfg.batch_sizes == [8]
    cfg = _bench("--torchcompile", "--amp", "--bench", "inference")
    assert cfg.backends == ["compile"] and cfg.precisions == ["bf16"]
    assert _bench("--torchcompile", "--device", "cuda").backends == ["cuda-compile"]
    shown = _help(build_parser().parse_args)
    for flag in ("--amp", "--channels-last", "--torchcompile", "--bench", "--torchscript", "--device"):
        assert flag in shown, flag
    assert "refused: no TorchScript" not in shown and "refused: the deploy" not in shown


def test_benchmark_torchscript_and_channels_last_choose_the_backends():
    """--torchscript is the torchscript backend as --torchcompile is compile; --channels-last forces the layout on
    the torch backends, keeps the runtimes (no torch layout) out of the defaults and refuses them when named."""
    from benchmarks.harness.core import check_config
    from hgzoo.deploy.backends import TorchScriptBackend

    assert _bench("--torchscript").backends == ["torchscript"]
    assert _bench("--torchscript", "--device", "cuda").backends == ["cuda-torchscript"]
    cfg = _bench("--torchscript", "--channels-last", "--amp")
    assert (cfg.backends, cfg.channels_last, cfg.precisions) == (["torchscript"], True, ["bf16"])
    assert _bench("--channels-last", "--device", "cpu").backends == ["eager", "reparam"]
    assert _bench("--channels-last", "--device", "cuda").backends == ["cuda", "cuda-compile"]
    assert not {"onnxruntime", "openvino", "tensorrt"} & set(_bench("--channels-last").backends)
    _, backends, peers = check_config(_bench("--model", "pphgnetv2_b0", "--channels-last", "--backend",
                                             "eager,reparam,compile,torchscript"))
    assert [b.channels_last for b in backends + peers] == [True] * 5  # reparam no longer probes; peers too
    assert type(backends[-1]) is TorchScriptBackend
    assert BACKENDS["reparam"].channels_last is None and BACKENDS["torchscript"].channels_last is False  # as it was
    for backends in ("eager,openvino", "onnxruntime"):
        with pytest.raises(BenchmarkInputError, match="--channels-last is torch's memory format; it does not apply"):
            check_config(_bench("--model", "pphgnetv2_b0", "--channels-last", "--backend", backends))


@pytest.mark.parametrize("argv, words", [
    (["--bench", "train"], "inference only"),
    (["--torchcompile", "eager"], "only inductor"),
    (["--torchcompile", "--backend", "eager"], "leave out --backend"),
    (["--torchscript", "--backend", "eager"], "leave out --backend"),
    (["--torchscript", "--torchcompile"], "give one of them"),
    (["--device", "cuda", "--backend", "eager"], "--device cuda contradicts --backend eager"),
    (["--amp", "--precision", "fp32"], "--amp is --precision fp16"),
])
def test_benchmark_timm_flags_it_cannot_honour_are_refused(argv, words):
    with pytest.raises(BenchmarkInputError, match=words):
        _bench(*argv)


def _channels_last(t: torch.Tensor) -> bool:
    return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)


def test_benchmark_torchscript_and_channels_last_run_checked_against_eager(monkeypatch):
    """Through the harness: the scripted model (a ScriptModule) and the channels-last torch backends run, their
    weights and input really in that layout, each output checked against eager fp32 (contiguous) before it is
    timed. That the check can fail: tests/tools/test_benchmark.py's test_wrong_output_is_flagged."""
    from benchmarks.harness import core
    from benchmarks.harness.timing import TimingConfig

    prepared = {}

    def spy(backend, subject, x, precision, threads):
        prepared[backend.name] = runner = real(backend, subject, x, precision, threads)
        return runner

    real = core.prepare_subject
    monkeypatch.setattr(core, "prepare_subject", spy)
    cfg = _bench("--model", "pphgnetv2_b0", "--img-size", "64", "--backend", "eager,reparam,torchscript",
                 "--channels-last", "--compare", "none", "--no-roofline", "--threads", "1", "--precision", "fp32",
                 "--quiet")
    cfg.timing = TimingConfig(warmup=1, min_iters=1, max_iters=2, budget_s=0.01, block_s=0.005, gap_s=0.0)
    report = core.run_benchmark(cfg)
    x = torch.randn(1, 3, 64, 64)
    for name in ("eager", "reparam", "torchscript"):
        m = report.find("pphgnetv2_b0", "hgzoo", name, "fp32", 1)
        assert m.status == "ok" and m.median_ms is not None, (name, m.reason)
        assert m.tolerance == 1e-4 and m.rel_err is not None and m.rel_err <= 1e-4, name  # checked, and agrees
        assert "channels" in m.note and "faster than" not in m.note, m.note  # asked for, not probed
        runner = prepared[name]
        assert runner.module is not None and "channels-last" in runner.compute
        weights = [p for p in runner.module.parameters() if p.dim() == 4]
        assert all(_channels_last(w) for w in weights), name
        assert any(not w.is_contiguous() for w in weights), name  # (1x1 and depthwise kernels are both layouts)
    assert isinstance(prepared["torchscript"].module, torch.jit.ScriptModule)
    assert not isinstance(prepared["eager"].module, torch.jit.ScriptModule)  # the check can fail
    for name in ("eager", "torchscript"):  # staged in the layout before the timed call
        assert _channels_last(prepared[name].stage(x)), name
    assert not _channels_last(x)


# --- validate.py ----------------------------------------------------------------------------------------------------

def test_validate_torchscript_gives_eagers_logits_and_metrics(tmp_path, capsys):
    """validate.py --torchscript runs torch.jit.script of the model (of the re-parameterized model with --reparam,
    in channels-last with --channels-last): eager's logits, and eager's top-1 / top-5 on a folder labelled with
    eager's own top-1 for half the images (both must say 50%)."""
    import json

    import hgzoo
    import hgzoo.cli.validate as validate
    from hgzoo.data import read_image
    name = small_model_name()
    raw = tmp_path / "raw"
    raw.mkdir()
    files = [write_png(raw / f"{i}.png", img[:96, :96]) for i, img in enumerate(list(photos().values())[:4])]
    ckpt = tmp_path / "model.pth"
    torch.save(hgzoo.create_model(name).state_dict(), ckpt)  # random weights; calibrated below
    base = ["--model", name, "--checkpoint", str(ckpt), "--img-size", "64", "--resize-short", "72", "--workers", "0",
            "--threads", "1", "--no-progress", "-b", "2"]
    dc = validate.target_of(name, validate.parse_args([*base, "--data-dir", "x"]), None).data_config
    x = torch.stack([create_transform(dc)(read_image(f)) for f in files])  # validate's preprocessing
    torch.save(calibrated_model(name, x).state_dict(), ckpt)

    def runner(*extra: str):
        args = validate.parse_args([*base, "--data-dir", "x", *extra])
        return validate.make_runner(validate.target_of(name, args, None), args, 1)

    ref = runner()(x)
    for extra in ((), ("--reparam",), ("--channels-last",)):
        scripted = runner("--torchscript", *extra)
        assert scripted.backend == "torchscript" and isinstance(scripted.module, torch.jit.ScriptModule)
        out = scripted(x)
        assert float((out - ref).abs().max()) <= 1e-4 * float(ref.abs().max()), extra
        if not extra:
            assert torch.equal(out, ref)  # eager's kernels: bit for bit
    assert float((scripted(x.flip(-1)) - ref).abs().max()) > 1e-2 * float(ref.abs().max())  # the check can fail
    ranked = ref.sort(dim=1, descending=True)
    assert (ranked.values[:, 0] - ranked.values[:, 1]).min() > 1e-3, "near-tied logits"
    labels = [int(ranked.indices[0, 0]), int(ranked.indices[1, 0]), int(ranked.indices[2, -1]),
              int(ranked.indices[3, -1])]
    data = tmp_path / "val"
    for f, label in zip(files, labels):
        (data / str(label)).mkdir(parents=True, exist_ok=True)
        (data / str(label) / f.name).write_bytes(f.read_bytes())
    rows = {}
    for flag in ("", "--torchscript"):
        out = tmp_path / f"r{flag}.json"
        argv = [*base, "--data-dir", str(data), "--results-file", str(out), *([flag] if flag else [])]
        assert validate.main(argv) == 0
        (rows[flag],) = json.loads(out.read_text())
    assert rows[""]["top1"] == rows["--torchscript"]["top1"] == 50.0
    assert rows[""]["top5"] == rows["--torchscript"]["top5"] == 50.0
    assert rows["--torchscript"]["backend"] == "torchscript" and "TorchScript" in rows["--torchscript"]["compute"]
    assert "runtime: torchscript fp32: TorchScript" in capsys.readouterr().out


# --- train.py -------------------------------------------------------------------------------------------------------

def _image_tree(root: Path, splits: tuple[str, ...]) -> Path:
    img = next(iter(photos(("coffee",)).values()))[:64, :64]
    for split in splits:
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            write_png(root / split / cls / "0.png", img)
    return root


@pytest.mark.parametrize("splits", [("train", "validation"), ("training", "val"), ("train", "eval", "valid"),
                                    ("training", "evaluation")])
def test_split_folders_are_found_as_timm_finds_them(tmp_path, splits):
    """train.py's default --train-split train / --val-split val find the folder timm's create_dataset would use."""
    from timm.data.dataset_factory import _search_split

    from hgzoo.train.data import find_split
    root = _image_tree(tmp_path, splits)
    for split in ("train", "validation", "val"):
        assert find_split(root, split) == Path(_search_split(str(root), split)), split
    assert find_split(root, "test") == root / "test"  # no synonym: the error names the folder asked for


def test_grad_checkpointing_and_validation_folder_take_effect(tmp_path):
    """--grad-checkpointing turns on the model's gradient checkpointing; data in timm's train/validation layout
    trains with the default --val-split val."""
    from hgzoo.train.engine import build_inputs
    data = _image_tree(tmp_path / "data", ("train", "validation"))
    base = ["--model", small_model_name(), "--data-dir", str(data), "--workers", "0", "--img-size", "32"]
    on = build_inputs(resolve_config([*base, "--grad-checkpointing"]), torch.device("cpu"))
    off = build_inputs(resolve_config(base), torch.device("cpu"))
    assert on.model.grad_checkpointing is True and off.model.grad_checkpointing is False
    assert on.num_classes == 2


def test_timm_schedule_and_compile_spellings():
    base = ["--model", small_model_name(), "--data-dir", "x"]
    cfg = resolve_config([*base, "--sched", "piecewise", "--decay-epochs", "9", "19", "--decay-rate", "0.5",
                          "--torchcompile", "inductor"])
    assert (cfg.decay_gamma, cfg.torchcompile) == (0.5, True)
    from timm.scheduler import MultiStepLRScheduler

    from hgzoo.train.optim import LRSchedule
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = LRSchedule(opt, 1.0, 1, 30, cfg.sched, 0, 0, cfg.decay_epochs, cfg.decay_gamma, 0)
    timm_sched = MultiStepLRScheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0),
                                      decay_t=[10, 20], decay_rate=0.5)
    # timm's milestone m takes effect one epoch earlier (its t + 1 convention): its [10, 20] is hgzoo's [9, 19]
    for epoch in (0, 8, 9, 10, 18, 19, 20, 29):
        assert sched.lr_at(epoch) == pytest.approx(timm_sched._get_lr(epoch)[0]), epoch
    same_numbers = LRSchedule(opt, 1.0, 1, 30, "piecewise", 0, 0, [10, 20], 0.5, 0)
    assert same_numbers.lr_at(9) != timm_sched._get_lr(9)[0]  # the check can fail: hence no --decay-milestones alias
    with pytest.raises(SystemExit):
        resolve_config([*base, "--torchcompile", "eager"])


def test_experiment_and_checkpoint_hist(tmp_path):
    base = ["--model", small_model_name(), "--data-dir", "x"]
    assert resolve_config([*base, "--experiment", "e1", "--output", str(tmp_path)]).output == str(tmp_path / "e1")
    assert resolve_config([*base, "--experiment", "e1"]).output == str(Path("output/train/e1"))  # timm's default
    assert resolve_config(base).output is None  # without it: output/<model>, as before
    assert resolve_config([*base, "--checkpoint-hist", "1"]).checkpoint_hist == 1
    assert resolve_config([*base, "--checkpoint-hist", "10"]).checkpoint_hist == 10  # timm's default: kept as timm
    with pytest.raises(ConfigError, match=r"--checkpoint-hist must be in \[1, inf\), got 0"):
        resolve_config([*base, "--checkpoint-hist", "0"])
    from hgzoo.train.config import build_parser as train_parser
    shown = _help(train_parser().parse_args)
    for flag in ("--grad-checkpointing", "--experiment", "--checkpoint-hist", "validation"):
        assert flag in shown, flag


# --- create_transform(**timm's data config) -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(next(iter(photos(("astronaut",)).values()))).resize((517, 333))


@pytest.mark.parametrize("interpolation, crop_pct", [("nearest", 0.95), ("bilinear", 0.875), ("bicubic", 0.9)])
def test_create_transform_takes_timms_data_config(photo, interpolation, crop_pct):
    """The same image through timm's create_transform and hgzoo's with timm's resolve_data_config: the same
    geometry (nearest is exact); bilinear/bicubic within one uint8 level (torch's antialiased kernels against
    Pillow's, see hgzoo.data.transforms)."""
    model = timm.create_model("resnet18", pretrained=False)
    cfg = timm.data.resolve_data_config({"interpolation": interpolation, "crop_pct": crop_pct}, model=model)
    assert {"input_size", "crop_mode", "crop_pct"} <= set(cfg)
    ref, ours = timm.data.create_transform(**cfg)(photo), create_transform(**cfg)(photo)
    assert ours.shape == ref.shape == (3, 224, 224)
    levels = (ours - ref).abs() * torch.tensor(cfg["std"]).view(3, 1, 1) * 255
    assert levels.max() < (1e-3 if interpolation == "nearest" else 1.01)
    assert (levels > 0.5).float().mean() < 0.01
    # The check can fail: hgzoo's own crop_pct rounds (round(224 / 0.95) = 236), timm's floors (235).
    own = create_transform(crop_size=224, crop_pct=crop_pct, interpolation=interpolation, resize_backend="pil",
                           size_rounding="torchvision", mean=cfg["mean"], std=cfg["std"])(photo)
    if round(224 / crop_pct) != int(224 / crop_pct):
        assert ((own - ref).abs() * 255 * 0.229).max() > 5


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(crop_mode="squash"), ValueError, "crop_mode='squash' is not supported"),
    (dict(is_training=True), ValueError, "training=True"),
    (dict(input_size=(3, 224, 160)), ValueError, "square"),
    (dict(input_size=(3, 224, 224), scale=(0.08, 1.0)), TypeError, "unknown key"),
])
def test_create_transform_says_which_timm_keywords_it_does_not_support(kwargs, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        create_transform(**kwargs)


def test_create_transform_input_size_sets_the_channels(photo):
    t = create_transform(input_size=(1, 96, 96), crop_pct=1.0, crop_mode="center", is_training=False,
                         mean=(0.5,), std=(0.5,))
    assert t(photo).shape == (1, 96, 96)
