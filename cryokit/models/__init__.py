"""Networks and what they need: one network per module, the detector's anchors and coding, the builder.

``unet`` (MONAI U-Nets), ``resnet3d`` (MedicalNet's 3D ResNet-18 and its weight loader), ``detector``
(YOLO3D, a pure forward pass) with ``anchors`` and ``detection_coder`` (channel layout, targets, decoding)
beside it, and ``build`` (configuration -> network, loss, task, windows).
"""

from cryokit._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "cryokit.models.unet": ("UNET_ARCHITECTURES", "segmentation_unet"),
        "cryokit.models.resnet3d": ("MedicalNetResNet", "medicalnet_resnet18", "LoadReport", "load_medicalnet_weights"),
        "cryokit.models.detector": ("YOLO3D",),
        "cryokit.models.anchors": (
            "ANCHOR_GROUPS",
            "anchor_radii_angstrom",
            "anchor_radii_voxels",
            "class_anchor_indices",
        ),
        "cryokit.models.detection_coder": (
            "DETECTOR_OUTPUTS",
            "DetectionLayout",
            "DetectionTargets",
            "encode_detection_targets",
            "Detections",
            "decode_detections",
        ),
        "cryokit.models.build": ("build_model", "build_loss", "build_task", "build_model_and_task"),
    },
    globals(),
)
