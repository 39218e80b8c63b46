"""YOLO-style single-scale 3D point detector: backbone features -> small FPN neck -> per-anchor head.

Pure forward: the network maps a patch to per-cell, per-anchor maps and nothing more. Target encoding
and decoding live in ``cryokit.models.detection_coder`` (``encode_detection_targets``, ``decode_detections``), the loss
in ``cryokit.losses.CompositeDetectionLoss``; the output keys are the target keys of
``DetectionTargets.as_tensors()`` and the layout is theirs:

* cell ``c`` of a stride-``s`` output covers input voxels ``[c*s, (c+1)*s)``, centre ``c*s + (s-1)/2``;
* ``class_scores`` are logits over the C classes, turned into probabilities by a softmax over C
  (``decode_detections(..., from_logits=True)``); a cell's class-c score is
  ``sigmoid(objectness) * softmax(class_scores)[c]``;
* ``offset_zyx`` is ``(centre - cell centre) / s`` (cell units); targets lie in [-0.5, 0.5), predictions
  are bounded to ``(-offset_bound, offset_bound)`` by ``offset_bound * tanh`` (a bound above 0.5 keeps
  the edge of the cell reachable without saturating the tanh, as YOLOv5's ``2 * sigmoid - 0.5`` does);
* ``log_radius_ratio`` is ``log(radius / anchor radius)``, one anchor radius per anchor index.

The objectness bias starts at a low prior logit (-4, sigmoid 0.018, as the 1st-place detector's head
does), so early training is not swamped by the many empty cells. The class bias starts at 0: a bias
shared by all classes cancels in the softmax.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from cryokit.models.detection_coder import DETECTOR_OUTPUTS
from cryokit.models.resnet3d import medicalnet_resnet18

__all__ = ["YOLO3D", "DETECTOR_OUTPUTS"]


def _conv_block(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


class YOLO3D(nn.Module):
    """Backbone features fused top-down to one output stride, then per-anchor detection maps.

    The backbone must map (B, 1, Z, Y, X) to a dict of named feature maps and expose
    ``feature_channels`` and ``feature_strides`` (dicts by name), like ``MedicalNetResNet``. The neck sums
    1x1 projections of every feature at the coarsest stride, then repeatedly upsamples (trilinear) and adds
    the projections of the next finer stride until ``stride`` is reached, with a 3x3 conv block per level.

    Args:
        n_classes: number of particle classes C (6 for the competition).
        anchors_radius_voxels: (A,) radius of each anchor in voxels (``cryokit.models.anchors``).
        backbone: feature extractor; None builds ``medicalnet_resnet18()`` (random weights).
        neck_channels: width of the neck and head.
        stride: output stride; must be one of the backbone's feature strides (MedicalNet: 2, 4 or 8).
        head_depth: 3x3 conv blocks in the shared head tower.
        prior_logit: initial bias of the objectness logits.
        offset_bound: offsets are ``offset_bound * tanh(raw)`` in cell units; > 0.5 so targets at the
            cell's edge stay reachable.

    Examples::

        >>> net = YOLO3D(n_classes=6, anchors_radius_voxels=(6.2, 9.0, 13.8))
        >>> out = net(torch.zeros(1, 1, 32, 64, 64))
        >>> tuple(out["class_scores"].shape)
        (1, 3, 6, 8, 16, 16)
    """

    def __init__(
        self,
        n_classes: int,
        anchors_radius_voxels: Sequence[float],
        backbone: nn.Module | None = None,
        neck_channels: int = 64,
        stride: int = 4,
        head_depth: int = 2,
        prior_logit: float = -4.0,
        offset_bound: float = 1.0,
    ):
        super().__init__()
        radii = tuple(float(r) for r in anchors_radius_voxels)
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        if not radii or min(radii) <= 0:
            raise ValueError(f"anchors_radius_voxels must hold at least one positive radius, got {radii}")
        if neck_channels < 1 or head_depth < 0 or offset_bound <= 0:
            raise ValueError(
                f"need neck_channels >= 1, head_depth >= 0 and offset_bound > 0, got "
                f"{neck_channels}, {head_depth}, {offset_bound}"
            )
        self.backbone = medicalnet_resnet18() if backbone is None else backbone
        channels, strides = self._backbone_features(self.backbone, stride)
        self.n_classes, self.n_anchors, self.stride, self.offset_bound = n_classes, len(radii), stride, offset_bound
        self.register_buffer("anchors_radius_voxels", torch.tensor(radii), persistent=False)
        self.total_stride = int(getattr(self.backbone, "total_stride", max(strides.values())))
        # Neck levels from coarsest to ``stride``: the features of each level and its conv block.
        self.levels = sorted({s for s in strides.values() if s >= stride}, reverse=True)
        self.level_features = [[name for name in strides if strides[name] == s] for s in self.levels]
        self.lateral = nn.ModuleDict(
            {name: nn.Conv3d(channels[name], neck_channels, 1) for names in self.level_features for name in names}
        )
        self.smooth = nn.ModuleList(_conv_block(neck_channels, neck_channels) for _ in self.levels)
        self.tower = nn.Sequential(*(_conv_block(neck_channels, neck_channels) for _ in range(head_depth)))
        a = self.n_anchors
        self.objectness_head = nn.Conv3d(neck_channels, a, 1)
        self.class_head = nn.Conv3d(neck_channels, a * n_classes, 1)
        self.offset_head = nn.Conv3d(neck_channels, a * 3, 1)
        self.radius_head = nn.Conv3d(neck_channels, a, 1)
        for head in (self.objectness_head, self.class_head, self.offset_head, self.radius_head):
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
        nn.init.constant_(self.objectness_head.bias, prior_logit)

    @staticmethod
    def _backbone_features(backbone: nn.Module, stride: int) -> tuple[dict[str, int], dict[str, int]]:
        channels = getattr(backbone, "feature_channels", None)
        strides = getattr(backbone, "feature_strides", None)
        if not isinstance(channels, dict) or not isinstance(strides, dict) or set(channels) != set(strides):
            raise ValueError(
                f"backbone {type(backbone).__name__} must expose feature_channels and "
                "feature_strides dicts with the same feature names"
            )
        if stride not in strides.values():
            raise ValueError(
                f"stride={stride} is not a feature stride of the backbone; available: {sorted(set(strides.values()))}"
            )
        return dict(channels), dict(strides)

    def _neck(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Top-down fusion: (B, neck_channels, Z/stride, Y/stride, X/stride)."""
        x: torch.Tensor | None = None
        for names, smooth in zip(self.level_features, self.smooth):
            fused = sum(self.lateral[name](features[name]) for name in names)
            if x is not None:
                fused = fused + F.interpolate(x, size=fused.shape[2:], mode="trilinear", align_corners=False)
            x = smooth(fused)
        assert x is not None
        return x

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Detection maps of a batch of patches.

        Args:
            image: (B, 1, Z, Y, X) patch; Z, Y and X multiples of ``total_stride`` (8 for MedicalNet).

        Returns:
            With A anchors, C classes and Z' = Z / stride (likewise Y', X'):
            ``objectness`` (B, A, Z', Y', X') logits; ``class_scores`` (B, A, C, Z', Y', X') class logits
            (softmax over C); ``offset_zyx`` (B, A, 3, Z', Y', X') centre offsets in cell units, in
            (-offset_bound, offset_bound); ``log_radius_ratio`` (B, A, Z', Y', X') log(radius / anchor radius).
        """
        if image.ndim != 5 or any(n % self.total_stride for n in image.shape[2:]):
            raise ValueError(
                f"image must be (B, 1, Z, Y, X) with Z, Y, X multiples of {self.total_stride}, "
                f"got shape {tuple(image.shape)}"
            )
        x = self.tower(self._neck(self.backbone(image)))
        a = self.n_anchors
        return {
            "objectness": self.objectness_head(x),
            "class_scores": rearrange(self.class_head(x), "b (a c) z y x -> b a c z y x", a=a),
            "offset_zyx": self.offset_bound
            * torch.tanh(rearrange(self.offset_head(x), "b (a k) z y x -> b a k z y x", a=a, k=3)),
            "log_radius_ratio": self.radius_head(x),
        }
