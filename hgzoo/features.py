"""Feature-pyramid outputs for detection and segmentation: FeatureInfo, the features-only wrapper, and its
ONNX export with dynamic input height and width."""

import os
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FeatureInfo", "FeatureListNet", "export_onnx", "resolve_out_indices"]


def resolve_out_indices(out_indices: int | Sequence[int] | None, n: int) -> tuple[int, ...]:
    """``None``: all; an int ``k``: the last ``k``; a sequence: those indices (negative ones count from the end)."""
    if out_indices is None:
        return tuple(range(n))
    if isinstance(out_indices, int):
        if not 1 <= out_indices <= n:
            raise ValueError(f"out_indices={out_indices} asks for the last {out_indices} of {n} feature levels")
        return tuple(range(n - out_indices, n))
    out = []
    for i in out_indices:
        if not -n <= i < n:
            raise ValueError(f"out_index {i} is not valid; valid indices are 0..{n - 1} (or -{n}..-1)")
        out.append(i % n)
    if len(set(out)) != len(out) or out != sorted(out):
        raise ValueError(f"out_indices {tuple(out_indices)} must be distinct and in increasing order")
    return tuple(out)


class FeatureInfo:
    """Channels and reductions (integer strides) of the feature levels a model returns, with timm's
    ``FeatureInfo`` methods: ``channels(idx)``, ``reduction(idx)``, ``module_name(idx)``, ``get(key, idx)`` and
    ``get_dicts(keys, idx)``, where ``idx`` (an int or a sequence) picks among the returned levels."""

    def __init__(self, info: list[dict], out_indices: Sequence[int]) -> None:
        self.info = [dict(info[i]) for i in out_indices]
        self.out_indices = tuple(out_indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> list | object:
        """``key`` of every level, of level ``idx``, or of the levels ``idx``."""
        if idx is None:
            return [f[key] for f in self.info]
        if isinstance(idx, int):
            return self.info[idx][key]
        return [self.info[i][key] for i in idx]

    def get_dicts(self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None) -> list[dict] | dict:
        """The level dicts (only ``keys`` if given): all, level ``idx``, or the levels ``idx``."""
        def pick(f: dict) -> dict:
            return dict(f) if keys is None else {k: f[k] for k in keys}

        if idx is None:
            return [pick(f) for f in self.info]
        if isinstance(idx, int):
            return pick(self.info[idx])
        return [pick(self.info[i]) for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> list[int] | int:
        return _as_int(self.get("num_chs", idx))

    def reduction(self, idx: int | Sequence[int] | None = None) -> list[int] | int:
        return _as_int(self.get("reduction", idx))

    def module_name(self, idx: int | Sequence[int] | None = None) -> list[str] | str:
        return self.get("module", idx)

    def __len__(self) -> int:
        return len(self.info)

    def __getitem__(self, i: int) -> dict:
        return self.info[i]

    def __repr__(self) -> str:
        return f"FeatureInfo(channels={self.channels()}, reduction={self.reduction()})"


def _as_int(value: list | object) -> list[int] | int:
    return [int(v) for v in value] if isinstance(value, list) else int(value)


class FeatureListNet(nn.Module):
    """A classifier turned backbone: ``forward(x)`` returns the feature maps at ``out_indices``.

    The wrapped model must implement ``forward_stages(x, mode, stop)`` (one tensor per entry of its
    ``feature_levels(mode)``) and ``prune_for_features``: the classifier head, and every module the chosen
    features never run (later stages, HRNet's classification merge), are deleted, so that no parameter is
    left without a gradient (DDP would reject it). Pretrained weights are loaded before wrapping.

    ``freeze_stages(k)`` and ``set_norm_eval()`` act on the wrapped model (see
    :meth:`~hgzoo.models._base.ClassifierModel.freeze_stages`); ``create_model(..., freeze_at=k,
    norm_eval=True)`` calls them.
    """

    def __init__(self, model: nn.Module, out_indices: int | Sequence[int] | None = None,
                 feature_mode: str | None = None) -> None:
        super().__init__()
        levels = model.feature_levels(feature_mode)
        self.out_indices = resolve_out_indices(out_indices, len(levels))
        self.feature_info = FeatureInfo(levels, self.out_indices)
        self.feature_mode = feature_mode
        model.prune_for_features(feature_mode, self.out_indices)
        self.model = model

    @property
    def default_cfg(self):
        """timm's older name for ``pretrained_cfg``."""
        return self.__dict__.get("pretrained_cfg")

    @property
    def frozen_stages(self) -> int:
        return self.model.frozen_stages

    @property
    def norm_eval(self) -> bool:
        return self.model.norm_eval

    def freeze_stages(self, frozen_stages: int) -> None:
        """Freeze the stem and the first ``frozen_stages`` stages (-1: none, 0: the stem)."""
        try:
            self.model.freeze_stages(frozen_stages)
        except ValueError as e:
            raise ValueError(f"{e} (a features-only model keeps the stages up to its last out_index only)") from None

    def set_norm_eval(self, enable: bool = True) -> None:
        """Keep every BatchNorm in eval mode, even after ``train()``."""
        self.model.set_norm_eval(enable)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.set_grad_checkpointing(enable)

    def fuse(self) -> "FeatureListNet":
        """For inference: :func:`hgzoo.reparameterize` in place (the wrapped model's ``fuse``); returns the model."""
        self.model.fuse()
        return self.eval()

    convert_to_deploy = fuse

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model.forward_stages(x, self.feature_mode, max(self.out_indices))
        return [feats[i] for i in self.out_indices]


def export_onnx(
    model: FeatureListNet,
    path: str | os.PathLike,
    *,
    example_size: tuple[int, int] = (160, 192),
    dynamic_batch: bool = True,
    opset_version: int | None = None,
) -> str:
    """Export a features-only model to ONNX with a dynamic height and width (and batch).

    The input is ``x`` of shape ``(batch, in_chans, height, width)``; the outputs are ``feat0``, ``feat1``, ...,
    one per ``model.feature_info`` entry, of ``(batch, channels, ceil(height / reduction), ceil(width /
    reduction))``. The graph is traced once by ``torch.export`` with symbolic height and width (at
    ``example_size``, which must be non-square so that the two stay distinct symbols), so the SAME padding
    of PP-HGNetV2 and the crop after HRNet's upsampling are computed from the input shape, not baked in.
    The model is exported in eval mode (its mode is restored after). For deployment, call
    ``hgzoo.reparameterize(model)`` first. There is no fallback to the TorchScript exporter: its graph of
    PP-HGNetV2's stem keeps the example's output shape whatever the input (measured: exported at 96x128, a
    128x96 input gives a 24x32 stem output instead of 32x24).
    """
    if not isinstance(model, FeatureListNet):
        raise TypeError(
            f"export_onnx takes a features-only model (create_model(..., features_only=True)), got "
            f"{type(model).__name__}; export a classifier with hgzoo.deploy.export"
        )
    h, w = example_size
    if h == w or min(h, w) < 64:
        raise ValueError(f"example_size must be non-square and at least 64 pixels a side, got {example_size}")
    in_chans = model.model.get_submodule(model.model.first_conv).in_channels
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    # Batch 2: torch.export would specialize a batch of 1.
    x = torch.randn(2 if dynamic_batch else 1, in_chans, h, w, device=device)
    dims = {2: torch.export.Dim("height", min=32), 3: torch.export.Dim("width", min=32)}
    if dynamic_batch:
        dims[0] = torch.export.Dim("batch", min=1)
    names = [f"feat{i}" for i in range(len(model.feature_info))]
    was_training = model.training
    model.eval()
    try:
        # Guards that sympy cannot prove for every size (HRNet's crop: ceil(n / 4) <= 2 * ceil(n / 8)) become
        # runtime asserts instead of failing the export.
        program = torch.export.export(model, (x,), dynamic_shapes=(dims,), strict=False,
                                      prefer_deferred_runtime_asserts_over_guards=True)
        onnx_program = torch.onnx.export(program, input_names=["x"], output_names=names, dynamo=True,
                                         opset_version=opset_version, verbose=False)
    finally:
        model.train(was_training)
    onnx_program.save(str(path))
    return str(path)
