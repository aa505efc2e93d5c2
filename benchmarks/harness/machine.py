"""The machine a measurement ran on: CPU, accelerators, library versions, and how busy the CPUs were.

A leaf of the tools: the latency report and the drift study both describe their machine with it."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess
import time

import torch

from hgzoo.deploy.runtimes import cpu_flags

__all__ = ["environment", "cpu_snapshot", "other_cpu_share", "gpu_details"]

_LIBS = ("torch", "hgzoo", "timm", "numpy", "onnx", "onnxscript", "onnxruntime", "openvino", "tensorrt",
         "torch_tensorrt")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads: int) -> dict:
    """Hardware, library versions and settings, for the table header and the JSON."""
    flags = cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "avx512_vnni")
           if f in flags]
    versions = {}
    for lib in _LIBS:
        try:
            versions[lib] = importlib.metadata.version(lib.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            pass
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_isa": isa,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": threads,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "gpu_details": gpu_details(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "load_avg_start": _load_avg(),
        "cpu_start": cpu_snapshot(),
    }
    return env


def nvidia_driver() -> str | None:
    """The NVIDIA driver's version (nvidia-smi, else /proc/driver/nvidia/version), or None."""
    return _driver_from_smi() or _driver_from_proc()


def _driver_from_smi() -> str | None:
    """nvidia-smi's answer; None where it is missing, fails or times out (the /proc file is asked next)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.split()[0] if out.returncode == 0 and out.stdout.strip() else None


def _driver_from_proc() -> str | None:
    try:
        with open("/proc/driver/nvidia/version") as f:
            words = f.readline().split()
    except OSError:
        return None
    return next((w for w in words if w[:1].isdigit() and w.count(".") >= 1), None)


def gpu_details() -> dict | None:
    """The first CUDA GPU as torch sees it, with the driver and the CUDA/cuDNN torch runs on; None without one."""
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1), "count": torch.cuda.device_count(),
            "driver": nvidia_driver(), "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


def _descendants_cpu_s(pid: int) -> float:
    """CPU seconds used so far by the live descendants of ``pid`` (e.g. torch.compile's worker pool)."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    hz = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        parent[int(entry)] = int(rest[1])
        cpu[int(entry)] = (int(rest[11]) + int(rest[12])) / hz  # utime, stime
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        for child, ppid in parent.items():
            if ppid == p:
                total += cpu[child]
                todo.append(child)
    return total


def cpu_snapshot() -> dict | None:
    """Machine-wide busy and stolen CPU seconds (/proc/stat) and those of this process and its children, so
    that :func:`other_cpu_share` can tell how much of the machine other processes took during a run."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system + _descendants_cpu_s(os.getpid())
    except (OSError, ValueError, AttributeError):
        return None  # not Linux: the load average is all the report gives
    user, nice, system, _idle, _iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return {"busy_s": (user + nice + system + irq + softirq) / hz, "steal_s": steal / hz, "own_s": own,
            "wall_s": time.monotonic()}


def other_cpu_share(start: dict | None, end: dict | None, cpus: int) -> dict | None:
    """Shares of the machine's CPU time, between two :func:`cpu_snapshot` s, that other processes used
    (``others``) and that the hypervisor gave to other guests (``steal``)."""
    if not start or not end or end["wall_s"] <= start["wall_s"]:
        return None
    capacity = (end["wall_s"] - start["wall_s"]) * cpus
    others = (end["busy_s"] - start["busy_s"]) - (end["own_s"] - start["own_s"])
    return {"others": round(max(0.0, others) / capacity, 3),
            "steal": round(max(0.0, end["steal_s"] - start["steal_s"]) / capacity, 3)}


def _load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None
