"""The benchmark loop: models × batch sizes × precisions × backends, timed interleaved, checked against eager fp32."""
from __future__ import annotations

import copy
import gc
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

import hgzoo
from hgzoo.deploy import BACKENDS, MIN_TOP1_AGREEMENT, PRECISIONS, Backend, BackendError, Runner, agreement
from hgzoo.deploy.backends import DTYPES, get_backend, with_channels_last
from hgzoo.registry import UnknownModelError, model_entrypoint, resolve_model_name

from . import gpu  # noqa: F401  (registers the GPU backends: cuda, cuda-compile, tensorrt)
from .backends import int8_images, is_oom, prepare_subject
from .machine import cpu_snapshot, environment, other_cpu_share
from .subjects import (
    BenchmarkInputError,
    Subject,
    activation_bytes_per_image,
    build_hgzoo,
    build_timm,
    flops_at,
    timm_equivalent,
    total_stride,
)
from .timing import Budget, Timing, TimingConfig, conv_roofline, time_interleaved

__all__ = [
    "BenchmarkConfig", "Measurement", "ModelInfo", "BenchmarkReport", "run_benchmark", "resolve_models",
    "check_config", "check_output", "fixed_input", "DEFAULT_TOLERANCES", "COMPARE_IMPLS", "INT8_MIN_TOP1",
]

# Largest relative error (max |ours - eager fp32| / max |eager fp32|) that still counts as the same result.
# fp32: the parity bar. bf16 (8-bit mantissa) drifts by 0.1-0.35 of the largest logit through a deep
# random-weight network (flat logits), on every backend and in timm alike, so its bar only catches broken
# results; the figure is always reported, and real low-precision accuracy needs trained weights and images.
DEFAULT_TOLERANCES = {"fp32": 1e-4, "fp16": 0.1, "bf16": 0.5}
# int8 is not judged on the timing batch (random noise, which calibration never saw) but on real photos
# (backends.int8_images), by top-1 agreement with eager fp32; and only with pretrained weights: a random-weight
# network's near-flat logits make any rounding flip its top-1, whatever the quality of the export.
INT8_MIN_TOP1 = MIN_TOP1_AGREEMENT["int8"]
# "timm": timm's port, deployed after timm's own reparameterize_model (the best path a timm user has);
# "timm-plain": the same port exported as timm.create_model returns it (branches and BN unfused).
COMPARE_IMPLS = ("timm", "timm-plain")


@dataclass
class BenchmarkConfig:
    models: list[str]
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    img_size: int = 224
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    backends: list[str] = field(default_factory=lambda: ["eager", "reparam", "onnxruntime", "openvino"])
    compare: list[str] = field(default_factory=list)  # "timm"
    compare_backends: list[str] | None = None  # backends for the peer models; None: eager only
    threads: int | None = None  # None: os.cpu_count()
    pretrained: bool = False
    seed: int = 0
    timing: TimingConfig = field(default_factory=TimingConfig)
    roofline: bool = True
    channels_last: bool = False  # timm's --channels-last: the torch backends run channels-last (no probe)
    tolerances: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    fp64_check: bool = True  # also compare against an fp64 run of the first image (see check_output)
    memory_fraction: float = 0.5  # of the available memory a batch may use (several backends coexist)
    time_budget_s: float | None = None  # the whole run (see timing.Budget); None: no limit
    prepare_budget_s: dict[str, float] = field(default_factory=dict)  # backend → seconds per model (timing.Budget)
    log: Callable[[str], None] | None = None  # progress messages (default: stderr)
    on_progress: Callable[["BenchmarkReport"], None] | None = None  # called after each group (partial results)


@dataclass
class Measurement:
    """One cell: a model (hgzoo or its peer) on one backend at one precision and batch size."""

    model: str  # the hgzoo model (the table row)
    impl: str  # "hgzoo" or "timm"
    impl_model: str
    backend: str
    precision: str
    batch_size: int  # asked for
    img_size: int
    status: str  # "ok", "mismatch" (ran, but the output disagrees with eager fp32), "skipped", "error"
    reason: str = ""
    ran_batch_size: int | None = None  # smaller than batch_size after running out of memory
    median_ms: float | None = None
    p90_ms: float | None = None
    iters: int | None = None
    stable: bool | None = None
    ci_pct: float | None = None  # half-width of the median's 95% confidence interval, % of the median
    round_medians_ms: list[float | None] | None = None  # block medians, one per interleaved round
    max_abs_err: float | None = None
    rel_err: float | None = None
    tolerance: float | None = None
    top1_agreement: float | None = None
    fp64_err: float | None = None  # relative error of the first image's logits against the exact (fp64) ones
    eager_fp64_err: float | None = None  # the same for eager fp32: the rounding floor
    gflops_per_image: float | None = None
    achieved_gflops_s: float | None = None
    roofline_gflops_s: float | None = None
    roofline_pct: float | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "mismatch") and self.median_ms is not None

    @property
    def throughput(self) -> float | None:
        if self.median_ms is None:
            return None
        return (self.ran_batch_size or self.batch_size) / self.median_ms * 1e3


@dataclass
class ModelInfo:
    name: str
    family: str
    params: int | None = None
    gflops: float | None = None  # per image at the benchmark's size
    top1: float | None = None
    top5: float | None = None
    top1_tag: str | None = None
    stride: int | None = None
    peer: dict[str, dict] = field(default_factory=dict)  # impl → {"model", "params", "gflops", "reason"}
    error: str = ""


@dataclass
class BenchmarkReport:
    config: BenchmarkConfig
    env: dict
    models: list[ModelInfo]
    measurements: list[Measurement]
    roofline: dict[str, dict]  # precision → conv_roofline()
    seconds: float = 0.0
    complete: bool = True  # False while a run is going on (on_progress's partial results) or if it was stopped

    def find(self, model: str, impl: str, backend: str, precision: str, batch: int) -> Measurement | None:
        for m in self.measurements:
            if (m.model, m.impl, m.backend, m.precision, m.batch_size) == (model, impl, backend, precision, batch):
                return m
        return None

    def to_dict(self) -> dict:
        cfg = asdict(self.config) if hasattr(self.config, "__dataclass_fields__") else {}
        cfg.pop("log", None)
        cfg.pop("on_progress", None)
        return {"config": cfg, "env": self.env, "roofline": self.roofline, "seconds": self.seconds,
                "complete": self.complete,
                "models": [asdict(m) for m in self.models], "results": [asdict(m) for m in self.measurements]}


def check_output(out: np.ndarray, ref: np.ndarray, tolerance: float, ref64: np.ndarray | None = None,
                 floor: float | None = None) -> dict:
    """:func:`hgzoo.deploy.agreement` of a backend's logits with eager fp32's on the same input (max abs error,
    relative error, top-1 agreement), and whether they ``agree``: relative error within ``tolerance``.

    fp32 itself rounds: in a deep network eager fp32 can sit ~1e-4 away from the exact (fp64) result,
    and a backend that rounds differently (a fused conv+BN, another summation order) lands as far on
    the other side. So with ``ref64`` (the fp64 logits of the first image) and ``floor`` (eager fp32's
    own relative error against it), a result beyond ``tolerance`` of eager fp32 still agrees when it is
    within twice eager fp32's own error of the exact result; ``fp64_err`` is reported either way.
    """
    stats = agreement(out, ref)
    if not stats["finite"]:
        return {**stats, "agrees": False, "fp64_err": None}
    fp64_err = None
    if ref64 is not None:
        first = np.asarray(out).reshape(ref.shape)[:1].reshape(1, -1)
        fp64_err = agreement(first, np.asarray(ref64).reshape(1, -1))["max_rel_err"]
    agrees = stats["max_rel_err"] <= tolerance or (fp64_err is not None and floor is not None and fp64_err <= 2 * floor)
    return {**stats, "agrees": agrees, "fp64_err": fp64_err}


def fixed_input(batch: int, img_size: int, seed: int) -> torch.Tensor:
    """A random batch whose i-th image is the same whatever the batch size (one seed per image)."""
    return torch.cat([torch.randn(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(seed * 7919 + i))
                      for i in range(batch)])


def _check_int8(cfg: BenchmarkConfig, subject: Subject, runner: Runner, batch: int) -> dict:
    """An int8 runner against eager fp32 on real photos (the calibration images' set): :func:`agreement`, and
    whether it ``agrees``: finite outputs, and with pretrained weights top-1 agreement >= :data:`INT8_MIN_TOP1`."""
    images = int8_images(cfg.img_size)
    key = f"photo-logits@{cfg.img_size}"
    if key not in subject.cache:
        with torch.inference_mode():
            subject.cache[key] = torch.cat([subject.model(images[i:i + 16]) for i in range(0, len(images), 16)]).numpy()
    out = runner.logits(images, batch).numpy()
    stats = agreement(out, subject.cache[key])
    agrees = stats["finite"] and (not cfg.pretrained or stats["top1_agreement"] >= INT8_MIN_TOP1)
    return {**stats, "agrees": agrees, "fp64_err": None, "n": len(images)}


def _fp64_reference(subject: Subject, x0: torch.Tensor) -> np.ndarray:
    """The exact (fp64) logits of the first image, computed once per subject and size."""
    key = f"fp64-ref@{x0.shape[-1]}"
    if key not in subject.cache:
        m64 = copy.deepcopy(subject.model).double()
        with torch.inference_mode():
            subject.cache[key] = m64(x0.double()).numpy()
        del m64
    return subject.cache[key]


def resolve_models(specs: list[str]) -> list[str]:
    """Model names and wildcards ('pphgnet*') → registered names; unknown ones raise a clear error."""
    names: list[str] = []
    for spec in specs:
        if any(c in spec for c in "*?["):
            found = hgzoo.list_models(spec)
            if not found:
                raise BenchmarkInputError(f"no model matches {spec!r}; see `python -m hgzoo models`")
        else:
            try:
                arch, _tag = resolve_model_name(spec)
            except UnknownModelError as e:
                raise BenchmarkInputError(str(e)) from None
            found = [arch]
        names += [n for n in found if n not in names]
    if not names:
        raise BenchmarkInputError("no model to benchmark")
    return names


def _family(name: str) -> str:
    """The series a model belongs to in a plot: pphgnet, pphgnetv2, pplcnetv2, resnet_vd, hrnet, se_hrnet."""
    for pattern, family in ((r"(pphgnetv2|pphgnet|pplcnetv2)_\w+", r"\1"), (r"resnet\d+_vd", "resnet_vd"),
                            (r"(se_)?hrnet_w\d+_c", r"\1hrnet")):
        if re.fullmatch(pattern, name):
            return re.sub(pattern, family, name)
    return model_entrypoint(name).__module__.rsplit(".", 1)[-1]


def _meta_stride(name: str) -> int | None:
    """The total stride, from a model built on the meta device (no memory, no compute)."""
    try:
        with torch.device("meta"):
            return total_stride(hgzoo.create_model(name))
    except Exception:  # noqa: BLE001 - the real build will say what is wrong
        return None


def _backends(names: list[str], channels_last: bool = False) -> list[Backend]:
    """The backends called ``names`` (:data:`hgzoo.deploy.BACKENDS`), each once; a :class:`BenchmarkInputError`
    naming close matches for an unknown one. ``channels_last``: each forced to that memory format
    (:func:`~hgzoo.deploy.backends.with_channels_last`); a runtime, which has no torch layout, is refused."""
    try:
        found = [get_backend(b) for b in dict.fromkeys(names)]
    except BackendError as e:
        raise BenchmarkInputError(str(e)) from None
    if not channels_last:
        return found
    forced = {b.name: with_channels_last(b) for b in found}
    runtimes = [name for name, b in forced.items() if b is None]
    if runtimes:
        raise BenchmarkInputError("--channels-last is torch's memory format; it does not apply to "
                                  f"{', '.join(runtimes)} (a runtime takes an NCHW array and picks its own layout): "
                                  "leave the runtimes out of --backend / --compare-backends")
    return list(forced.values())


def check_config(cfg: BenchmarkConfig) -> tuple[list[str], list[Backend], list[Backend]]:
    """Check everything the user typed before spending any time; raise :class:`BenchmarkInputError`."""
    models = resolve_models(cfg.models)
    backends = _backends(cfg.backends, cfg.channels_last)
    if not backends:
        raise BenchmarkInputError(f"no backend given; backends: {', '.join(BACKENDS)}")
    peer_backends = _backends(cfg.compare_backends or ["eager"], cfg.channels_last)
    for p in cfg.precisions:
        if p not in PRECISIONS:
            raise BenchmarkInputError(f"unknown precision {p!r}; precisions: {', '.join(PRECISIONS)}")
    for c in cfg.compare:
        if c not in COMPARE_IMPLS:
            raise BenchmarkInputError(f"cannot compare with {c!r}; supported: {', '.join(COMPARE_IMPLS)}")
    _backends(list(cfg.prepare_budget_s))
    for name, seconds in cfg.prepare_budget_s.items():
        if not seconds > 0:
            raise BenchmarkInputError(f"the preparation budget of {name} must be positive seconds, got {seconds}")
    if cfg.time_budget_s is not None and not cfg.time_budget_s > 0:
        raise BenchmarkInputError(f"the time budget must be positive seconds, got {cfg.time_budget_s}")
    if not cfg.batch_sizes or any(b < 1 for b in cfg.batch_sizes):
        raise BenchmarkInputError(f"batch sizes must be positive integers, got {cfg.batch_sizes}")
    for name in models:
        stride = _meta_stride(name) or 32
        if cfg.img_size < stride:
            raise BenchmarkInputError(
                f"image size {cfg.img_size} is smaller than {name}'s total stride {stride}: its last stage would "
                f"have no pixels. Use --img-size {stride} or more (the models are trained at 224).")
    return models, backends, peer_backends


def _read_kib(path: str, key: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - used, 0)


def _mem_available() -> int | None:
    """The memory this process may still allocate: the least of the machine's available memory, the room under
    its address-space limit (``ulimit -v``) and under its cgroup's limit."""
    import resource

    room = [_read_kib("/proc/meminfo", "MemAvailable:"), _cgroup_room()]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    size = _read_kib("/proc/self/status", "VmSize:")
    if soft != resource.RLIM_INFINITY and size is not None:
        room.append(max(soft - size, 0))
    known = [r for r in room if r is not None]
    return min(known) if known else None


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_benchmark(cfg: BenchmarkConfig) -> BenchmarkReport:
    """Run the benchmark described by ``cfg``. Bad input raises :class:`BenchmarkInputError` before any
    work; a backend that cannot run is reported (skipped/error), never raised."""
    log = cfg.log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    models, backends, peer_backends = check_config(cfg)
    threads = cfg.threads or os.cpu_count() or 1
    cfg.threads = threads
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    try:
        return _run(cfg, models, backends, peer_backends, threads, log)
    finally:  # leave the process as it was
        torch.set_num_threads(saved_threads)
        torch.set_flush_denormal(False)


def _run(cfg, models, backends, peer_backends, threads, log) -> BenchmarkReport:
    t_start = time.perf_counter()
    roofline: dict[str, dict] = {}
    if cfg.roofline:
        for p in cfg.precisions:
            if p in DTYPES and BACKENDS["eager"].precision_skip(p) is None:
                roofline[p] = conv_roofline(p)
                log(f"roofline {p}: {roofline[p]['gflops_per_s']:.0f} GFLOP/s ({roofline[p]['what']})")

    report = BenchmarkReport(cfg, environment(threads), [], [], roofline, complete=False)
    budget = Budget(cfg.time_budget_s, cfg.prepare_budget_s, len(models))
    for index, name in enumerate(models):
        info = ModelInfo(name, _family(name))
        report.models.append(info)
        budget.next_model(index)
        try:
            _bench_model(cfg, report, info, backends, peer_backends, budget, log)
        except BenchmarkInputError:
            raise
        except Exception as e:  # noqa: BLE001 - one broken model must not end the run
            info.error = _short(e)
            log(f"{name}: error: {info.error}")
        gc.collect()
    report.seconds = time.perf_counter() - t_start
    try:
        report.env["load_avg_end"] = round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        pass
    report.env["cpu_other_share"] = other_cpu_share(report.env.get("cpu_start"), cpu_snapshot(), os.cpu_count() or 1)
    report.complete = True
    return report


def _bench_model(cfg, report, info, backends, peer_backends, budget, log) -> None:
    subjects: list[Subject] = []
    try:
        hg = build_hgzoo(info.name, pretrained=cfg.pretrained, img_size=cfg.img_size, seed=cfg.seed)
        subjects.append(hg)
        info.params = hg.params
        info.stride = total_stride(hg.model)
        pcfg = hgzoo.get_pretrained_cfg(info.name)
        if pcfg is not None:
            info.top1, info.top5, info.top1_tag = pcfg.top1, pcfg.top5, pcfg.name
        avail = _mem_available()
        per_image = activation_bytes_per_image(hg.model, cfg.img_size)  # estimated before anything is allocated
        if avail is not None and per_image > avail * cfg.memory_fraction:
            raise BenchmarkInputError(
                f"{info.name}: one {cfg.img_size}x{cfg.img_size} image needs ~{per_image / 2**30:.1f} GiB of working "
                f"memory (estimated); {avail / 2**30:.1f} GiB is available, and a batch may use "
                f"{cfg.memory_fraction:.0%} of it. Use a smaller --img-size")
        info.gflops = flops_at(hg.model, cfg.img_size) / 1e9
        for impl in cfg.compare:
            peer = timm_equivalent(info.name)
            if peer is None:
                info.peer[impl] = {"reason": f"timm has no equivalent of {info.name}"}
                continue
            try:
                sub = build_timm(info.name, peer, pretrained=cfg.pretrained, img_size=cfg.img_size, seed=cfg.seed,
                                 reparameterize=(impl == "timm"))
            except ImportError:
                info.peer[impl] = {"model": peer, "reason": "timm is not installed (pip install timm)"}
                continue
            except Exception as e:  # noqa: BLE001
                info.peer[impl] = {"model": peer, "reason": _short(e)}
                continue
            info.peer[impl] = {"model": peer, "params": sub.params,
                               "gflops": flops_at(sub.model, cfg.img_size) / 1e9}
            subjects.append(sub)
        log(f"{info.name}: {info.params / 1e6:.2f} M params, {info.gflops:.2f} GFLOPs at {cfg.img_size}"
            + "".join(f"; {impl}: {d.get('model', '-')}" for impl, d in info.peer.items()))
        for batch in cfg.batch_sizes:
            for precision in cfg.precisions:
                _bench_group(cfg, report, info, subjects, backends, peer_backends, batch, precision, budget, log)
                if cfg.on_progress is not None:
                    report.seconds = time.perf_counter() - budget.start
                    cfg.on_progress(report)
    finally:
        for s in subjects:
            s.release()


def _fit_batch(cfg, subject: Subject, batch: int, log) -> tuple[int, str]:
    """The batch size that fits in memory (halved from ``batch`` as needed) and a note if it shrank."""
    avail = _mem_available()
    if avail is None:
        return batch, ""
    per_image = activation_bytes_per_image(subject.model, cfg.img_size)
    budget = avail * cfg.memory_fraction
    fit = batch
    while fit > 1 and fit * per_image > budget:
        fit //= 2
    if fit * per_image > budget:
        raise MemoryError(f"one {cfg.img_size}x{cfg.img_size} image needs ~{per_image / 2**30:.1f} GiB of working "
                          f"memory, more than the {budget / 2**30:.1f} GiB this benchmark allows itself")
    if fit < batch:
        note = (f"batch {batch} would need ~{batch * per_image / 2**30:.1f} GiB (available: {avail / 2**30:.1f} GiB): "
                f"ran batch {fit} instead")
        log(f"{subject.name}: {note}")
        return fit, note
    return batch, ""


def _bench_group(cfg, report, info, subjects, backends, peer_backends, batch, precision, budget, log) -> None:
    """All backends of all subjects for one (model, batch, precision): prepared, checked, timed together."""
    label = f"{info.name} bs{batch} {precision}"

    def all_cells(status: str, reason: str) -> None:
        for s in subjects:
            for b in (backends if s.impl == "hgzoo" else peer_backends):
                report.measurements.append(Measurement(info.name, s.impl, s.arch, b.name, precision, batch,
                                                       cfg.img_size, status, reason))

    spent = budget.run_spent()
    if spent:
        all_cells("skipped", spent)
        log(f"{label}: {spent}")
        return
    try:
        ran, note = _fit_batch(cfg, subjects[0], batch, log)
    except MemoryError as e:
        all_cells("error", f"out of memory: {e}")
        log(f"{label}: out of memory: {e}")
        return
    notes = [note] if note else []
    while True:
        try:
            results = _run_group(cfg, info, subjects, backends, peer_backends, batch, ran, precision,
                                 report.roofline, budget, log)
            break
        except _GroupOOM as e:
            if ran == 1:
                results = [Measurement(info.name, s.impl, s.arch, b.name, precision, batch, cfg.img_size, "error",
                                       f"out of memory even at batch 1: {e}")
                           for s in subjects for b in (backends if s.impl == "hgzoo" else peer_backends)]
                break
            notes.append(f"out of memory at batch {ran} ({e}); ran batch {ran // 2} instead")
            log(f"{label}: {notes[-1]}")
            ran //= 2
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # give the freed blocks back before the smaller batch
    for m in results:
        if ran != batch and m.status != "skipped":
            m.note = "; ".join(notes + ([m.note] if m.note else []))
    report.measurements.extend(results)


class _GroupOOM(Exception):
    pass


def _references(cfg: BenchmarkConfig, s: Subject, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None,
                                                                             float | None]:
    """Eager fp32 logits of ``x``; with ``cfg.fp64_check`` the exact (fp64) logits of its first image and eager
    fp32's own relative error against them (the rounding floor, see :func:`check_output`). Computed when a backend
    first needs them, once per input shape (the input of a shape is the same in every group: :func:`fixed_input`)."""
    key = f"references@{tuple(x.shape)}"
    if key not in s.cache:
        s.cache[key] = _compute_references(cfg, s, x)
    return s.cache[key]


def _compute_references(cfg: BenchmarkConfig, s: Subject, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None,
                                                                                     float | None]:
    with torch.inference_mode():
        try:
            ref = s.model(x).float().numpy()
        except Exception as e:  # noqa: BLE001
            if is_oom(e):
                raise _GroupOOM(_short(e, 120)) from None
            raise RuntimeError(f"{s.label} cannot run a {'x'.join(map(str, x.shape))} input: {_short(e)}") from None
    if not cfg.fp64_check:
        return ref, None, None
    ref64 = _fp64_reference(s, x[:1])
    return ref, ref64, agreement(ref[:1], ref64)["max_rel_err"]


def _record_check(cfg: BenchmarkConfig, m: Measurement, check: dict, floor: float | None) -> None:
    """Fill ``m`` with a backend's output check (:func:`check_output` or, for int8, :func:`_check_int8`)."""
    m.max_abs_err, m.rel_err, m.top1_agreement, m.fp64_err = (
        check["max_abs_err"], check["max_rel_err"], check["top1_agreement"], check["fp64_err"])
    m.eager_fp64_err = floor
    if m.precision == "int8":
        m.tolerance, m.eager_fp64_err = None, None
        judged = f"judged: top-1 agreement >= {INT8_MIN_TOP1:.0%}" if cfg.pretrained else "not judged (random weights)"
        m.note += f"; checked against eager fp32 on {check['n']} real photos, {judged}"
        if not check["agrees"]:
            m.status = "mismatch"
            m.reason = (f"top-1 agreement with eager fp32 on {check['n']} real photos {m.top1_agreement:.0%} < "
                        f"{INT8_MIN_TOP1:.0%}" if check["finite"] else "non-finite outputs")
    elif not check["agrees"]:
        m.status = "mismatch"
        m.reason = f"output differs from eager fp32: relative error {m.rel_err:.2e} > {m.tolerance:.0e}"
        if m.fp64_err is not None:
            m.reason += f", and {m.fp64_err:.1e} from the exact fp64 result (eager fp32: {floor:.1e})"


def _prepare(cfg: BenchmarkConfig, m: Measurement, s: Subject, b: Backend, x: torch.Tensor, budget: Budget,
             log: Callable[[str], None]) -> Runner | None:
    """Backend ``b`` ready to run subject ``s`` on ``x``, its output checked against eager fp32 (from
    :func:`_references`) and recorded in ``m``; None when it is skipped or fails (``m`` says why). The time it
    takes is charged to ``b``'s preparation budget."""
    reason = b.skip_reason(m.precision) or budget.backend_spent(b.name)
    if reason:
        m.status, m.reason, m.ran_batch_size, m.tolerance = "skipped", reason, None, None
        if reason.startswith("not measured"):
            log(f"{m.model} bs{m.batch_size} {m.precision} {s.label} {b.name}: {reason}")
        return None
    # outside the try: a model that cannot run the input is the model's error, not the backend's
    ref, ref64, floor = _references(cfg, s, x) if m.precision != "int8" else (None, None, None)
    t = time.perf_counter()
    try:
        runner = prepare_subject(b, s, x, m.precision, cfg.threads)
        if m.precision == "int8":
            check = _check_int8(cfg, s, runner, len(x))
        else:
            check = check_output(runner.output().numpy(), ref, m.tolerance, ref64, floor)
    except Exception as e:  # noqa: BLE001 - reported in the table
        if is_oom(e):
            raise _GroupOOM(_short(e, 120)) from None
        m.status, m.reason = "error", _short(e)
        log(f"{m.model} bs{m.batch_size} {m.precision} {s.label} {b.name}: error: {m.reason}")
        return None
    finally:
        budget.charge(b.name, time.perf_counter() - t)
    m.note = runner.note
    if cfg.channels_last and "channels" not in m.note:
        m.note = "; ".join(n for n in ("channels-last (asked for)", m.note) if n)
    _record_check(cfg, m, check, floor)
    log(f"{m.model} bs{len(x)} {m.precision} {s.label} {b.name}: ready in {time.perf_counter() - t:.1f} s, "
        f"rel err {m.rel_err:.1e}" + (f" ({runner.note})" if runner.note else ""))
    return runner


def _run_group(cfg, info, subjects, backends, peer_backends, batch, ran, precision, roofline, budget,
               log) -> list[Measurement]:
    """Every backend of every subject on one input batch of ``ran`` images: prepared and checked one by one,
    then timed together (interleaved); then the backends release what they kept. Running out of memory raises
    :class:`_GroupOOM`."""
    x = fixed_input(ran, cfg.img_size, cfg.seed)
    tol = cfg.tolerances.get(precision, 1e-4)
    results: dict[tuple[str, str], Measurement] = {}
    runners: dict[tuple[str, str], Runner] = {}
    try:
        for s in subjects:
            for b in (backends if s.impl == "hgzoo" else peer_backends):
                m = Measurement(info.name, s.impl, s.arch, b.name, precision, batch, cfg.img_size, "ok",
                                ran_batch_size=ran, tolerance=tol)
                results[(s.impl, b.name)] = m
                runner = _prepare(cfg, m, s, b, x, budget, log)
                if runner is not None:
                    runners[(s.impl, b.name)] = runner
        try:
            timings = time_interleaved(runners, cfg.timing)
        except Exception as e:  # noqa: BLE001
            if is_oom(e):
                raise _GroupOOM(_short(e, 120)) from None
            raise
    finally:
        runners.clear()
        for b in dict.fromkeys(backends + peer_backends):
            b.release()
    flops = {s.impl: (info.gflops if s.impl == "hgzoo" else info.peer.get(s.impl, {}).get("gflops")) for s in subjects}
    for (impl, backend), timing in timings.items():
        m = results[(impl, backend)]
        rate = roofline.get(precision, {}).get("gflops_per_s") if BACKENDS[backend].device == "cpu" else None
        _fill_timing(m, timing, flops.get(impl), rate)
        log(f"{info.name} bs{ran} {precision} {impl}:{backend}: median {m.median_ms:.2f} ms, p90 {m.p90_ms:.2f} ms, "
            f"{m.iters} iters, ±{m.ci_pct or float('inf'):.1f}%{'' if m.stable else ' (not stable)'}")
    return list(results.values())


def _fill_timing(m: Measurement, timing: Timing, gflops: float | None, roofline_rate: float | None) -> None:
    m.median_ms, m.p90_ms, m.iters, m.stable = timing.median_ms, timing.p90_ms, timing.iters, timing.stable
    m.ci_pct = 100 * timing.ci_rel if np.isfinite(timing.ci_rel) else None
    m.round_medians_ms = [None if r is None else r * 1e3 for r in timing.round_medians_s]
    if gflops:
        m.gflops_per_image = gflops
        m.achieved_gflops_s = gflops * (m.ran_batch_size or m.batch_size) / (m.median_ms / 1e3)
        if roofline_rate:
            m.roofline_gflops_s = roofline_rate
            m.roofline_pct = 100 * m.achieved_gflops_s / roofline_rate
