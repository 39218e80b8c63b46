"""The README's main job (``pipeline``), the training notebooks' report (``notebooks``), and tiny data and
configs that run in seconds (``fixtures``)."""

from cryokit._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "cryokit.demo.pipeline": ("DemoConfig", "DemoResult", "demo_training_config", "run_demo"),
        "cryokit.demo.notebooks": (
            "TrainingReport",
            "train_and_report",
            "simulate_for_notebook",
            "notebook_training_config",
        ),
        "cryokit.demo.fixtures": ("tiny_dataset", "tiny_config", "TINY_SPACE", "demo_solution", "demo_candidates"),
    },
    globals(),
)
