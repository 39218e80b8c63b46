"""Tuning: Optuna studies over ``cryokit.training.fit`` (``study``) and their search space (``space``)."""

from cryokit._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "cryokit.tuning.study": ("run_study", "open_storage", "make_pruner", "best_config", "write_best_config"),
        "cryokit.tuning.space": ("SEARCH_SPACE", "SearchSpace", "ParamSpec", "default_space", "load_space"),
    },
    globals(),
)
