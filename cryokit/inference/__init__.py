"""Inference: device and precision, sliding windows, test-time augmentation, whole-run prediction.

``device`` (CUDA or CPU, autocast) -> ``sliding_window`` (MONAI's inferer on the cell grid) -> ``tta``
(flips and turns, undone on the maps) -> ``predict`` (one model's maps, an ensemble's picks, every run of
a split) -> ``shard`` (the runs over devices and torchrun ranks); ``speed`` holds the speed switches and
the arithmetic that costs a tomogram.
"""

from cryokit._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "cryokit.inference.device": (
            "PRECISIONS",
            "resolve_device",
            "native_bf16",
            "resolve_precision",
            "autocast_precision",
            "autocast",
        ),
        "cryokit.inference.sliding_window": ("SlidingWindow", "pad_to_stride", "sliding_window_maps"),
        "cryokit.inference.tta": ("TTA_CHOICES", "tta_transforms"),
        "cryokit.inference.predict": (
            "predict_maps",
            "predict_volume_picks",
            "predict_run",
            "predict_runs",
            "predict_each_run",
            "ensemble_groups",
            "RunResults",
            "Timer",
        ),
        "cryokit.inference.shard": (
            "shard_runs",
            "inference_devices",
            "distributed_rank_world",
            "run_shards",
            "run_sharded",
            "merge_run_results",
            "gather_run_results",
        ),
        "cryokit.inference.speed": ("InferenceOptions", "prepare_for_inference", "count_windows", "forward_flops"),
    },
    globals(),
)
