"""YOLO3D: output shapes per case, bad arguments, the low objectness prior, gradients into the backbone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cryokit.models.detection_coder import DETECTOR_OUTPUTS as DETECTION_OUTPUT_KEYS
from cryokit.models.detector import DETECTOR_OUTPUTS, YOLO3D
from cryokit.models.resnet3d import medicalnet_resnet18


class TinyBackbone(nn.Module):
    """A fast stand-in with MedicalNet's feature names and strides but few channels."""

    feature_channels = {"stem": 4, "layer1": 6, "layer2": 8, "layer3": 8}
    feature_strides = {"stem": 2, "layer1": 4, "layer2": 8, "layer3": 8}
    total_stride = 8

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv3d(1, 4, 3, stride=2, padding=1)
        self.layer1 = nn.Conv3d(4, 6, 3, stride=2, padding=1)
        self.layer2 = nn.Conv3d(6, 8, 3, stride=2, padding=1)
        self.layer3 = nn.Conv3d(8, 8, 3, padding=2, dilation=2)

    def forward(self, image):
        stem = self.stem(image)
        layer1 = self.layer1(stem)
        layer2 = self.layer2(layer1)
        return {"stem": stem, "layer1": layer1, "layer2": layer2, "layer3": self.layer3(layer2)}


CASES = [  # (kwargs, input shape, (B, A, C, Z', Y', X'))
    ({"n_classes": 6, "anchors_radius_voxels": (3.1, 4.5, 6.9)}, (2, 1, 16, 32, 24), (2, 3, 6, 4, 8, 6)),
    ({"n_classes": 2, "anchors_radius_voxels": (5.0,), "stride": 8}, (1, 1, 16, 16, 16), (1, 1, 2, 2, 2, 2)),
    (
        {"n_classes": 6, "anchors_radius_voxels": (3.0, 6.0), "stride": 2, "head_depth": 0},
        (1, 1, 8, 16, 8),
        (1, 2, 6, 4, 8, 4),
    ),
    ({"n_classes": 1, "anchors_radius_voxels": (2.0,), "neck_channels": 5}, (2, 1, 8, 8, 16), (2, 1, 1, 2, 2, 4)),
]


@pytest.mark.parametrize("kwargs, input_shape, expected", CASES)
def test_output_shapes(kwargs, input_shape, expected):
    b, a, c, *grid = expected
    out = YOLO3D(backbone=TinyBackbone(), **kwargs)(torch.randn(input_shape))
    assert tuple(out) == DETECTOR_OUTPUTS == DETECTION_OUTPUT_KEYS
    assert out["objectness"].shape == (b, a, *grid)
    assert out["class_scores"].shape == (b, a, c, *grid)
    assert out["offset_zyx"].shape == (b, a, 3, *grid)
    assert out["log_radius_ratio"].shape == (b, a, *grid)


def test_medicalnet_backbone_prior_and_gradients():
    net = YOLO3D(6, (3.1, 4.5, 6.9), backbone=medicalnet_resnet18(), offset_bound=0.75)
    out = net(torch.randn(1, 1, 16, 16, 16))
    assert out["class_scores"].shape == (1, 3, 6, 4, 4, 4)
    # Low prior: bias -4 and near-zero head weights, sigmoid(-4) = 0.018.
    assert torch.sigmoid(out["objectness"]).mean().item() == pytest.approx(0.018, abs=0.004)
    assert out["offset_zyx"].abs().max() < 0.75
    sum(o.sum() for o in out.values()).backward()
    assert net.backbone.conv1.weight.grad is not None and net.backbone.conv1.weight.grad.abs().sum() > 0
    assert net.backbone.layer4[1].conv2.weight.grad.abs().sum() > 0


def test_anchor_radii_are_kept():
    net = YOLO3D(6, [3.0, 4.0], backbone=TinyBackbone())
    assert net.anchors_radius_voxels.tolist() == [3.0, 4.0] and net.n_anchors == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_classes": 0, "anchors_radius_voxels": (3.0,)}, "n_classes"),
        ({"n_classes": 6, "anchors_radius_voxels": ()}, "anchors_radius_voxels"),
        ({"n_classes": 6, "anchors_radius_voxels": (3.0, -1.0)}, "anchors_radius_voxels"),
        ({"n_classes": 6, "anchors_radius_voxels": (3.0,), "stride": 16}, r"stride=16 .* available: \[2, 4, 8\]"),
        ({"n_classes": 6, "anchors_radius_voxels": (3.0,), "offset_bound": 0.0}, "offset_bound"),
        ({"n_classes": 6, "anchors_radius_voxels": (3.0,), "backbone": nn.Conv3d(1, 2, 1)}, "feature_channels"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    kwargs.setdefault("backbone", TinyBackbone())
    with pytest.raises(ValueError, match=match):
        YOLO3D(**kwargs)


def test_input_not_multiple_of_total_stride_raises():
    net = YOLO3D(6, (3.0,), backbone=TinyBackbone())
    with pytest.raises(ValueError, match=r"multiples of 8, got shape \(1, 1, 16, 20, 16\)"):
        net(torch.zeros(1, 1, 16, 20, 16))


def test_outputs_pair_with_encoded_targets_loss_and_decoding():
    from cryokit.losses import CompositeDetectionLoss
    from cryokit.models.anchors import anchor_radii_voxels
    from cryokit.models.detection_coder import decode_detections, encode_detection_targets

    anchors = anchor_radii_voxels((10.0, 10.0, 10.0))
    items = [
        encode_detection_targets(
            (16, 32, 32), [[5.2, 9.9, 20.4], [12.0, 3.1, 30.6]], [0, 3], [6.0, 15.0], anchors, stride=4
        ).as_tensors()
        for _ in range(2)
    ]
    targets = {key: torch.stack([item[key] for item in items]) for key in items[0]}
    net = YOLO3D(6, anchors, backbone=TinyBackbone())
    outputs = net(torch.randn(2, 1, 16, 32, 32))
    for key in ("objectness", "offset_zyx", "log_radius_ratio"):
        assert outputs[key].shape == targets[key].shape, key
    loss = CompositeDetectionLoss()(outputs, targets)
    loss.total.backward()
    assert torch.isfinite(loss.total) and loss.terms["box"] > 0
    maps = {key: value[0].detach() for key, value in outputs.items()}
    found = decode_detections(**maps, stride=4, anchors_voxels=anchors, threshold=0.0, from_logits=True)
    assert found.centres_voxel_zyx.shape == (3 * 4 * 8 * 8, 3)
