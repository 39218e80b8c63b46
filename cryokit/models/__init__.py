"""Networks, one per module: MedicalNet 3D ResNet backbone, YOLO-style detector (and the U-Net builder)."""

from __future__ import annotations

from cryokit.models.detector import DETECTOR_OUTPUTS, YOLO3D
from cryokit.models.resnet3d import LoadReport, MedicalNetResNet, load_medicalnet_weights, medicalnet_resnet18

__all__ = [
    "DETECTOR_OUTPUTS",
    "YOLO3D",
    "LoadReport",
    "MedicalNetResNet",
    "load_medicalnet_weights",
    "medicalnet_resnet18",
]
