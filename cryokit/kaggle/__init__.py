"""Kaggle: the self-contained inference notebook (``notebook``), what it packs (``embedding``), what it
runs (``runtime``, with the time-budget guard of ``budget``), and the upload folders (``bundle``)."""

from cryokit._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "cryokit.kaggle.notebook": ("build_notebook", "NOTEBOOK_SOURCE", "DEFAULT_NOTEBOOK"),
        "cryokit.kaggle.bundle": ("bundle", "Bundle", "kernel_metadata", "dataset_metadata"),
        "cryokit.kaggle.runtime": (
            "predict_submission",
            "SubmissionReport",
            "resolve_checkpoints",
            "resolve_thresholds",
        ),
        "cryokit.kaggle.budget": ("InferencePlan", "TimeBudget", "degradation_ladder"),
    },
    globals(),
)
