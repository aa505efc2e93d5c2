"""hgzoo.integrations.rtdetr against D-FINE's own backbone code (PyPI d-fine-project 1.0.0, tests/detector_ref.py):
the same names, freeze rule, outputs, training step, registry and YAML, and weight loading.

RT-DETRv2's HGNetv2 is not on PyPI: its class is checked against D-FINE's code plus its documented differences
(PaddleClas's aggregation names, ``stem.stem2{a,b}.conv.1``, its defaults and freeze rule), written out here.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import detector_ref
import pytest
import torch
from torch import nn

from hgzoo.integrations import rtdetrv2
from hgzoo.integrations.rtdetr import FusedAffine, HGNetv2, HGZooBackbone, PResNet, register_backbones
from hgzoo.layers import FrozenBatchNorm2d

# Against D-FINE's own code (a reference environment): the full suite, not the fast tier.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

# use_lab as D-FINE's configs set it: B0 (N, S), B2 (M) with it; B4 (L), B5 (X) without; B1, B3, B6 as their family.
USE_LAB = {f"B{i}": i <= 3 for i in range(7)}


@pytest.fixture(scope="module")
def ref():
    folder = detector_ref.ensure_reference()
    if folder is None:
        msg = ("D-FINE's reference code is not there and cannot be downloaded "
               "(tests/reference/detectors_setup.sh needs PyPI)")
        if os.environ.get("CI"):
            pytest.fail(msg)  # in CI a missing oracle is a failure, as for the PaddleClas reference
        pytest.skip(msg)
    return detector_ref.load(folder)


@torch.no_grad()
def carry_input(model: nn.Module, x: torch.Tensor, lab_bias: float = 0.0, seed: int = 0) -> None:
    """Random weights that carry the input (DESIGN.md): BN gammas below 1, LAB blocks around identity (the stem's
    bias set to ``lab_bias``), BN statistics calibrated on ``x``, then perturbed."""
    g = torch.Generator().manual_seed(seed)

    def u(t: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(t.shape, generator=g) * (hi - lo) + lo

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.weight.copy_(u(bn.weight, 0.4, 0.9))
        bn.bias.copy_(u(bn.bias, -0.1, 0.1))
    for name, p in model.named_parameters():
        if name.endswith("lab.scale"):
            p.copy_(u(p, 0.8, 1.2))
        elif name.endswith("lab.bias"):
            p.copy_(torch.full_like(p, lab_bias) if name.startswith("stem.") else u(p, -0.1, 0.1))
    model.train()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model(x)
    for bn in bns:
        bn.momentum = 0.1
        bn.running_var.mul_(u(bn.running_var, 0.95, 1.05))
        bn.running_mean.add_(u(bn.running_mean, -0.02, 0.02))
    model.eval()


def max_rel(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    assert [o.shape for o in ours] == [t.shape for t in theirs]
    return max(float((o - t).abs().max() / t.abs().max()) for o, t in zip(ours, theirs))


def _inputs(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * w + seed))


def _their_hgnet(ref, name: str, lab_bias: float, size: tuple[int, int] = (193, 257)):
    """Theirs, with weights that carry the input, calibrated at ``size`` (the statistics of the deep stages depend on
    it: at a smaller size their maps are mostly border)."""
    theirs = ref.HGNetv2(name, use_lab=USE_LAB[name], freeze_at=-1, freeze_norm=False, pretrained=False)
    carry_input(theirs, _inputs(*size, seed=1), lab_bias)
    return theirs


def _check_carries(y: list[torch.Tensor]) -> None:
    """The last level of two different images differs by a good fraction of its spread."""
    last = y[-1]
    assert float((last[0] - last[1]).std()) > 0.2 * float(last.std())


HG_CASES = [(f"B{i}", s, (193, 257)) for i in range(7) for s in ((-0.4, 0.4) if USE_LAB[f"B{i}"] else (0.0,))]
HG_CASES += [("B0", -0.4, (640, 640)), ("B4", 0.0, (640, 640))]


@pytest.mark.parametrize("name,lab_bias,size", HG_CASES)
def test_hgnetv2_parity_both_ways(ref, name, lab_bias, size):
    theirs = _their_hgnet(ref, name, lab_bias, size)
    ours = HGNetv2(name, use_lab=USE_LAB[name], freeze_at=-1, freeze_norm=False, pretrained=False)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval()
    x = _inputs(*size)
    with torch.no_grad():
        y_theirs, y_ours = theirs(x), ours(x)
    _check_carries(y_theirs)
    assert max_rel(y_ours, y_theirs) < 1e-5
    # And back: ours into a fresh copy of theirs, strictly.
    back = ref.HGNetv2(name, use_lab=USE_LAB[name], freeze_at=-1, freeze_norm=False, pretrained=False)
    back.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        assert max_rel(back.eval()(x), y_theirs) == 0.0


@pytest.mark.parametrize("name", ["B0", "B2"])
def test_paddle_stem_pool_fails_on_a_negative_lab_bias(ref, name):
    """PaddleClas's "SAME" (-inf) stem pool is not theirs: the parity test sees it (it can fail)."""
    theirs = _their_hgnet(ref, name, -0.4)
    same = HGNetv2(name, use_lab=True, freeze_at=-1, freeze_norm=False, pretrained=False, stem_pool="same")
    same.load_state_dict(theirs.state_dict(), strict=True)
    x = _inputs(193, 257)
    with torch.no_grad():
        assert max_rel(same.eval()(x), theirs(x)) > 1e-3


@pytest.mark.parametrize("depth,return_idx,size", [
    (18, [0, 1, 2, 3], (193, 257)), (34, [1, 2, 3], (193, 257)), (50, [1, 2, 3], (193, 257)),
    (101, [2, 3], (193, 257)), (50, [0, 3], (640, 640)),
])
def test_presnet_parity_both_ways(ref, depth, return_idx, size):
    theirs = ref.PResNet(depth, return_idx=return_idx, freeze_norm=False)
    carry_input(theirs, _inputs(*size, seed=1))
    ours = PResNet(depth, return_idx=return_idx, freeze_norm=False)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert (ours.return_idx, ours.out_channels, ours.out_strides) == (theirs.return_idx, theirs.out_channels,
                                                                      theirs.out_strides)
    x = _inputs(*size)
    with torch.no_grad():
        y_theirs, y_ours = theirs(x), ours.eval()(x)
    _check_carries(y_theirs)
    assert max_rel(y_ours, y_theirs) < 1e-5
    back = ref.PResNet(depth, return_idx=return_idx, freeze_norm=False)
    back.load_state_dict(ours.state_dict(), strict=True)


def _names(model: nn.Module) -> tuple[list, list, list]:
    return ([(k, p.requires_grad) for k, p in model.named_parameters()], [k for k, _ in model.named_buffers()],
            list(model.state_dict()))


HG_FREEZES = [dict(freeze_at=a, freeze_stem_only=s, freeze_norm=n) for a in (-1, 0, 1, 2, 5)
              for s in (True, False) for n in (True, False)]


@pytest.mark.parametrize("kwargs", HG_FREEZES, ids=str)
def test_hgnetv2_names_and_freeze(ref, kwargs):
    theirs = ref.HGNetv2("B0", use_lab=True, pretrained=False, **kwargs)
    ours = HGNetv2("B0", use_lab=True, pretrained=False, **kwargs)
    assert _names(ours) == _names(theirs)
    assert (ours._out_channels, ours._out_strides, ours.return_idx) == (theirs._out_channels, theirs._out_strides,
                                                                        theirs.return_idx)


@pytest.mark.parametrize("kwargs", [dict(freeze_at=a, freeze_norm=n, num_stages=s) for a in (-1, 0, 1, 3, 6)
                                    for n in (True, False) for s in (4, 3)], ids=str)
def test_presnet_names_and_freeze(ref, kwargs):
    return_idx = [0, 1, 2] if kwargs["num_stages"] == 3 else [0, 1, 2, 3]
    assert _names(PResNet(18, return_idx=return_idx, **kwargs)) == _names(
        ref.PResNet(18, return_idx=return_idx, **kwargs))


def _sgd_step(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    loss = sum((y ** 2).mean() for y in model(x))
    loss.backward()
    opt.step()


@pytest.mark.parametrize("build", ["hgnetv2", "presnet"])
def test_one_sgd_step_is_theirs(ref, build):
    """From the same weights and batch, one step leaves the same parameters and BN statistics (frozen stages'
    statistics still move, in theirs and ours)."""
    if build == "hgnetv2":
        kwargs = dict(freeze_at=0, freeze_stem_only=False, freeze_norm=False, pretrained=False)
        theirs, ours = ref.HGNetv2("B0", use_lab=True, **kwargs), HGNetv2("B0", use_lab=True, **kwargs)
    else:
        kwargs = dict(freeze_at=1, freeze_norm=False)
        theirs, ours = ref.PResNet(18, **kwargs), PResNet(18, **kwargs)
    carry_input(theirs, _inputs(64, 96), -0.3)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = _inputs(96, 128)
    before = {k: v.clone() for k, v in theirs.state_dict().items()}
    _sgd_step(theirs, x)
    _sgd_step(ours, x)
    after_theirs, after_ours = theirs.state_dict(), ours.state_dict()
    floats = [k for k, v in after_theirs.items() if v.dtype.is_floating_point]
    for k in floats:
        assert torch.allclose(after_ours[k], after_theirs[k], rtol=1e-4, atol=1e-6), k
    stem = [k for k in floats if k.startswith(("stem.", "conv1."))]
    # The frozen stem: its weights stay, its BatchNorm statistics move (theirs and so ours).
    assert all(torch.equal(after_ours[k], before[k]) for k in stem if k.endswith("weight"))
    assert not any(torch.equal(after_ours[k], before[k]) for k in stem if k.endswith("running_mean"))


def test_freeze_eval_is_opt_in():
    ours = HGNetv2("B0", use_lab=True, freeze_at=0, freeze_stem_only=False, freeze_norm=False, pretrained=False,
                   freeze_eval=True).train()
    assert not ours.stem.training and not ours.stages[0].training and ours.stages[1].training


def test_rtdetrv2_hgnetv2_is_dfine_with_the_documented_differences(ref):
    """RT-DETRv2's names: PaddleClas's aggregation names, the stem's 2x2 convs as ``conv.1``; its freeze rule: the
    stem and min(freeze_at, 4) stages; its defaults: nothing frozen, BatchNorm, no weights."""
    def rtdetrv2_name(key: str) -> str:
        key = key.replace(".aggregation.0.", ".aggregation_squeeze_conv.")
        key = key.replace(".aggregation.1.", ".aggregation_excitation_conv.")
        return key.replace("stem.stem2a.conv.weight", "stem.stem2a.conv.1.weight").replace(
            "stem.stem2b.conv.weight", "stem.stem2b.conv.1.weight")

    theirs = _their_hgnet(ref, "B4", 0.0)
    ours = rtdetrv2.HGNetv2("L")
    assert list(ours.state_dict()) == [rtdetrv2_name(k) for k in theirs.state_dict()]
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in ours.modules())
    assert all(p.requires_grad for p in ours.parameters())
    ours.load_state_dict({rtdetrv2_name(k): v for k, v in theirs.state_dict().items()}, strict=True)
    x = _inputs(193, 257)
    with torch.no_grad():
        assert max_rel(ours.eval()(x), theirs(x)) < 1e-5
    frozen = rtdetrv2.HGNetv2("X", freeze_at=2)
    grads = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("stages") else ""): p.requires_grad
             for k, p in frozen.named_parameters()}
    assert grads == {"stem": False, "stages.0": False, "stages.1": False, "stages.2": True, "stages.3": True}
    with pytest.raises(TypeError, match="freeze_stem_only"):
        rtdetrv2.HGNetv2("L", freeze_stem_only=True)


@pytest.mark.parametrize("build", ["dfine", "rtdetrv2", "presnet"])
def test_convert_to_deploy_keeps_outputs(ref, build):
    if build == "presnet":
        theirs = ref.PResNet(50, freeze_norm=True)
        ours = PResNet(50, freeze_norm=True)
    else:
        theirs = ref.HGNetv2("B0", use_lab=True, freeze_at=0, freeze_norm=True, pretrained=False)
        ours = (HGNetv2("B0", use_lab=True, freeze_norm=True, pretrained=False) if build == "dfine" else
                rtdetrv2.HGNetv2("B0", use_lab=True, freeze_norm=True))
    bn_twin = ref.PResNet(50, freeze_norm=False) if build == "presnet" else _their_hgnet(ref, "B0", -0.4)
    if build == "presnet":
        carry_input(bn_twin, _inputs(193, 257, seed=1))
    sd = bn_twin.state_dict()
    theirs.load_state_dict(sd, strict=True)
    if build == "rtdetrv2":
        sd = {k.replace("stem2a.conv.", "stem2a.conv.1.").replace("stem2b.conv.", "stem2b.conv.1.")
              .replace("aggregation.0", "aggregation_squeeze_conv").replace("aggregation.1",
                                                                            "aggregation_excitation_conv"): v
              for k, v in sd.items()}
    ours.load_state_dict(sd, strict=True)
    # In float64: folding changes the float32 rounding (about 1e-4 of the maximum through ResNet-50), not the function.
    theirs, ours, x = theirs.double(), ours.double(), _inputs(193, 257).double()
    with torch.no_grad():
        y = theirs.eval()(x)
        assert ours.convert_to_deploy() is ours
        assert not any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in ours.modules())
        assert build == "presnet" or any(isinstance(m, FusedAffine) for m in ours.modules())
        assert max_rel(ours(x), y) < 1e-10


def test_onnx_export_at_640_runs_in_onnxruntime(ref, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    theirs = _their_hgnet(ref, "B0", -0.4, (640, 640))
    ours = HGNetv2("B0", use_lab=True, pretrained=False)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.convert_to_deploy()
    x = _inputs(640, 640)[:1]
    path = tmp_path / "hgnetv2_b0.onnx"
    torch.onnx.export(ours, (x,), str(path), input_names=["x"], dynamo=True, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        want = theirs(x)
    assert max_rel([torch.from_numpy(g) for g in got], want) < 1e-4


YAML = """\
model: DFINE
DFINE:
  backbone: HGNetv2

HGNetv2:
  pretrained: False
  local_model_dir: weight/hgnetv2/
  name: 'B0'
  return_idx: [2, 3]
  freeze_at: -1
  freeze_norm: False
  use_lab: True
"""


def test_their_registry_and_yaml_build_ours(ref, tmp_path):
    """One line in their backbone package registers ours; a backbone section written as their configs are builds
    ours with its arguments; their -t loader (name and shape matching) misses no backbone tensor."""
    (tmp_path / "dfine_hgnetv2_n.yml").write_text(YAML)
    try:
        register_backbones(ref.backbone_package)
        cfg = ref.yaml_utils.load_config(str(tmp_path / "dfine_hgnetv2_n.yml"))
        global_cfg = ref.yaml_utils.merge_config(cfg, inplace=False, overwrite=False)
        backbone = ref.workspace.create("HGNetv2", global_cfg)
    finally:  # leave their registry as their own code made it, for the other tests
        ref.core.GLOBAL_CONFIG.pop("HGNetv2", None)
        ref.core.register(force=True)(ref.HGNetv2)
        ref.core.register(force=True)(ref.PResNet)
    assert type(backbone) is HGNetv2
    assert (backbone.name, backbone.use_lab, backbone.return_idx) == ("B0", True, [2, 3])
    their_ckpt = {f"backbone.{k}": v for k, v in _their_hgnet(ref, "B0", 0.3).state_dict().items()}
    matched, info = ref.matched_state({f"backbone.{k}": v for k, v in backbone.state_dict().items()}, their_ckpt)
    assert info == {"missed": [], "unmatched": []} and len(matched) == len(their_ckpt)


def test_pretrained_from_their_file_path_and_url(ref, tmp_path, monkeypatch):
    from local_server import LocalServer

    theirs = _their_hgnet(ref, "B0", -0.4)
    (tmp_path / "w").mkdir()
    torch.save(theirs.state_dict(), tmp_path / "w" / "PPHGNetV2_B0_stage1.pth")
    ours = HGNetv2("B0", use_lab=True, pretrained=True, local_model_dir=str(tmp_path / "w"))
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in theirs.state_dict().items()
               if not k.endswith("num_batches_tracked"))
    presnet = ref.PResNet(18, freeze_norm=False)
    carry_input(presnet, _inputs(64, 64))
    torch.save({"model": {f"backbone.{k}": v for k, v in presnet.state_dict().items()}}, tmp_path / "ckpt.pth")
    from_path = PResNet(18, pretrained=str(tmp_path / "ckpt.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with LocalServer() as server:
        server.files["/files/r18.pth"] = (tmp_path / "ckpt.pth").read_bytes()
        from_url = PResNet(18, pretrained=f"{server.url}/files/r18.pth")
    for loaded in (from_path, from_url):
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in presnet.state_dict().items()
                   if not k.endswith("num_batches_tracked"))
    with pytest.raises(ValueError, match="does not fit"):
        PResNet(34, pretrained=str(tmp_path / "ckpt.pth"))


RESOLVE = textwrap.dedent("""\
    import sys, torch
    from hgzoo.integrations.rtdetr import HGNetv2
    m = HGNetv2("B0", use_lab=True, pretrained=True, local_model_dir=sys.argv[1])
    torch.save(m.state_dict(), sys.argv[2])
""")


def test_pretrained_without_their_file_uses_hgzoos_resolver(tmp_path):
    """No file in local_model_dir: hgzoo's tag for it (pphgnetv2_b0.ssld_stage1_in22k_in1k), here from a local Hub
    serving timm's file of it; timm's names are D-FINE's (its head aside), so the weights are compared by name."""
    timm = pytest.importorskip("timm")
    from local_server import LocalServer
    from safetensors.torch import save_file

    net = timm.create_model("hgnetv2_b0")
    (tmp_path / "repo").mkdir()
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(sd, str(tmp_path / "repo" / "model.safetensors"))
    with LocalServer() as server:
        server.add_hub_repo("timm/hgnetv2_b0.ssld_stage1_in22k_in1k", tmp_path / "repo")
        env = {"HF_HOME": str(tmp_path / "hf"), "HGZOO_CACHE": str(tmp_path / "cache"), "HF_ENDPOINT": server.url,
               "HGZOO_PADDLE_MIRROR": f"{server.url}/paddle", "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1"}
        import os
        full = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HGZOO_"))} | env
        proc = subprocess.run([sys.executable, "-c", RESOLVE, str(tmp_path / "none"), str(tmp_path / "out.pt")],
                              env=full, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = torch.load(tmp_path / "out.pt")
    assert set(loaded) <= set(sd)
    assert all(torch.equal(v, sd[k]) for k, v in loaded.items() if not k.endswith("num_batches_tracked"))


def test_bad_arguments_are_one_line_errors():
    for build, match in [(lambda: PResNet(50, variant="b"), "variant"), (lambda: PResNet(50, act="silu"), "act"),
                         (lambda: PResNet(152), "depth"), (lambda: HGNetv2("B9", pretrained=False), "B9"),
                         (lambda: HGNetv2("B0", return_idx=[4], pretrained=False), "return_idx"),
                         (lambda: HGNetv2("B0", stem_pool="valid", pretrained=False), "stem_pool")]:
        with pytest.raises(ValueError, match=match) as e:
            build()
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="use_lab"):
        HGNetv2("B4", use_lab=True, pretrained=True, local_model_dir="/nonexistent/")


@pytest.mark.parametrize("name,return_idx", [("pplcnetv2_base", [1, 2, 3]), ("hrnet_w18_c", [0, 2, 3]),
                                             ("resnet152_vd", [1, 2, 3])])
def test_other_hgzoo_backbones_through_their_interface(name, return_idx):
    ours = HGZooBackbone(name, return_idx=return_idx, freeze_at=1, freeze_norm=True)
    x = _inputs(160, 192)[:1]
    with torch.no_grad():
        ys = ours.eval()(x)
    assert [y.shape[1] for y in ys] == ours.out_channels
    assert [160 // y.shape[2] for y in ys] == ours.out_strides == [ours._out_strides[i] for i in return_idx]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ours.modules())
    frozen = [p for m in ours._frozen for p in m.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert sum(p.requires_grad for p in ours.parameters()) == sum(1 for _ in ours.parameters()) - len(frozen)


def _convert(*argv: str) -> subprocess.CompletedProcess:
    """``python -m hgzoo.convert`` as a user runs it: a real process (once per test below, for its exit code)."""
    return subprocess.run([sys.executable, "-m", "hgzoo.convert", *argv], capture_output=True, text=True,
                          timeout=300)


def _convert_here(capsys, *argv: str) -> subprocess.CompletedProcess:
    """The same command's ``main(argv)`` in this process (a fresh interpreter per conversion is not the point)."""
    from hgzoo.cli.convert import main

    capsys.readouterr()
    code = main(list(argv))
    cap = capsys.readouterr()
    return subprocess.CompletedProcess(["hgzoo.convert", *argv], code, cap.out, cap.err)


def test_convert_cli_their_files_to_hgzoo_and_back(ref, tmp_path, capsys):
    """A backbone file and a whole detector checkpoint's backbone.* → hgzoo's names (which hgzoo's classifier
    loads) → their names again (which their class loads strictly), tensor for tensor. In-process; the refusal of
    a file of another shape through the real command (exit 2)."""
    from safetensors.torch import load_file

    import hgzoo

    theirs = _their_hgnet(ref, "B0", 0.3, (64, 64))
    torch.save(theirs.state_dict(), tmp_path / "PPHGNetV2_B0_stage1.pth")
    detector = {"model": {**{f"backbone.{k}": v for k, v in theirs.state_dict().items()},
                          "decoder.query.weight": torch.zeros(3, 4)}}
    torch.save(detector, tmp_path / "dfine_n_coco.pth")
    for source in ("PPHGNetV2_B0_stage1.pth", "dfine_n_coco.pth"):
        out = tmp_path / source.split(".")[0]
        proc = _convert_here(capsys, "--from", "dfine", "--model", "B0", "--input", str(tmp_path / source),
                             "--output", str(out))
        assert proc.returncode == 0, proc.stderr
        native = load_file(out / "pphgnetv2_b0.backbone.safetensors")
        classifier = hgzoo.create_model("pphgnetv2_b0")
        missing, unexpected = classifier.load_state_dict(native, strict=False)
        assert not unexpected and all(k.startswith("head.") for k in missing)
        proc = _convert_here(capsys, "--to", "dfine", "--model", "B0",
                             "--input", str(out / "pphgnetv2_b0.backbone.safetensors"), "--output", str(out / "back"))
        assert proc.returncode == 0, proc.stderr
        back = torch.load(out / "back" / "PPHGNetV2_B0_stage1.pth")
        fresh = ref.HGNetv2("B0", use_lab=True, freeze_at=-1, freeze_norm=False, pretrained=False)
        fresh.load_state_dict(back, strict=True)
        assert all(torch.equal(back[k], v) for k, v in theirs.state_dict().items())
    wrong = _convert("--from", "dfine", "--model", "B1", "--input", str(tmp_path / "PPHGNetV2_B0_stage1.pth"),
                     "--output", str(tmp_path / "wrong"))
    assert wrong.returncode == 2 and "of another shape" in wrong.stderr


def test_convert_cli_presnet_both_ways(ref, tmp_path, capsys):
    """In-process (the real command's exit codes are the test above's)."""
    theirs = ref.PResNet(34, freeze_norm=True)
    torch.save(theirs.state_dict(), tmp_path / "r34.pth")
    assert _convert_here(capsys, "--from", "presnet", "--model", "34", "--input", str(tmp_path / "r34.pth"),
                         "--output", str(tmp_path)).returncode == 0
    assert _convert_here(capsys, "--to", "presnet", "--model", "34",
                         "--input", str(tmp_path / "resnet34_vd.backbone.safetensors"),
                         "--output", str(tmp_path / "back")).returncode == 0
    back = torch.load(tmp_path / "back" / "ResNet34_vd_backbone.pth")
    assert set(back) == set(theirs.state_dict())
    PResNet(34).load_state_dict(back, strict=True)


TORCHRUN = textwrap.dedent("""\
    import sys, torch, torch.distributed as dist
    from hgzoo.integrations.rtdetr import HGNetv2
    dist.init_process_group("gloo")
    m = HGNetv2("B0", use_lab=True, pretrained=True, local_model_dir=sys.argv[1])
    total = torch.tensor([float(sum(p.double().sum() for p in m.state_dict().values()))], dtype=torch.float64)
    dist.all_reduce(total)
    if dist.get_rank() == 0:
        print("SUM", float(total) / dist.get_world_size())
    dist.destroy_process_group()
""")


def test_pretrained_under_torchrun(ref, tmp_path):
    """Two torchrun processes (gloo) load their file as one process does; no rank-0-only download to wait for."""
    theirs = _their_hgnet(ref, "B0", 0.2, (64, 64))
    (tmp_path / "w").mkdir()
    torch.save(theirs.state_dict(), tmp_path / "w" / "PPHGNetV2_B0_stage1.pth")
    (tmp_path / "run.py").write_text(TORCHRUN)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(tmp_path / "run.py"), str(tmp_path / "w")], capture_output=True, text=True,
                          timeout=180, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = float(sum(v.double().sum() for v in HGNetv2("B0", use_lab=True, pretrained=True,
                                                        local_model_dir=str(tmp_path / "w")).state_dict().values()))
    got = float(proc.stdout.split("SUM")[1])
    assert abs(got - want) <= 1e-9 * abs(want)


@pytest.mark.parametrize("stem_pool,equal", [("zero", True), ("same", False)])
def test_hgzoo_classifier_with_the_zero_stem_pool_is_their_network(ref, stem_pool, equal):
    """create_model("pphgnetv2_b0", stem_pool="zero") in hgzoo's own names (through the key map) gives their
    features; PaddleClas's default ("same") does not, on a negative LAB bias."""
    import hgzoo
    from hgzoo.convert.detectors import to_hgzoo

    theirs = _their_hgnet(ref, "B0", -0.4)
    native = hgzoo.create_model("pphgnetv2_b0", stem_pool=stem_pool, features_only=True, out_indices=(1, 2, 3))
    native.model.load_state_dict(to_hgzoo(theirs.state_dict(), "dfine", "B0"), strict=True)
    x = _inputs(193, 257)
    with torch.no_grad():
        err = max_rel(native.eval()(x), theirs(x))
    assert (err < 1e-5) if equal else (err > 1e-3)
