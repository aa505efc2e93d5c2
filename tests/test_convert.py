"""The safe .pdparams reader and the checkpoint loader: bad input gets a clear error, and nothing runs."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import hgzoo
from hgzoo.convert import CheckpointMismatchError, CorruptCheckpointError, UnsafePickleError, load_pdparams


class _Payload:
    """Unpickling this runs ``os.system`` on a plain unpickler."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def _write_pickle(path: Path, obj) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def test_reads_numpy_pickles_and_drops_paddle_bookkeeping(tmp_path):
    sd = {"conv.weight": np.ones((2, 3, 1, 1), np.float32), "StructuredToParameterName@@": {"conv.weight": "c_0.w_0"}}
    out = load_pdparams(_write_pickle(tmp_path / "ok.pdparams", sd))
    assert list(out) == ["conv.weight"] and out["conv.weight"].shape == (2, 3, 1, 1)


@pytest.mark.parametrize("where", ["top", "nested"])
def test_malicious_pickle_is_refused_before_anything_runs(tmp_path, where):
    marker = tmp_path / "pwned"
    payload = _Payload(f"touch {marker}")
    obj = payload if where == "top" else {"conv.weight": np.zeros(2, np.float32), "x": payload}
    path = _write_pickle(tmp_path / "evil.pdparams", obj)
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        load_pdparams(path)
    assert not marker.exists(), "the payload ran"
    # The same file does run its payload under a plain unpickler: the test really is armed.
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_eval_and_builtins_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (eval, ("1+1",))

    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_pdparams(_write_pickle(tmp_path / "e.pdparams", {"a": Evil()}))


def test_object_arrays_are_refused(tmp_path):
    path = _write_pickle(tmp_path / "o.pdparams", {"a": np.array([1, "x"], dtype=object)})
    with pytest.raises((CorruptCheckpointError, UnsafePickleError)):
        load_pdparams(path)


def test_truncated_file_names_the_file(tmp_path):
    full = pickle.dumps({"w": np.ones((64, 64), np.float32)}, protocol=4)
    path = tmp_path / "trunc.pdparams"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(CorruptCheckpointError, match="trunc.pdparams.*corrupt"):
        load_pdparams(path)


def _as_paddle(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """A Paddle-keyed state dict for ``model``, made by inverting the simple common renames only."""
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        k = k.replace("running_mean", "_mean").replace("running_var", "_variance")
        out[k] = v.numpy()
    return out


def test_checkpoint_of_another_architecture_lists_keys(tmp_path):
    small = hgzoo.create_model("resnet18_vd")
    target = hgzoo.create_model("resnet34_vd")
    path = tmp_path / "r18.safetensors"
    save_file(small.state_dict(), str(path))
    with pytest.raises(CheckpointMismatchError, match="missing"):
        hgzoo.load_checkpoint(target, path)


def test_pdparams_of_another_architecture_lists_missing_unexpected_and_shapes(tmp_path):
    from hgzoo.convert import convert_paddle_state_dict

    sd = _as_paddle(hgzoo.create_model("pphgnetv2_b0"))
    with pytest.raises(CheckpointMismatchError) as e:
        convert_paddle_state_dict(sd, hgzoo.create_model("pphgnetv2_b1"))
    msg = str(e.value)
    assert "pphgnet" in msg.lower() or "PPHGNet" in msg
    assert "shape mismatch" in msg


def test_pth_loads_weights_only_and_safetensors_round_trip(tmp_path):
    model = hgzoo.create_model("resnet18_vd", num_classes=10).eval()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "m.pth")
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        for f in ("m.pth", "m.safetensors"):
            other = hgzoo.create_model("resnet18_vd", num_classes=10, pretrained_file=tmp_path / f).eval()
            torch.testing.assert_close(other(x), ref)


def test_pth_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"a": _Payload(f"touch {marker}")}}, tmp_path / "evil.pth")
    with pytest.raises(UnsafePickleError, match=r"evil\.pth was refused: it asks to build (posix|os)\.system"):
        hgzoo.create_model("resnet18_vd", pretrained_file=tmp_path / "evil.pth")
    assert not marker.exists()


def test_corrupt_safetensors_names_the_file(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x00" * 20)
    with pytest.raises(CorruptCheckpointError, match="bad.safetensors"):
        hgzoo.create_model("resnet18_vd", pretrained_file=path)


def test_other_num_classes_reinitialises_the_classifier_with_a_warning(tmp_path):
    save_file(hgzoo.create_model("resnet18_vd").state_dict(), str(tmp_path / "m.safetensors"))
    with pytest.warns(UserWarning, match="re-initialised"):
        model = hgzoo.create_model("resnet18_vd", num_classes=10, pretrained_file=tmp_path / "m.safetensors")
    assert model.num_classes == 10


def test_in_chans_adapts_the_stem(tmp_path):
    rgb = hgzoo.create_model("resnet18_vd")
    save_file(rgb.state_dict(), str(tmp_path / "m.safetensors"))
    gray = hgzoo.create_model("resnet18_vd", in_chans=1, pretrained_file=tmp_path / "m.safetensors")
    key = f"{gray.first_conv}.weight"
    torch.testing.assert_close(gray.state_dict()[key], rgb.state_dict()[key].sum(1, keepdim=True))


def _as_paddle_2_0(legendary: dict[str, np.ndarray], depths: tuple[int, ...]) -> dict[str, np.ndarray]:
    """A legendary ResNet-vd .pdparams renamed to PaddleClas 2.0's dygraph layout, as its
    ppcls/modeling/architectures/resnet_vd.py names things: stem convs ``conv1_1``..``conv1_3``, blocks
    ``bb_<stage>_<index>`` with ``conv0``.. and ``short``, ``ConvBNLayer`` parts ``_conv`` / ``_batch_norm``,
    fc ``out``."""
    import re

    block_names = [f"bb_{s}_{j}" for s, d in enumerate(depths) for j in range(d)]
    out = {}
    for k, v in legendary.items():
        k = re.sub(r"^stem\.(\d)\.", lambda m: f"conv1_{int(m.group(1)) + 1}.", k)
        k = re.sub(r"^blocks\.(\d+)\.", lambda m: f"{block_names[int(m.group(1))]}.", k)
        k = k.replace(".conv.", "._conv.").replace(".bn.", "._batch_norm.")
        out[re.sub(r"^fc\.", "out.", k)] = v
    return out


def test_paddle_2_0_dygraph_layout_of_resnet_vd(paddle_reference, tmp_path):
    """The files published outside legendary_models/ (Fix_ResNet50_vd_ssld_v2, ResNet50_vd_10w) are in PaddleClas
    2.0's layout: real PaddleClas weights renamed to it give PaddleClas's logits. Without its fc (the 10w file has
    none) the backbone loads and a fresh classifier is made, with a warning."""
    import torch

    pdparams, ref = paddle_reference.get("resnet18_vd")
    old = _as_paddle_2_0(load_pdparams(pdparams), (2, 2, 2, 2))
    assert "bb_3_1.conv1._batch_norm._variance" in old and "conv1_3._conv.weight" in old
    path = _write_pickle(tmp_path / "ResNet18_vd_2_0.pdparams", old)
    model = hgzoo.create_model("resnet18_vd", pretrained_file=path).eval()
    with torch.no_grad():
        y = model(torch.from_numpy(ref["x_193x257"])).numpy()
    assert np.abs(y - ref["y_193x257"]).max() / np.abs(ref["y_193x257"]).max() < 1e-4
    headless = _write_pickle(tmp_path / "headless.pdparams", {k: v for k, v in old.items() if not k.startswith("out.")})
    with pytest.warns(UserWarning, match="no classifier"):
        backbone = hgzoo.create_model("resnet18_vd", num_classes=10, pretrained_file=headless)
    torch.testing.assert_close(backbone.stages[3][1].conv2.bn.running_var, model.stages[3][1].conv2.bn.running_var)
    assert hgzoo.get_pretrained_cfg("resnet50_vd.paddle_10w").num_classes == 0
