"""Figures, one module per topic; every function returns a matplotlib Figure (and saves a PNG when
given ``path``). ``eda``: what the data looks like; ``training``: curves, scores, predictions;
``tuning``: Optuna studies and threshold curves (imports Optuna only when called)."""

from cryokit.plots._common import DPI, finish, save_figure, slice_extent_angstrom
from cryokit.plots.eda import *  # noqa: F401,F403
from cryokit.plots.eda import __all__ as _eda
from cryokit.plots.training import *  # noqa: F401,F403
from cryokit.plots.training import __all__ as _training
from cryokit.plots.tuning import *  # noqa: F401,F403
from cryokit.plots.tuning import __all__ as _tuning

__all__ = ["DPI", "finish", "save_figure", "slice_extent_angstrom", *_eda, *_training, *_tuning]
