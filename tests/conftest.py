"""Shared fixtures, and the two test tiers (tests/README.md). The parity oracle (PaddleClas) runs in its own
environment, see tests/reference/."""
from __future__ import annotations

import contextlib
import functools
import multiprocessing.process
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import hgzoo
from hgzoo._registry import model_entrypoint, paddle_name

ROOT = Path(__file__).resolve().parent.parent
REF_SCRIPT = Path(__file__).resolve().parent / "reference" / "paddle_ref.py"
PARITY_SIZES = ((224, 224), (193, 257))
# PaddleClas's HRNet upsamples by a fixed scale factor, so it cannot run unless the stride-4 map's sides
# are multiples of 8 (it raises a broadcast error at 193x257); 221x253 is the odd non-square size it takes.
FAMILY_PARITY_SIZES = {"hgzoo.models.hrnet": ((224, 224), (221, 253))}


def parity_sizes(name: str) -> tuple[tuple[int, int], ...]:
    """The two input sizes the parity tests use for ``name``: 224x224 and an odd, non-square one."""
    return FAMILY_PARITY_SIZES.get(model_entrypoint(name).__module__, PARITY_SIZES)


def reference_python() -> str | None:
    """The reference environment's python: $HGZOO_REF_PYTHON, or .venv-ref built by tests/reference/setup.sh."""
    candidates = [os.environ.get("HGZOO_REF_PYTHON"), str(ROOT / ".venv-ref" / "bin" / "python")]
    for c in candidates:
        if c and Path(c).is_file():
            return c
    return None


def shared_dir(tmp_path_factory, name: str) -> Path:
    """A folder that every pytest-xdist worker of this run sees (the run's base temp dir); lock it with
    :func:`filelock.FileLock` on ``<folder>.lock`` to make something once for all workers."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # each worker's base temp is a subfolder of the run's
    folder = root / f"shared-{name}"
    folder.mkdir(exist_ok=True)
    return folder


def pytest_configure(config) -> None:
    """Under pytest-xdist (tests/run.sh: one worker per core), one intra-op thread per worker and per subprocess:
    two workers of two threads on two cores spin against each other. ``platform.processor()`` (the benchmark
    harness reports it) runs ``uname -p`` once and keeps the answer: asked here, no fast-tier test starts it."""
    platform.processor()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"


# --- the two tiers ------------------------------------------------------------------------------------------------
# The fast tier, `pytest -m "not slow"`, starts no process, needs neither the PaddleClas reference nor a wheel, and
# runs model tests on the smallest variant of each family (FAST_MODELS). Everything else is `slow`: a test whose module
# says `pytestmark = pytest.mark.slow`, that says `@pytest.mark.slow`, that SLOW lists (in modules that are mostly
# fast: they start a process, export, compile or script a model, or take over a CPU-second, the model contracts on
# FAST_MODELS excepted), that is marked `parity` or `gpu`, that uses a fixture of SLOW_FIXTURES, or whose parameters
# name another model. A fast-tier test that starts a process fails. tests/README.md says how to run each tier.
SLOW_MARKERS = ("parity", "gpu")
SLOW_FIXTURES = ("paddle_reference", "wheel_install")
FAST_MODELS = ("pphgnet_tiny", "pphgnetv2_b0", "pplcnetv2_small", "hrnet_w18_c", "resnet18_vd",
               "hgnet_tiny", "hgnetv2_b0", "lcnetv2_small", "hrnet_w18")  # the same under timm's names (lower case)
SLOW = {
    "test_bench_validate.py": ("test_quick_mode_runs_every_peer_on_the_same_weights",),
    "test_benchmark.py": ("test_own_worker_processes_count_as_the_benchmark", "test_tiny_real_run_per_cpu_backend",
                          "test_plot_writes_png", "test_compare_timm_and_cli_outputs",
                          "test_compare_timm_plain_keeps_timm_branches",
                          "test_int8_runs_on_onnxruntime_and_openvino_checked_on_real_photos",
                          "test_out_of_memory_halves_the_batch_and_says_so",
                          "test_prepare_budget_stops_a_slow_backend_per_model"),
    "test_backends.py": ("test_each_cpu_backend_returns_the_runner_and_agrees_with_eager",),
    "test_checkpoint.py": ("test_read_info_reads_what_train_py_wrote",
                           "test_model_from_checkpoint_loads_model_or_ema_weights",
                           "test_flags_that_contradict_the_checkpoint_are_refused",
                           "test_validate_takes_everything_from_the_checkpoint",
                           "test_validate_refuses_contradicting_flags",
                           "test_predict_prints_the_checkpoints_class_names",
                           "test_export_takes_the_checkpoint_and_its_ema",
                           "test_ema_weights_are_found_by_timms_load_checkpoint"),
    "test_docs.py": ("test_mkdocs_build_strict",),
    "test_libraries.py": ("test_decoding_is_quiet_without_a_process_wide_filter",
                          "test_hgzoo_checkpoint_is_a_lazy_attribute"),
    "test_timm_contract.py": ("test_global_pool_as_timm", "test_levels_as_timm_port",
                              "test_output_stride_as_timm_resnet50d", "test_avg_keeps_paddle_head_numerics",
                              "test_feature_indexing_values"),
    "test_timm_flags.py": ("test_benchmark_torchscript_and_channels_last_run_checked_against_eager",
                           "test_validate_torchscript_gives_eagers_logits_and_metrics"),
    "test_timm_names.py": ("test_timm_repo_by_name_gives_timms_logits", "test_the_comparison_can_fail"),
    "test_data.py": ("test_loader_reports_bad_images_and_normalizes",),
    "test_deploy.py": ("test_cli_export_end_to_end", "test_export_verifies_or_names_the_fallback",
                       "test_drift_report_and_a_bad_export_is_caught",
                       "test_export_that_changes_the_results_raises_and_leaves_no_file",
                       "test_onnx_fp16_path_with_a_stand_in_gpu", "test_torchscript_fp16_path_with_a_stand_in_device"),
    "test_detection.py": ("test_training_step_trains_only_what_is_not_frozen_then_detects",),
    "test_features.py": ("test_onnx_export_with_dynamic_height_and_width",
                         "test_features_only_drops_what_it_never_runs",
                         "test_hrnet_offers_incre_and_branch_features"),
    "test_fmnist_timm_peer.py": ("test_dry_run_maps_the_recipe", "test_bad_input_exits_2",
                                 "test_tiny_run_through_timm_train_py"),
    "test_gpu.py": ("test_gpu_check_without_gpu_ends_cleanly",
                    "test_gpu_check_bad_arguments_are_one_line_and_exit_2", "test_gpu_check_help",
                    "test_gpu_check_commands_are_valid_for_the_tools",
                    "test_gpu_check_forced_run_on_cpu_walks_every_phase", "test_channels_last_matches_cpu",
                    "test_amp_matches_fp32"),
    "test_house.py": ("test_import_hgzoo_loads_only_the_library", "test_lazy_names_resolve_whatever_loads_them_first"),
    "test_hrnet.py": ("test_feature_views", "test_grad_checkpointing_same_gradients_with_drop_path"),
    "test_init.py": ("test_timm_init_matches_timm",),
    "test_models.py": ("test_drop_path_is_active_in_training_only", "test_grad_checkpointing_gives_same_gradients"),
    "test_pphgnet.py": ("test_v1_structure",),
    "test_predict.py": ("test_predict_cli_json_with_a_bad_file", "test_predict_python_api", "test_predict_cli_text"),
    "test_publish.py": ("test_push_to_hub_then_load_in_hgzoo_and_timm",
                        "test_convert_cli_publishes_a_train_checkpoint", "test_converted_weights_card",
                        "test_card_names_the_runs_init_crop_and_flip"),
    "test_safety.py": ("test_train_never_runs_code_from_a_checkpoint", "test_commands_never_run_code_from_weights",
                       "test_validate_and_predict_refuse_the_image_bomb",
                       "test_hub_config_declaring_a_billion_classes", "test_hub_config_declaring_bad_input_channels",
                       "test_publishing_never_runs_code_from_a_checkpoint",
                       "test_a_finished_run_is_never_overwritten", "test_overwrite_replaces_the_run",
                       "test_resume_keeps_the_saved_config_and_prints_changes",
                       "test_resuming_a_finished_run_says_how_to_continue",
                       "test_resume_from_what_cannot_be_resumed", "test_output_that_is_a_file_or_read_only",
                       "test_symlink_loop_is_counted_once", "test_train_takes_paddleclas_spellings",
                       "test_missing_weights_offline_give_one_line", "test_concurrent_writers_of_a_hub_folder",
                       "test_image_bomb_refused_before_decoding"),
    "test_timm_compat.py": ("test_timm_scripts_run_through_the_runner", "test_scripted_equals_eager",
                            "test_fx_traces_at_any_size", "test_forward_intermediates_as_timm_and_as_features_only",
                            "test_prune_intermediate_layers", "test_timm_names_of_other_networks_are_refused",
                            "test_timm_resolves_the_data_config", "test_timm_scripts_run_hgzoo_models"),
    "test_timm_weights.py": ("test_tags_load_from_timms_repos_and_give_timms_logits",
                             "test_pins_refuse_another_file", "test_timm_to_hgzoo_to_timm_is_exact",
                             "test_convert_cli_from_timm_and_back", "test_every_timm_variant_maps_key_for_key",
                             "test_pretrained_file_recognises_timm_checkpoints"),
    "test_train.py": ("test_ddp_two_processes", "test_resume_after_sigkill", "test_bad_input",
                      "test_distillation_with_unlabeled_extra", "test_end_to_end",
                      "test_epochs_without_evaluation_have_no_eval_figures"),
    "test_validate.py": ("test_timm_spellings_take_effect", "test_wildcard_validates_every_tag_from_the_cache",
                         "test_a_runtime_that_is_not_installed",
                         "test_top1_matches_direct_computation", "test_int8_file_is_what_is_validated",
                         "test_deployed_file_runs_without_exporting_again",
                         "test_compile_and_bf16_backends_agree_with_eager", "test_label_list_and_overrides",
                         "test_bad_images_stop_or_are_counted",
                         "test_runtime_bad_input_is_one_line_and_writes_nothing"),
}
SPAWNED = pytest.StashKey[str]()
TIERS = pytest.StashKey[dict]()  # node id -> slow


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items) -> None:
    """Mark the slow tests (see SLOW), and keep every test's tier in ``config.stash[TIERS]`` (test_tiers.py reads
    it); a name in SLOW that its module does not define is an error."""
    for item in items:
        module = Path(str(item.fspath)).name
        params = getattr(getattr(item, "callspec", None), "params", {}).values()
        if (getattr(item, "originalname", "") in SLOW.get(module, ())
                or any(item.get_closest_marker(m) for m in SLOW_MARKERS)
                or set(SLOW_FIXTURES) & set(getattr(item, "fixturenames", ()))
                or any(_a_large_model(p) for p in params)):
            item.add_marker(pytest.mark.slow)
    config.stash[TIERS] = {item.nodeid: bool(item.get_closest_marker("slow")) for item in items}
    modules = {Path(str(i.fspath)).name: i.module for i in items if getattr(i, "module", None)}
    stale = [f"{m}::{n}" for m, mod in modules.items() for n in SLOW.get(m, ()) if not hasattr(mod, n)]
    if stale:
        raise pytest.UsageError(f"tests/conftest.py SLOW names tests that do not exist: {', '.join(stale)}")


def _a_large_model(param) -> bool:
    """True if a test parameter names a model (any spelling; a weight tag does not count) not in FAST_MODELS."""
    return isinstance(param, str) and "." not in param and param.lower() not in FAST_MODELS and hgzoo.is_model(param)


def _refuse_to_spawn(item: pytest.Item, original, what: str):
    @functools.wraps(original)
    def refuse(*args, **kwargs):
        item.stash[SPAWNED] = what
        raise RuntimeError(f"{item.nodeid} is in the fast tier but starts a process ({what}): mark it slow "
                           "(SLOW in tests/conftest.py, or @pytest.mark.slow)")
    return refuse


@contextlib.contextmanager
def _no_processes(item: pytest.Item) -> Iterator[None]:
    """While a fast-tier test (its fixtures included) runs, subprocess, os.fork, os.posix_spawn and multiprocessing
    raise, and are recorded (os.system stays: test_convert and test_safety pickle it by name)."""
    if item.get_closest_marker("slow"):
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        for owner, name, what in ((subprocess.Popen, "_execute_child", "subprocess"),
                                  (os, "fork", "os.fork"), (os, "posix_spawn", "os.posix_spawn"),
                                  (os, "posix_spawnp", "os.posix_spawnp"),
                                  (multiprocessing.process.BaseProcess, "start", "multiprocessing")):
            mp.setattr(owner, name, _refuse_to_spawn(item, getattr(owner, name), what))
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _no_processes(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _no_processes(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    with _no_processes(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A fast-tier test that started a process fails, even where the test caught the error."""
    report = (yield).get_result()
    what = item.stash.get(SPAWNED, None)
    if what:
        del item.stash[SPAWNED]
        if report.passed:
            report.outcome = "failed"
            report.longrepr = f"in the fast tier but starts a process ({what}): mark it slow"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_thread")``): on a busy
    2-core machine more threads spin against each other (5-10x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class PaddleReference:
    """Runs PaddleClas once per family (all its variants in one process) and serves the results; under
    pytest-xdist the first worker to ask runs a family, the others wait for it and read its files."""

    def __init__(self, python: str, out_dir: Path) -> None:
        self.python, self.out_dir = python, out_dir

    def get(self, name: str) -> tuple[Path, dict[str, np.ndarray]]:
        from filelock import FileLock

        pname = paddle_name(name)
        family = model_entrypoint(name).__module__
        with FileLock(str(self.out_dir / f"{family}.lock")):
            if not (self.out_dir / f"{family}.done").is_file():
                names = [paddle_name(n) for n in hgzoo.list_models() if model_entrypoint(n).__module__ == family]
                sizes = ",".join(f"{h}x{w}" for h, w in parity_sizes(name))
                self._run("--sizes", sizes, *names)
                (self.out_dir / f"{family}.done").write_text("\n".join(names))
        data = np.load(self.out_dir / f"{pname}.npz")
        return self.out_dir / f"{pname}.pdparams", {k: data[k] for k in data.files}

    def as_built(self, names: list[str]) -> dict[str, Path]:
        """PaddleClas's freshly initialized weights (nothing randomized) for ``names``, one process for all."""
        from filelock import FileLock

        pnames = [paddle_name(n) for n in names]
        with FileLock(str(self.out_dir / "as_built.lock")):
            self._run("--as-built", *pnames)
        return {n: self.out_dir / f"{p}.init.pdparams" for n, p in zip(names, pnames)}

    def _run(self, *args: str) -> None:
        """Run tests/reference/paddle_ref.py with ``args``, writing into ``out_dir``."""
        # A clean environment: nothing of hgzoo's interpreter may leak into Paddle's.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        proc = subprocess.run([self.python, str(REF_SCRIPT), "--out", str(self.out_dir), *args],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"the PaddleClas reference failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")


@pytest.fixture(scope="session")
def paddle_reference(tmp_path_factory) -> PaddleReference:
    python = reference_python()
    if python is None:
        msg = "the PaddleClas reference environment is missing: run tests/reference/setup.sh (or set HGZOO_REF_PYTHON)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return PaddleReference(python, shared_dir(tmp_path_factory, "paddle_ref"))


def logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """``model``'s output for the array ``x``, without autograd, as an array."""
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute difference, relative to the reference's scale (its largest magnitude)."""
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))

def one_error_line(proc: subprocess.CompletedProcess, code: int, *names: str) -> str:
    """A command's refusal as the README states it: exit ``code``, no traceback, exactly one ``error:`` line,
    naming each of ``names``; returns that line."""
    err = proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err[-3000:]
    for name in names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    return lines[0]


def randomize_bn(model: torch.nn.Module, affine: bool = False) -> torch.nn.Module:
    """Non-trivial BN statistics (and, with ``affine``, weights below 1 that keep deep models' activations small)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                if affine:
                    m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.6 + 0.3)
                    m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model


def calibrate(model: torch.nn.Module, x: torch.Tensor, seed: int) -> torch.nn.Module:
    """``model`` with random weights that carry the input: BN statistics of ``x``, gammas below 1, non-zero biases
    (the fc's too: timm initialises some heads to zero); in eval mode."""
    nn = torch.nn
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.normal_(0, 0.2)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = None
                m.weight.uniform_(0.5, 0.9)
                m.bias.normal_(0, 0.1)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0, 0.05)
                m.bias.normal_(0, 0.5)
        model.train()(x)
    return model.eval()



class WheelInstall:
    """hgzoo installed from its wheel into a fresh venv (its dependencies from this environment): a user's
    ``pip install hgzoo``, with no repository around it. ``run(*argv)`` runs ``python -m hgzoo ...`` there."""

    def __init__(self, python: Path, site: Path, env: dict[str, str]) -> None:
        self.python, self.site, self.env = python, site, env

    def run(self, *argv: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.python), *argv], env=self.env, capture_output=True, text=True, cwd=cwd,
                              timeout=timeout)


@pytest.fixture(scope="session")
def wheel_install(tmp_path_factory) -> WheelInstall:
    from filelock import FileLock

    root = shared_dir(tmp_path_factory, "wheel_install")
    with FileLock(str(root) + ".lock"):
        if not (root / "done").is_file():
            _install_wheel(root)
            (root / "done").write_text("")
    site = next((root / "venv" / "lib").glob("python3*/site-packages"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    return WheelInstall(root / "venv" / "bin" / "python", site, env)


def _install_wheel(root: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(root / "wheel")], check=True, capture_output=True, timeout=300)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(next((root / "wheel").glob("*.whl")))], check=True, capture_output=True, timeout=300)
    # hgzoo's dependencies (torch, ...) from this environment; hgzoo itself only from the wheel
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (site / "_deps.pth").write_text("\n".join(deps) + "\n")


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> tuple[Path, dict]:
    """The folder and index of :func:`cached_write_onnx`'s exports, one per test process."""
    return tmp_path_factory.mktemp("onnx_cache"), {}


def cached_write_onnx(folder: Path, made: dict):
    """hgzoo.deploy's fp32 ONNX export (``runtimes.write_onnx``) made once per distinct network, weights and
    arguments, and copied for the next caller: torch.export takes seconds per export, and the ONNX and OpenVINO
    targets of tests/test_deploy.py and the benchmark's runs start from the same file. A model altered in any tensor,
    or built of other layers, is exported anew."""
    import hashlib
    import shutil

    from hgzoo.deploy import runtimes as rt

    real = rt.write_onnx

    def write_onnx(model, path, img_size, dynamic_batch=True, in_chans=None, external_data=None):
        if external_data:
            return real(model, path, img_size, dynamic_batch, in_chans, external_data)
        # The module tree (layers, their kinds and arguments: an activation, a dilation) and every tensor.
        h = hashlib.sha256(repr((repr(model), model.training, img_size, dynamic_batch, in_chans)).encode())
        for k, v in model.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().contiguous().cpu().numpy().tobytes())
        key = h.hexdigest()
        if key not in made:
            made[key] = real(model, folder / f"{key}.onnx", img_size, dynamic_batch, in_chans, external_data)
        shutil.copyfile(made[key], path)
        return str(path)

    return write_onnx


@pytest.fixture
def onnx_once(onnx_cache, monkeypatch):
    """:func:`cached_write_onnx` for one test (``pytest.mark.usefixtures("onnx_once")``)."""
    from hgzoo.deploy import runtimes as rt

    monkeypatch.setattr(rt, "write_onnx", cached_write_onnx(*onnx_cache))
