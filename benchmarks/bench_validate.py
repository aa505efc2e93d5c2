"""End-to-end validation throughput on real JPEGs: hgzoo's validate.py on each backend x precision, against
timm's validate.py loop and PaddleClas's own inference predictor, in one run, with the same weights.

What runs (each in its own process, one after the other, on the same folder of JPEGs):

* **timm**: timm's ``validate.py`` loop reproduced with timm's own API (the script is not in the pip package):
  ``timm.create_model`` (timm's port, e.g. ``hgnet_small``), ``resolve_data_config``, ``create_dataset``,
  ``create_loader`` (its prefetcher, its PIL pipeline), a warm-up batch, then the timed loop; with the flag sets
  of ``--timm-configs`` (``fp32``, ``fp32-cl`` channels-last, ``bf16-cl`` = ``--amp --amp-dtype bfloat16
  --channels-last``, ``+reparam``, ``+compile`` = ``--torchcompile``).
* **PaddleClas**: its ``deploy/python/predict_cls.py`` as it runs (in the reference environment, a subprocess):
  the model exported with ``paddle.jit.save`` from the same weights, Paddle Inference with
  ``Config.enable_mkldnn()`` (its cache capacity 10), ``set_cpu_math_library_num_threads``, IR optimization and
  memory optimization on; images read with ``cv2.imread`` and preprocessed one by one in the main process with
  ``paddleclas.deploy.python.preprocess``'s ops, batched, ``copy_from_cpu`` / ``run`` / ``copy_to_cpu``. bf16 is
  ``enable_mkldnn_bfloat16()``. Its int8 path needs a PaddleSlim-quantized ``inference_int8`` model: not made here.
* **hgzoo**: ``validate.py --backend B --precision P`` (exported and verified first, export time not counted),
  with ``--agreement``: top-1 agreement with eager fp32 from a second, untimed pass.

The weights: the model (default ``pphgnet_small``) with a 7-class classifier fitted to the photos (BatchNorm
statistics from ``--fit`` images, then a ridge-regression classifier on the pre-logits, labels = the source photo),
so that accuracy and agreement measure a real classifier, not flat random logits. They start as PaddleClas's own
initialization (saved by Paddle, converted by hgzoo), are written back to Paddle's keys (checked by converting them
again), exported by Paddle (its logits checked against hgzoo's), and copied into timm's port by position (its logits
checked too). Images: scikit-image's 7 photos as random crops, long side 400-640 px, half mirrored, JPEG quality
85-95, labelled by photo; ``--fit`` more for the classifier and int8 calibration, disjoint from the validated ones.

Images/s is each tool's own loop, end to end (loader start to last logits), model building and export excluded;
the share of other processes' CPU time during each run is printed (the machine may be shared). One run per
configuration, in order: compare only figures from the same session.

    python benchmarks/bench_validate.py [--model pphgnet_small] [--num-images 256] [--batch-size 32] \\
        [--results-file bench_validate.json] [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as `python benchmarks/bench_validate.py`: the tools import from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket")
HGZOO_CONFIGS = ("eager:fp32", "eager:bf16", "compile:fp32", "onnxruntime:fp32", "onnxruntime:int8", "openvino:fp32",
                 "openvino:bf16", "openvino:int8")
TIMM_CONFIGS = ("fp32", "fp32-cl", "fp32-cl+reparam", "bf16-cl", "bf16-cl+reparam", "bf16-cl+compile")
QUICK = {"num_images": 14, "fit_images": 14, "batch_size": 7, "hgzoo": ("openvino:fp32",), "timm": ("fp32",),
         "paddle": ("fp32",)}


# ---------------------------------------------------------------------------------------------- images

def make_images(root: Path, n: int, seed: int) -> Path:
    """``n`` JPEGs under ``root/<photo>/``: crops of scikit-image's photos, long side 400-640 px, half mirrored."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = {name: Image.fromarray(np.ascontiguousarray(getattr(data, name)()[..., :3])) for name in PHOTOS}
    for i in range(n):
        name = PHOTOS[i % len(PHOTOS)]
        img = sources[name]
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = img.crop((left, top, left + cw, top + ch))
        scale = int(rng.integers(400, 641)) / max(crop.size)
        crop = crop.resize((max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale))),
                           Image.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        (root / name).mkdir(parents=True, exist_ok=True)
        crop.save(root / name / f"{i:05d}.jpg", quality=int(rng.integers(85, 96)))
    return root


def draft_deviation(folder: Path, resize_short: int, interpolation: str, backend: str, limit: int = 64) -> dict:
    """How far decoding at reduced size (libjpeg's DCT scaling, PIL's ``draft()``) moves the preprocessed pixels,
    on the images whose short side allows a 1/2 scale: max and mean |difference| in 8-bit levels."""
    import io

    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    from hgzoo.data import create_transform, decode_bytes

    tf = create_transform(resize_short=resize_short, interpolation=interpolation, resize_backend=backend,
                          normalize=False)
    diffs = []
    for f in sorted(folder.rglob("*.jpg"))[:limit]:
        raw = f.read_bytes()
        img = Image.open(io.BytesIO(raw))
        if min(img.size) < 2 * resize_short:
            continue
        img.draft("RGB", (img.size[0] // 2, img.size[1] // 2))
        d = (tf(decode_bytes(raw)).float() - tf(F.pil_to_tensor(img.convert("RGB"))).float()).abs()
        diffs.append((float(d.max()), float(d.mean())))
    if not diffs:
        return {"images": 0}
    return {"images": len(diffs), "max_levels": max(m for m, _ in diffs),
            "mean_levels": round(float(np.mean([a for _, a in diffs])), 3)}


# ---------------------------------------------------------------------------------------------- the weights

def fit_classifier(model, fit_dir: Path, classes: int):
    """BatchNorm statistics from the fit images, then a ridge-regression classifier on their pre-logits."""
    import torch

    from hgzoo.checkpoint import data_config
    from hgzoo.data import ImageFolder, create_transform

    ds = ImageFolder(fit_dir, transform=create_transform(data_config(None, model)))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor(ds.targets)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), 16):
            model(x[i:i + 16])
        model.eval()
        feats = torch.cat([model.forward_head(model.forward_features(x[i:i + 16]), pre_logits=True)
                           for i in range(0, len(x), 16)]).double()
    f1 = torch.cat([feats, torch.ones(len(feats), 1, dtype=torch.float64)], 1)
    gram = f1.T @ f1
    target = torch.nn.functional.one_hot(y, classes).double() * 2 - 1
    w = torch.linalg.solve(gram + 0.1 * gram.diagonal().mean() * torch.eye(len(gram), dtype=torch.float64),
                           f1.T @ target)
    model.head.fc.weight.data.copy_(w[:-1].T.float())
    model.head.fc.bias.data.copy_(w[-1].float())
    return model


def to_paddle(model, init: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``model``'s weights under Paddle's keys (those of ``init``, a Paddle state dict of the same network), checked
    by converting them back with hgzoo's converter."""
    import torch

    from hgzoo.convert.paddle import convert_paddle_state_dict

    own, out = model.state_dict(), {}
    for pkey, arr in init.items():
        if model.paddle_key_map.is_dropped(pkey):
            out[pkey] = arr
            continue
        v = own[model.paddle_key_map.rename(pkey)].detach().numpy()
        if v.shape != arr.shape:
            v = v.reshape(v.shape[0], -1).T if v.ndim in (2, 4) else v
        out[pkey] = np.ascontiguousarray(v.reshape(arr.shape).astype(arr.dtype))
    back = convert_paddle_state_dict(out, model)
    bad = [k for k, v in own.items() if not k.endswith("num_batches_tracked") and not torch.equal(back[k], v)]
    if bad:
        raise RuntimeError(f"the weights do not survive the round trip to Paddle's keys: {bad[:3]}")
    return out


# ---------------------------------------------------------------------------------------------- the sides

def _timing_result(n: int, seconds: float, preds: list[int], correct: int, extra: dict) -> dict:
    return {"images": n, "seconds": round(seconds, 3), "img_per_sec": round(n / seconds, 2),
            "top1": round(100 * correct / max(n, 1), 3), "preds": preds, **extra}


def side_timm(a: argparse.Namespace) -> dict:
    """timm validate.py's loop on timm's port, with the flags of one configuration (hgzoo's venv)."""
    import timm
    import torch
    from timm.data import create_dataset, create_loader, resolve_data_config

    import hgzoo
    from hgzoo.files import safe_load

    torch.set_num_threads(a.threads)
    ours = hgzoo.create_model(a.model, num_classes=len(PHOTOS)).eval()
    ours.load_state_dict(safe_load(a.weights))
    model = timm.create_model(a.timm_model, num_classes=len(PHOTOS)).eval()
    theirs = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    mine = [v for k, v in ours.state_dict().items() if not k.endswith("num_batches_tracked")]
    model.load_state_dict(dict(zip(theirs, mine)), strict=False)  # the same tensors, in the same order
    probe = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref = ours(probe)
        rel = float((model(probe) - ref).abs().max() / ref.abs().max())
    flags = a.timm_config
    if "reparam" in flags:
        from timm.utils import reparameterize_model

        model = reparameterize_model(model)
    cl, amp = "-cl" in flags, flags.startswith("bf16")
    dc = resolve_data_config({}, model=model)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    if "compile" in flags:
        model = torch.compile(model)
    dataset = create_dataset("", root=a.images)
    loader = create_loader(dataset, input_size=dc["input_size"], batch_size=a.batch_size, use_prefetcher=True,
                           interpolation=dc["interpolation"], mean=dc["mean"], std=dc["std"], num_workers=a.workers,
                           crop_pct=dc["crop_pct"], crop_mode=dc["crop_mode"], device=torch.device("cpu"))
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    preds, correct = [], 0
    with torch.inference_mode():
        x = torch.randn((a.batch_size,) + tuple(dc["input_size"]))  # timm's warm-up batch
        with autocast():
            model(x.contiguous(memory_format=torch.channels_last) if cl else x)
        start = time.perf_counter()
        for x, target in loader:
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                out = model(x)
            p = out.float().argmax(1)
            correct += int((p == target).sum())
            preds += p.tolist()
        seconds = time.perf_counter() - start
    return _timing_result(len(preds), seconds, preds, correct, {"weights_max_rel_err": rel, "data_config": {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in dc.items()}})


def side_paddle(a: argparse.Namespace) -> dict:
    """The reference environment: ``init`` (PaddleClas's own initialization), ``export`` (jit.save + probe logits),
    ``predict`` (predict_cls.py's loop on Paddle Inference with MKLDNN)."""
    import importlib
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)
    import paddle
    import paddleclas

    sys.path.insert(0, os.path.dirname(paddleclas.__file__))
    from ppcls.utils import logger

    logger.init_logger()
    paddle.set_device("cpu")
    work = Path(a.work)
    if a.stage in ("init", "export"):
        net = None
        for mod in ("pp_hgnet", "pp_hgnet_v2", "pp_lcnet_v2", "hrnet", "resnet"):
            m = importlib.import_module(f"ppcls.arch.backbone.legendary_models.{mod}")
            if hasattr(m, a.paddle_model):
                net = getattr(m, a.paddle_model)(class_num=len(PHOTOS))
                break
        if net is None:
            raise SystemExit(f"PaddleClas has no {a.paddle_model}")
        if a.stage == "init":
            paddle.save(net.state_dict(), str(work / "init.pdparams"))
            return {"init": str(work / "init.pdparams")}
        net.set_state_dict({k: paddle.to_tensor(v) for k, v in np.load(work / "weights.npz").items()})
        net.eval()
        spec = [paddle.static.InputSpec([None, 3, a.img_size, a.img_size], "float32")]
        paddle.jit.save(net, str(work / "inference" / "inference"), input_spec=spec)
        with paddle.no_grad():
            np.save(work / "probe_paddle.npy", net(paddle.to_tensor(np.load(work / "probe.npy"))).numpy())
        return {"exported": str(work / "inference")}
    return paddle_predict(a)


def paddle_predict(a: argparse.Namespace) -> dict:
    """PaddleClas's deploy/python/predict_cls.py, as it runs: Paddle Inference + MKLDNN, ops one image at a time."""
    import cv2
    from paddle.inference import Config, create_predictor
    from paddleclas.deploy.python.preprocess import CropImage, NormalizeImage, ResizeImage, ToCHWImage

    def make(memory_optim: bool):
        config = Config(str(Path(a.work) / "inference"), "inference")
        config.disable_gpu()
        config.set_mkldnn_cache_capacity(10)
        config.enable_mkldnn()
        if a.paddle_config == "bf16":
            config.enable_mkldnn_bfloat16()
        config.set_cpu_math_library_num_threads(a.threads)
        config.disable_glog_info()
        config.switch_ir_optim(True)
        if memory_optim:
            config.enable_memory_optim()
        config.switch_use_feed_fetch_ops(False)
        return create_predictor(config)

    try:
        predictor, memory_optim = make(True), True
    except ValueError as e:  # paddlepaddle 3.x: "Not find predictor_id 0 and pass_name memory_optimize_pass"
        if "memory_optimize_pass" not in str(e):
            raise
        predictor, memory_optim = make(False), False
    ops = [ResizeImage(resize_short=a.resize_short, interpolation=a.interpolation, backend=a.resize_backend),
           CropImage(size=a.img_size), NormalizeImage(scale=1.0 / 255.0, mean=a.mean, std=a.std, order=""),
           ToCHWImage()]
    inp = predictor.get_input_handle(predictor.get_input_names()[0])
    out = predictor.get_output_handle(predictor.get_output_names()[0])
    files = [(str(p), PHOTOS.index(p.parent.name)) for p in sorted(Path(a.images).rglob("*.jpg"))]
    warm = np.zeros((a.batch_size, 3, a.img_size, a.img_size), np.float32)
    inp.copy_from_cpu(warm)
    predictor.run()
    preds, correct = [], 0
    start = time.perf_counter()
    for i in range(0, len(files), a.batch_size):
        chunk = files[i:i + a.batch_size]
        batch = []
        for path, _ in chunk:
            img = cv2.imread(path)[:, :, ::-1]
            for op in ops:
                img = op(img)
            batch.append(img)
        inp.copy_from_cpu(np.array(batch))
        predictor.run()
        p = out.copy_to_cpu().argmax(1).tolist()
        preds += p
        correct += sum(int(x == y) for x, (_, y) in zip(p, chunk))
    return _timing_result(len(preds), time.perf_counter() - start, preds, correct, {"memory_optim": memory_optim})


# ---------------------------------------------------------------------------------------------- the session

class Session:
    """One benchmark run: the images, the shared weights, and every peer's results."""

    def __init__(self, a: argparse.Namespace, work: Path) -> None:
        self.a, self.work, self.rows, self.notes = a, work, [], []
        self.ref_python = a.ref_python or _reference_python()

    def _sub(self, python: str, *argv: str, timeout: int = 3600) -> dict:
        """Run a side in a fresh process; its last stdout line is its JSON result. Adds the other processes' share
        of the CPU during the run."""
        from benchmarks.harness.machine import cpu_snapshot, other_cpu_share

        env = {k: v for k, v in os.environ.items() if not (python != sys.executable and k.startswith("PYTHON"))}
        if python == sys.executable:
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        before = cpu_snapshot()
        proc = subprocess.run([python, *argv], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
        share = other_cpu_share(before, cpu_snapshot(), os.cpu_count() or 1)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:4])} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["other_cpu_share"] = share["others"] if share else None
        return result

    def _paddle(self, stage: str, *extra: str) -> dict:
        return self._sub(self.ref_python, __file__, "--side", "paddle", "--stage", stage, "--work", str(self.work),
                         "--paddle-model", self.paddle_name, *extra)

    def prepare(self) -> None:
        """Images, then the weights every peer runs (see the module's docstring)."""
        import hgzoo
        from hgzoo.registry import paddle_name

        a = self.a
        self.val = make_images(self.work / "val", a.num_images, seed=0)
        self.fit = make_images(self.work / "fit", a.fit_images, seed=1)
        self.paddle_name = paddle_name(a.model)
        self.cfg = hgzoo.get_pretrained_cfg(a.model)
        if self.ref_python and "paddle" in a.peers:
            self._paddle("init")
            model = hgzoo.create_model(a.model, num_classes=len(PHOTOS), pretrained_file=self.work / "init.pdparams")
        else:
            self.notes.append("PaddleClas: skipped (no reference environment: tests/reference/setup.sh)")
            model = hgzoo.create_model(a.model, num_classes=len(PHOTOS))
        self.model = fit_classifier(model.eval(), self.fit, len(PHOTOS))
        import torch

        self.weights = self.work / "weights.pt"
        torch.save(self.model.state_dict(), self.weights)
        if self.ref_python and "paddle" in a.peers:
            self._export_to_paddle()

    def _export_to_paddle(self) -> None:
        import torch

        from hgzoo.files import load_pdparams

        np.savez(self.work / "weights.npz", **to_paddle(self.model, load_pdparams(self.work / "init.pdparams")))
        probe = torch.randn(2, 3, self.cfg.crop_size, self.cfg.crop_size, generator=torch.Generator().manual_seed(0))
        np.save(self.work / "probe.npy", probe.numpy())
        self._paddle("export", "--img-size", str(self.cfg.crop_size))
        with torch.no_grad():
            ours = self.model(probe).numpy()
        rel = float(np.abs(np.load(self.work / "probe_paddle.npy") - ours).max() / np.abs(ours).max())
        self.notes.append(f"PaddleClas's exported model vs hgzoo, same weights: max rel err {rel:.1e}")
        if rel > 1e-4:
            raise RuntimeError(f"Paddle's model does not compute hgzoo's logits (rel err {rel:.2e}): not the same "
                               "weights, the comparison would mean nothing")

    def run_timm(self, config: str) -> None:
        from benchmarks.harness.subjects import timm_equivalent

        timm_name = timm_equivalent(self.a.model)
        r = self._sub(sys.executable, __file__, "--side", "timm", "--timm-config", config, "--timm-model", timm_name,
                      "--model", self.a.model, "--weights", str(self.weights), "--images", str(self.val),
                      "--batch-size", str(self.a.batch_size), "--workers", str(self.a.timm_workers),
                      "--threads", str(self.a.threads))
        if r["weights_max_rel_err"] > 1e-4:
            raise RuntimeError(f"timm's {timm_name} with hgzoo's weights differs by {r['weights_max_rel_err']:.1e}")
        self.rows.append({"peer": "timm", "config": f"{timm_name} {config}", "precision": config.split("-")[0],
                          **r, "note": f"validate.py loop, {self.a.timm_workers} workers"})

    def run_paddle(self, config: str) -> None:
        c = self.cfg
        r = self._paddle("predict", "--paddle-config", config, "--images", str(self.val), "--batch-size",
                         str(self.a.batch_size), "--threads", str(self.a.threads), "--img-size", str(c.crop_size),
                         "--resize-short", str(c.resize_short), "--interpolation", c.interpolation,
                         "--resize-backend", c.resize_backend, "--mean", *map(str, c.mean), "--std", *map(str, c.std))
        note = "predict_cls.py loop, preprocessing in the main process" + (
            "" if r["memory_optim"] else "; without enable_memory_optim(): with it Paddle 3.3.1's create_predictor "
            "fails ('Not find predictor_id 0 and pass_name memory_optimize_pass')")
        self.rows.append({"peer": "PaddleClas", "config": f"{self.paddle_name} Paddle Inference MKLDNN {config}",
                          "precision": config, **r, "note": note})

    def run_hgzoo(self, config: str) -> None:
        backend, precision = config.split(":")
        out = self.work / f"hgzoo-{backend}-{precision}.json"
        argv = ["validate.py", "--model", self.a.model, "--checkpoint", str(self.weights), "--data-dir", str(self.val),
                "--backend", backend, "--precision", precision, "--batch-size", str(self.a.batch_size),
                "--threads", str(self.a.threads), "--no-progress", "--results-file", str(out)]
        argv += ["--channels-last", "--reparam"] if backend == "eager" else []
        argv += ["--agreement"] if (backend, precision) != ("eager", "fp32") else []
        argv += ["--calibration", str(self.fit), "--min-top1-agreement", "0.5"] if precision == "int8" else []
        self.rows.append(self._validate(argv))

    def _validate(self, argv: list[str]) -> dict:
        from benchmarks.harness.machine import cpu_snapshot, other_cpu_share

        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        before = cpu_snapshot()
        proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=3600)
        share = other_cpu_share(before, cpu_snapshot(), os.cpu_count() or 1)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:12])} failed:\n{proc.stderr[-3000:]}")
        (v,) = json.loads(Path(argv[argv.index("--results-file") + 1]).read_text())
        return {"peer": "hgzoo", "config": f"{self.a.model} {v['backend']} {v['precision']}",
                "precision": v["precision"], "images": v["num_images"], "seconds": v["seconds"],
                "img_per_sec": v["img_per_sec"], "top1": v["top1"], "agreement": v["top1_agreement"],
                "data_wait_share": v["data_wait_share"], "other_cpu_share": share["others"] if share else None,
                "note": f"{v['threads']} threads, {v['workers']} worker(s); {v['compute']}; prepared in "
                        f"{v['prepare_seconds']} s"}

    def agreements(self) -> None:
        add_agreements(self.rows)


def add_agreements(rows: list[dict]) -> None:
    """timm's and PaddleClas's top-1 agreement with their own fp32 run (the first fp32 row of each); the
    per-image predictions are dropped from the rows afterwards."""
    for peer in ("timm", "PaddleClas"):
        mine = [r for r in rows if r["peer"] == peer]
        ref = next((r["preds"] for r in mine if r["precision"] == "fp32" and "preds" in r), None)
        for r in mine:
            if ref is not None and "preds" in r and len(r["preds"]) == len(ref):
                r["agreement"] = round(100 * float(np.mean(np.equal(r["preds"], ref))), 3)
    for r in rows:
        r.pop("preds", None)


def _reference_python() -> str | None:
    for c in (os.environ.get("HGZOO_REF_PYTHON"), str(ROOT / ".venv-ref" / "bin" / "python")):
        if c and Path(c).is_file():
            return c
    return None


# ---------------------------------------------------------------------------------------------- the report

def _best(rows: list[dict], peer: str, precision: str | None = None) -> dict | None:
    pool = [r for r in rows if r["peer"] == peer and (precision is None or r["precision"] == precision)]
    return max(pool, key=lambda r: r["img_per_sec"], default=None)


def summarize(rows: list[dict]) -> list[dict]:
    """The goals' ratios, from the rows of this session: hgzoo's best fp32 path over timm's best fp32 flags
    (goal 1.5), hgzoo's best path at any precision over timm's best at any (goal 3), and at each precision
    hgzoo's best over PaddleClas's predictor (goal 1.0)."""
    out = []
    pairs = [("fp32", "timm", "fp32", 1.5), (None, "timm", None, 3.0)]
    pairs += [(p, "PaddleClas", p, 1.0) for p in ("fp32", "bf16", "int8")]
    for mine, peer, theirs, goal in pairs:
        a, b = _best(rows, "hgzoo", mine), _best(rows, peer, theirs)
        if a is None or b is None:
            continue
        ratio = a["img_per_sec"] / b["img_per_sec"]
        out.append({"comparison": f"hgzoo best {mine or 'any precision'} ÷ {peer} best {theirs or 'any precision'}",
                    "hgzoo": a["config"], "peer": b["config"], "ratio": round(ratio, 2), "goal": goal,
                    "met": ratio >= goal, "hgzoo_agreement": a.get("agreement")})
    return out


def _fmt(v, spec: str = "") -> str:
    return "–" if v is None else format(v, spec)


def markdown(rows: list[dict], summary: list[dict], env: dict, notes: list[str]) -> str:
    lines = [f"End-to-end validation, {env['images']} JPEGs (400-640 px), batch {env['batch_size']}, "
             f"{env['threads']} inference threads, {env['cpu']} ({env['cores']} cores); load average at start "
             f"{env['load_start']}, at end {env['load_end']}", "",
             "| peer | configuration | images/s | wall (s) | top-1 | top-1 agreement with its fp32 | "
             "waiting for data | other processes' CPU | notes |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['peer']} | {r['config']} | {r['img_per_sec']:.1f} | {r['seconds']:.1f} | "
                     f"{r['top1']:.1f}% | {_fmt(r.get('agreement'), '.2f')}{'%' if r.get('agreement') else ''} | "
                     f"{_fmt(r.get('data_wait_share') and 100 * r['data_wait_share'], '.1f')}"
                     f"{'%' if r.get('data_wait_share') else ''} | "
                     f"{_fmt(r.get('other_cpu_share') and 100 * r['other_cpu_share'], '.0f')}"
                     f"{'%' if r.get('other_cpu_share') else ''} | {r.get('note', '')} |")
    lines += ["", "| comparison | hgzoo | peer | ratio | goal |", "|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['comparison']} | {s['hgzoo']} | {s['peer']} | **{s['ratio']:.2f}×** | "
                     f"≥ {s['goal']}× ({'met' if s['met'] else 'missed'}) |")
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _environment(a: argparse.Namespace) -> dict:
    from benchmarks.harness.machine import _cpu_name

    return {"images": a.num_images, "batch_size": a.batch_size, "threads": a.threads, "cpu": _cpu_name(),
            "cores": os.cpu_count(), "load_start": round(os.getloadavg()[0], 2), "model": a.model}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pphgnet_small")
    ap.add_argument("--num-images", type=int, default=256, help="JPEGs validated (default 256)")
    ap.add_argument("--fit-images", type=int, default=112, help="JPEGs for the classifier and int8 calibration")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="inference threads, every peer")
    ap.add_argument("--timm-workers", type=int, default=2, help="timm's loader workers (the issue measured 2)")
    ap.add_argument("--hgzoo", default=",".join(HGZOO_CONFIGS), help="backend:precision list")
    ap.add_argument("--timm", default=",".join(TIMM_CONFIGS), help="timm flag sets")
    ap.add_argument("--paddle", default="fp32,bf16", help="PaddleClas predictor precisions")
    ap.add_argument("--peers", default="timm,paddle,hgzoo")
    ap.add_argument("--quick", action="store_true", help="a few images, one configuration per peer (for tests)")
    ap.add_argument("--results-file", help="write the rows and ratios as JSON (the table is printed)")
    ap.add_argument("--ref-python", help="the PaddleClas reference environment's python (default: .venv-ref)")
    ap.add_argument("--work", help="keep the images, weights and exports in this folder")
    hidden = argparse.SUPPRESS  # the sides, run in subprocesses
    for flag in ("--side", "--stage", "--timm-config", "--timm-model", "--paddle-config", "--paddle-model",
                 "--weights", "--images", "--interpolation", "--resize-backend"):
        ap.add_argument(flag, help=hidden)
    ap.add_argument("--workers", type=int, default=2, help=hidden)
    ap.add_argument("--img-size", type=int, default=224, help=hidden)
    ap.add_argument("--resize-short", type=int, help=hidden)
    ap.add_argument("--mean", type=float, nargs=3, help=hidden)
    ap.add_argument("--std", type=float, nargs=3, help=hidden)
    a = ap.parse_args(argv)
    if a.quick:
        a.num_images, a.fit_images, a.batch_size = QUICK["num_images"], QUICK["fit_images"], QUICK["batch_size"]
        a.hgzoo, a.timm, a.paddle = (",".join(QUICK[k]) for k in ("hgzoo", "timm", "paddle"))
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.side:
        result = side_timm(a) if a.side == "timm" else side_paddle(a)
        print(json.dumps(result))
        return 0
    env = _environment(a)
    with tempfile.TemporaryDirectory(prefix="bench_validate.") as tmp:
        work = Path(a.work) if a.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        s = Session(a, work)
        s.prepare()
        c = s.cfg
        draft = draft_deviation(s.val, c.resize_short, c.interpolation, c.resize_backend)
        s.notes.append(f"decoding at half size (PIL draft, libjpeg DCT scaling) moves the preprocessed pixels by up to "
                       f"{draft.get('max_levels', '–')} levels (mean {draft.get('mean_levels', '–')}) on "
                       f"{draft['images']} images; transforms.py's tolerance is about 2 levels: not used")
        for peer, configs, fn in (("timm", a.timm, s.run_timm), ("paddle", a.paddle, s.run_paddle),
                                  ("hgzoo", a.hgzoo, s.run_hgzoo)):
            if peer not in a.peers or (peer == "paddle" and not s.ref_python):
                continue
            for config in filter(None, configs.split(",")):
                print(f"running {peer} {config} ...", file=sys.stderr, flush=True)
                try:
                    fn(config)
                except (RuntimeError, subprocess.TimeoutExpired) as e:  # one configuration failing keeps the others
                    s.notes.append(f"{peer} {config}: failed: {str(e).strip().splitlines()[-1][:300]}")
                    print(f"error: {peer} {config}: {e}", file=sys.stderr, flush=True)
        s.agreements()
    env["load_end"] = round(os.getloadavg()[0], 2)
    summary = summarize(s.rows)
    print(markdown(s.rows, summary, env, s.notes))
    if a.results_file:
        from hgzoo.files import atomic_write

        atomic_write(a.results_file, json.dumps({"environment": env, "rows": s.rows, "summary": summary,
                                                 "notes": s.notes}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
