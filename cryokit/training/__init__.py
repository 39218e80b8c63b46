"""Training: the ``fit`` loop (one screen, DDP-aware), self-describing checkpoints, MLflow tracking."""

from cryokit._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "cryokit.training.loop": ("fit", "evaluate", "FitResult", "Evaluation", "lr_at", "seed_everything"),
        "cryokit.training.checkpoint": ("save_checkpoint", "load_checkpoint", "load_model", "LoadedModel"),
        "cryokit.training.tracking": ("Tracker", "NullTracker", "open_tracker"),
    },
    globals(),
)
