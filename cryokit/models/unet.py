"""MONAI 3D U-Nets with one output channel per particle type plus background.

``segmentation_unet`` builds one of MONAI's U-Net family from explicit arguments. With
``output_stride=2`` a strided convolution stem halves the input first and the U-Net runs at half
resolution (the 1st-place segmentation models predicted at half resolution too): eight times less
work per voxel, logits of shape (B, C, Z/2, Y/2, X/2).

``dynunet`` (MONAI's DynUNet, the nnU-Net layout) can be deeply supervised: in training mode it returns
(B, 1 + deep_supervision, C, ...), the main head first and one head per deeper decoder level upsampled to the
main head's size; in eval mode only the main head. ``cryokit.losses.DeepSupervisionLoss`` trains on them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from monai.networks import nets
from torch import nn

__all__ = ["UNET_ARCHITECTURES", "segmentation_unet", "StridedStem"]

UNET_ARCHITECTURES = ("unet", "basicunet", "segresnet", "flexibleunet", "dynunet")


class StridedStem(nn.Module):
    """Run ``body`` at 1/``stride`` resolution: (B, 1, Z, Y, X) -> body((B, width, Z/s, Y/s, X/s))."""

    def __init__(self, body: nn.Module, width: int, stride: int = 2):
        super().__init__()
        self.stride = stride
        self.stem = nn.Sequential(
            # kernel == stride: output cell j sees exactly voxels [j*s, (j+1)*s), the cell convention of
            # cryokit.coords and cryokit.inference.sliding_window.
            nn.Conv3d(1, width, kernel_size=stride, stride=stride, bias=False),
            nn.InstanceNorm3d(width, affine=True),
            nn.PReLU(),
        )
        self.body = body

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(image))


def _body(
    architecture: str,
    in_channels: int,
    out_channels: int,
    channels: Sequence[int],
    strides: Sequence[int],
    num_res_units: int,
    dropout: float,
    deep_supervision: int = 0,
) -> nn.Module:
    if architecture == "dynunet":
        # The first level keeps the resolution (stride 1), as in nnU-Net; kernel 3 everywhere.
        return nets.DynUNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=[3] * len(channels),
            strides=[1, *strides],
            upsample_kernel_size=list(strides),
            filters=list(channels),
            dropout=dropout or None,
            res_block=num_res_units > 0,
            deep_supervision=deep_supervision > 0,
            deep_supr_num=max(deep_supervision, 1),  # MONAI checks it is >= 1 even with deep supervision off
        )
    if architecture == "unet":
        return nets.UNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=channels,
            strides=strides,
            num_res_units=num_res_units,
            dropout=dropout,
        )
    if architecture == "basicunet":
        # BasicUNet takes six widths: five encoder levels and the last decoder level.
        widths = (list(channels) + [channels[-1]] * 5)[:5] + [channels[0]]
        return nets.BasicUNet(
            spatial_dims=3, in_channels=in_channels, out_channels=out_channels, features=tuple(widths), dropout=dropout
        )
    if architecture == "segresnet":
        return nets.SegResNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            init_filters=channels[0],
            blocks_down=(1,) + (2,) * len(strides),
            blocks_up=(1,) * len(strides),
            dropout_prob=dropout or None,
        )
    if architecture == "flexibleunet":
        decoder = tuple(reversed(channels)) + (channels[0],) * max(0, 5 - len(channels))
        return nets.FlexibleUNet(
            in_channels=in_channels,
            out_channels=out_channels,
            backbone="resnet18",
            pretrained=False,
            spatial_dims=3,
            decoder_channels=decoder[:5],
            dropout=dropout,
        )
    raise ValueError(f"architecture must be one of {UNET_ARCHITECTURES}, got {architecture!r}")


def segmentation_unet(
    architecture: str = "unet",
    out_channels: int = 7,
    channels: Sequence[int] = (16, 32, 64, 128),
    strides: Sequence[int] = (2, 2, 2),
    num_res_units: int = 1,
    dropout: float = 0.0,
    output_stride: int = 1,
    deep_supervision: int = 0,
) -> nn.Module:
    """A 3D U-Net mapping (B, 1, Z, Y, X) to logits (B, out_channels, Z/s, Y/s, X/s), s = output_stride.

    Args:
        architecture: one of ``UNET_ARCHITECTURES`` (MONAI UNet, BasicUNet, SegResNet, FlexibleUNet).
        out_channels: background plus one channel per particle type (7 for the competition).
        channels: feature widths per level, shallow to deep.
        strides: downsampling per level transition; ``len(strides) == len(channels) - 1``.
        num_res_units: residual units per level (UNet); DynUNet: residual blocks when > 0.
        dropout: dropout probability.
        output_stride: 1 for full-resolution logits, 2 for half resolution.
        deep_supervision: DynUNet only: auxiliary heads on this many deeper decoder levels (0: none; at most
            ``len(strides) - 1``).

    Examples::

        >>> net = segmentation_unet(channels=(8, 16, 32), strides=(2, 2))
        >>> net(torch.zeros(1, 1, 16, 32, 32)).shape
        torch.Size([1, 7, 16, 32, 32])
    """
    if len(strides) != len(channels) - 1:
        raise ValueError(f"strides {tuple(strides)} must have one entry fewer than channels {tuple(channels)}")
    if output_stride not in (1, 2):
        raise ValueError(f"output_stride must be 1 or 2, got {output_stride}")
    if out_channels < 2:
        raise ValueError(f"out_channels must count background and at least one class, got {out_channels}")
    if architecture == "dynunet" and len(channels) < 3:
        raise ValueError(
            f"architecture 'dynunet' needs 3 or more levels (MONAI DynUNet), got channels {tuple(channels)}"
        )
    if deep_supervision and (architecture != "dynunet" or not 0 < deep_supervision < len(strides)):
        raise ValueError(
            f"deep_supervision={deep_supervision} needs architecture 'dynunet' and at most len(strides) - 1 = "
            f"{len(strides) - 1} heads, got architecture {architecture!r}"
        )
    if output_stride == 1:
        return _body(architecture, 1, out_channels, channels, strides, num_res_units, dropout, deep_supervision)
    body = _body(architecture, channels[0], out_channels, channels, strides, num_res_units, dropout, deep_supervision)
    return StridedStem(body, width=channels[0], stride=output_stride)
