"""MedicalNet's 3D ResNet-18 backbone, with its exact parameter names, and a checked weight loader.

The layout follows Tencent/MedicalNet ``models/resnet.py`` (Chen et al., "Med3D", arXiv 1904.00625), so
its released checkpoints (``resnet_18.pth``, ``resnet_18_23dataset.pth``; both use shortcut type "A")
load key for key:

* stem: ``conv1`` = Conv3d(1, 64, kernel 7, stride 2, padding 3, no bias), ``bn1``, ReLU, then
  MaxPool3d(kernel 3, stride 2, padding 1): stride 4.
* ``layer1`` (64 ch, stride 1), ``layer2`` (128 ch, stride 2), ``layer3`` (256 ch, stride 1, dilation 2),
  ``layer4`` (512 ch, stride 1, dilation 4), two BasicBlocks each. Layers 3 and 4 are dilated instead of
  strided, so the backbone's total stride is 8, not the 32 of an image-classification ResNet. Every block
  of a dilated layer uses that layer's dilation (padding = dilation).
* shortcut "A": when a block changes width or stride, the identity is subsampled (``avg_pool3d`` with
  kernel 1 and the block's stride) and zero channels are appended; it has no parameters. Shortcut "B":
  ``downsample.0`` = Conv3d 1x1x1 (no bias) and ``downsample.1`` = BatchNorm3d.
* MedicalNet's segmentation head ``conv_seg`` is not part of the backbone; the loader skips it.

The network is written afresh; one deliberate difference: MedicalNet's type-A shortcut rebuilds its output
from ``.data`` and so blocks gradients through that shortcut; here gradients flow through it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BasicBlock3d",
    "MEDICALNET_WIDTH",
    "MedicalNetResNet",
    "medicalnet_resnet18",
    "LoadReport",
    "load_medicalnet_weights",
]

logger = logging.getLogger(__name__)

SHORTCUT_TYPES = ("A", "B")
# Channels of the stem and layer1 in MedicalNet's ResNet-18, the only width its checkpoints load into.
MEDICALNET_WIDTH = 64
# Keys of MedicalNet's checkpoints that belong to its segmentation head, not to the backbone.
_HEAD_PREFIXES = ("conv_seg.",)


class _ZeroPadShortcut(nn.Module):
    """MedicalNet's shortcut "A": (B, C, Z, Y, X) -> (B, out_channels, Z/s, Y/s, X/s), no parameters."""

    def __init__(self, out_channels: int, stride: int):
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool3d(x, kernel_size=1, stride=self.stride)
        pad = out.new_zeros((out.shape[0], self.out_channels - out.shape[1], *out.shape[2:]))
        return torch.cat([out, pad], dim=1)


class BasicBlock3d(nn.Module):
    """Two dilated 3x3x3 convolutions with batch norm and a residual: MedicalNet's ``BasicBlock``.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        stride: stride of the first convolution (and of the shortcut).
        dilation: dilation (and padding) of both convolutions.
        downsample: the shortcut when width or stride change, else None for the identity.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ):
        super().__init__()
        self.conv1 = nn.Conv3d(
            in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, Z, Y, X) -> (B, C_out, Z/stride, Y/stride, X/stride)."""
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class MedicalNetResNet(nn.Module):
    """MedicalNet 3D ResNet backbone (BasicBlocks) returning the feature maps of every stage.

    Args:
        blocks_per_layer: BasicBlocks in layer1..layer4; (2, 2, 2, 2) is ResNet-18.
        shortcut_type: "A" (zero-padded identity, no parameters) or "B" (1x1x1 conv + batch norm).
        width: channels of the stem and layer1; layers 2 to 4 have 2, 4 and 8 times as many. 64 is
            MedicalNet's (its checkpoints need it); 32 has a quarter of the parameters and trains a step
            about 3 times as fast on the CPU.

    Attributes:
        feature_channels: channels per feature name.
        feature_strides: stride (input voxels per feature voxel) per feature name.

    Examples::

        >>> net = medicalnet_resnet18()
        >>> features = net(torch.zeros(1, 1, 32, 64, 64))
        >>> tuple(features["layer4"].shape)
        (1, 512, 4, 8, 8)
    """

    feature_strides = {"stem": 2, "layer1": 4, "layer2": 8, "layer3": 8, "layer4": 8}
    total_stride = 8

    def __init__(
        self,
        blocks_per_layer: tuple[int, int, int, int] = (2, 2, 2, 2),
        shortcut_type: str = "A",
        width: int = MEDICALNET_WIDTH,
    ):
        super().__init__()
        if shortcut_type not in SHORTCUT_TYPES:
            raise ValueError(f"shortcut_type must be one of {SHORTCUT_TYPES}, got {shortcut_type!r}")
        if len(blocks_per_layer) != 4 or min(blocks_per_layer) < 1:
            raise ValueError(f"blocks_per_layer must be four counts >= 1, got {blocks_per_layer!r}")
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"width must be an integer >= 1, got {width!r}")
        self.shortcut_type, self.width = shortcut_type, width
        self.conv1 = nn.Conv3d(1, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        # (out channels, stride, dilation) per layer, as in MedicalNet (width 64: 64, 128, 256, 512).
        specs = ((width, 1, 1), (2 * width, 2, 1), (4 * width, 1, 2), (8 * width, 1, 4))
        self.feature_channels = {"stem": width}
        in_channels = width
        for index, ((out_channels, stride, dilation), n_blocks) in enumerate(zip(specs, blocks_per_layer), start=1):
            self.add_module(f"layer{index}", self._make_layer(in_channels, out_channels, n_blocks, stride, dilation))
            self.feature_channels[f"layer{index}"] = in_channels = out_channels
        self._init_weights()

    def _make_layer(self, in_channels: int, width: int, n_blocks: int, stride: int, dilation: int) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or in_channels != width:
            if self.shortcut_type == "A":
                downsample = _ZeroPadShortcut(width, stride)
            else:
                downsample = nn.Sequential(
                    nn.Conv3d(in_channels, width, kernel_size=1, stride=stride, bias=False), nn.BatchNorm3d(width)
                )
        blocks = [BasicBlock3d(in_channels, width, stride, dilation, downsample)]
        blocks += [BasicBlock3d(width, width, 1, dilation) for _ in range(n_blocks - 1)]
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        """MedicalNet's initialisation: Kaiming normal (fan_out) convs, unit/zero batch norm."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps of every stage.

        Args:
            image: (B, 1, Z, Y, X) input; each of Z, Y, X a multiple of ``total_stride`` (8).

        Returns:
            ``{"stem": (B, w, Z/2, Y/2, X/2), "layer1": (B, w, Z/4, ...), "layer2": (B, 2w, Z/8, ...),
            "layer3": (B, 4w, Z/8, ...), "layer4": (B, 8w, Z/8, ...)}`` with w = ``width`` (64 for MedicalNet).
        """
        if image.ndim != 5 or image.shape[1] != 1:
            raise ValueError(f"image must have shape (B, 1, Z, Y, X), got {tuple(image.shape)}")
        stem = self.relu(self.bn1(self.conv1(image)))
        layer1 = self.layer1(self.maxpool(stem))
        layer2 = self.layer2(layer1)
        layer3 = self.layer3(layer2)
        layer4 = self.layer4(layer3)
        return {"stem": stem, "layer1": layer1, "layer2": layer2, "layer3": layer3, "layer4": layer4}


def medicalnet_resnet18(
    shortcut_type: str = "A", weights_path: str | Path | None = None, width: int = MEDICALNET_WIDTH
) -> MedicalNetResNet:
    """MedicalNet's 3D ResNet-18 backbone, randomly initialised unless ``weights_path`` is given.

    Args:
        shortcut_type: "A" (as MedicalNet's released ResNet-18 checkpoints) or "B".
        weights_path: optional local MedicalNet checkpoint to load (nothing is downloaded).
        width: channels of the first stage (``MedicalNetResNet``); MedicalNet's checkpoints need 64.
    """
    if weights_path and width != MEDICALNET_WIDTH:
        raise ValueError(
            f"MedicalNet checkpoint {weights_path} holds a ResNet-18 of width {MEDICALNET_WIDTH}; got width {width} "
            f"(model.backbone_width): use {MEDICALNET_WIDTH} with pretrained weights"
        )
    model = MedicalNetResNet((2, 2, 2, 2), shortcut_type=shortcut_type, width=width)
    if weights_path:
        load_medicalnet_weights(model, weights_path)
    return model


@dataclass(frozen=True)
class LoadReport:
    """What ``load_medicalnet_weights`` did.

    Attributes:
        path: the checkpoint file.
        loaded: backbone keys copied from the checkpoint.
        skipped: checkpoint keys ignored on purpose (the segmentation head ``conv_seg.*``).
        kept_default: backbone buffers absent from the checkpoint and left as they were
            (only ``*.num_batches_tracked``, which older PyTorch versions did not save).
    """

    path: str
    loaded: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    kept_default: tuple[str, ...] = field(default=())


def _read_state_dict(path: Path, weights_only: bool) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict, without DataParallel's ``module.`` prefix."""
    if not path.is_file():
        raise FileNotFoundError(f"MedicalNet checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # pickle, zip and safety errors have different types
        hint = " (if it is trusted and holds more than tensors, pass weights_only=False)" if weights_only else ""
        raise ValueError(f"{path} is not a readable torch checkpoint{hint}: {error}") from error
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"{path} holds no state dict (expected a mapping of tensors or {{'state_dict': ...}})")
    return {key.removeprefix("module."): value for key, value in checkpoint.items()}


def load_medicalnet_weights(model: nn.Module, path: str | Path, weights_only: bool = True) -> LoadReport:
    """Copy a MedicalNet checkpoint's backbone weights into ``model``, refusing any mismatch.

    Accepts a bare state dict or ``{"state_dict": ...}``, with or without DataParallel's ``module.``
    prefix. The segmentation head (``conv_seg.*``) is skipped; every other key must match the model's
    names and shapes exactly. Missing ``num_batches_tracked`` buffers keep their values.

    Args:
        model: a ``MedicalNetResNet`` (or any module with the same state-dict keys).
        path: local checkpoint file.
        weights_only: unpickle tensors and plain containers only (safe); False runs arbitrary pickled
            code, so use it only for files you trust.

    Returns:
        A ``LoadReport``; a summary is also logged at INFO level.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a torch checkpoint, or its keys or shapes do not match (the message
            names the file and lists missing keys, unexpected keys and shape mismatches).
    """
    path = Path(path)
    source = _read_state_dict(path, weights_only)
    skipped = sorted(k for k in source if k.startswith(_HEAD_PREFIXES))
    source = {k: v for k, v in source.items() if not k.startswith(_HEAD_PREFIXES)}
    target = model.state_dict()
    missing = sorted(k for k in target if k not in source)
    kept_default = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if k not in kept_default]
    unexpected = sorted(k for k in source if k not in target)
    mismatched = [
        f"{k}: checkpoint {tuple(source[k].shape)} vs model {tuple(target[k].shape)}"
        for k in sorted(source)
        if k in target and source[k].shape != target[k].shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"checkpoint {path} does not match the backbone: "
            f"missing keys {missing or 'none'}; unexpected keys {unexpected or 'none'}; "
            f"shape mismatches {mismatched or 'none'}"
        )
    model.load_state_dict(source, strict=False)
    report = LoadReport(str(path), tuple(sorted(source)), tuple(skipped), tuple(kept_default))
    logger.info("loaded %d tensors from %s (skipped %d head tensors)", len(report.loaded), path, len(skipped))
    return report
