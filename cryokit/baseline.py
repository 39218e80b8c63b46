"""The classical baseline: Difference-of-Gaussians blob detection at each class's size, no training.

For each particle type the robustly normalised tomogram (particles made bright) is filtered with a
DoG tuned to a blob radius (a fraction of the type's catalog radius); local maxima
(``cryokit.postprocess``) are candidates scored by the DoG response. Each type picks independently
(a blob may be claimed by several types: with beta = 4 a false positive costs far less than a miss).
``calibrate`` chooses, per type, the blob radius and the threshold that maximise the type's F-beta on
training runs; ``predict`` applies them to other runs.

It fails where the real data makes blob detection fail: types of similar size answer the same blob,
clutter (unlabelled proteins, vesicles, gold) of a type's size gives false positives, faint types sink
in the noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import scipy.ndimage
from tqdm.auto import tqdm

from cryokit.coords import radius_angstrom_to_voxels
from cryokit.io.source import DataSource
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog
from cryokit.postprocess import empty_scored_picks, maps_to_picks
from cryokit.thresholds import threshold_curves

__all__ = [
    "BaselineConfig",
    "Calibration",
    "normalise_robust",
    "dog_maps",
    "detect_candidates",
    "calibrate_candidates",
    "calibrate",
    "predict_run",
    "predict",
]


@dataclass(frozen=True)
class BaselineConfig:
    """Knobs of the DoG baseline.

    Attributes:
        tomo_type: which tomogram to read.
        level: multiscale level (1 = 20 A voxels; 0 is slower, 2 too coarse for apo-ferritin).
        polarity: -1 if particles are darker than the background (cryo-ET contrast), +1 if brighter.
        body_fractions: blob radii tried by ``calibrate``, as fractions of the catalog radius (hollow
            particles answer best at a larger radius, where the blur fills their hole).
        dog_ratio: ratio of the DoG's two Gaussian widths.
        nms_radius_fraction: peaks closer than this fraction of the catalog radius collapse.
        percentiles: (low, high) percentiles of the robust normalisation.
        max_candidates: candidates kept per class and run before thresholding (the strongest).
        beta: F-beta's beta used for calibration (the competition's 4).
    """

    tomo_type: str = "denoised"
    level: int = 1
    polarity: float = -1.0
    body_fractions: tuple[float, ...] = (0.5, 0.8, 1.1)
    dog_ratio: float = 1.6
    nms_radius_fraction: float = 0.8
    percentiles: tuple[float, float] = (1.0, 99.0)
    max_candidates: int = 1500
    beta: float = 4.0

    def __post_init__(self) -> None:
        if self.polarity not in (-1, 1):
            raise ValueError(f"polarity must be -1 or +1, got {self.polarity!r}")
        if not self.body_fractions or not all(0 < f <= 2 for f in self.body_fractions):
            raise ValueError(f"body_fractions must be fractions in (0, 2], got {self.body_fractions!r}")
        if self.dog_ratio <= 1:
            raise ValueError(f"dog_ratio must be > 1, got {self.dog_ratio!r}")
        if not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise ValueError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {self.percentiles!r}")
        if self.max_candidates < 1 or self.nms_radius_fraction <= 0:
            raise ValueError(
                f"max_candidates must be >= 1 and nms_radius_fraction > 0, got "
                f"{self.max_candidates!r}, {self.nms_radius_fraction!r}"
            )


@dataclass(frozen=True)
class Calibration:
    """What ``calibrate`` learns per particle type: blob radius fraction, threshold, training F-beta.

    A threshold of ``inf`` means the type is never predicted (it had no references or no hit).
    """

    thresholds: dict[str, float]
    body_fractions: dict[str, float]
    train_fbeta: dict[str, float] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """One row per type: particle_type, body_fraction, threshold, train_fbeta."""
        return pd.DataFrame(
            [
                (n, self.body_fractions[n], self.thresholds[n], self.train_fbeta.get(n, float("nan")))
                for n in self.thresholds
            ],
            columns=["particle_type", "body_fraction", "threshold", "train_fbeta"],
        )


def normalise_robust(volume_zyx: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """(volume - median) / (p_high - p_low) as float32; a constant volume gives zeros."""
    volume_zyx = np.asarray(volume_zyx, dtype=np.float32)
    low, median, high = np.percentile(volume_zyx[::2, ::2, ::2], [percentiles[0], 50.0, percentiles[1]])
    out = volume_zyx - np.float32(median)
    return out / np.float32(high - low) if high > low else np.zeros_like(out)


def dog_maps(
    volume_zyx: np.ndarray,
    voxel_spacing_angstrom_zyx,
    body_fractions: Mapping[str, float],
    config: BaselineConfig = BaselineConfig(),
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> np.ndarray:
    """(C, Z, Y, X) DoG responses of the normalised volume, one per type in ``body_fractions``.

    A solid ball of radius ``r`` answers a Laplacian of Gaussian most strongly at ``sigma = r / sqrt(3)``;
    the DoG ``G(sigma) - G(ratio * sigma)`` approximates it with the same normalisation at every scale.
    """
    blobs = normalise_robust(volume_zyx, config.percentiles) * np.float32(config.polarity)
    smoothed: dict[float, np.ndarray] = {}

    def gaussian(sigma: float) -> np.ndarray:
        if sigma not in smoothed:
            smoothed[sigma] = scipy.ndimage.gaussian_filter(blobs, sigma, mode="nearest")
        return smoothed[sigma]

    maps = []
    for name, fraction in body_fractions.items():
        radius = fraction * radius_angstrom_to_voxels(catalog.get(name).radius_angstrom, voxel_spacing_angstrom_zyx)
        sigma = round(radius / math.sqrt(3), 2)
        maps.append(gaussian(sigma) - gaussian(round(sigma * config.dog_ratio, 2)))
    return np.stack(maps)


def detect_candidates(
    volume_zyx: np.ndarray,
    voxel_spacing_angstrom_zyx,
    run: str,
    body_fractions: Mapping[str, float] | None = None,
    config: BaselineConfig = BaselineConfig(),
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> pd.DataFrame:
    """DoG peaks of one volume (the ``max_candidates`` strongest per type and radius), scored by response.

    Args:
        body_fractions: blob radius per type; None tries every ``config.body_fractions`` for every type.

    Returns:
        Picks (experiment, particle_type, x, y, z in Angstrom, score) plus a ``body_fraction`` column.
    """
    settings = (
        [body_fractions]
        if body_fractions is not None
        else [{name: f for name in catalog.names} for f in config.body_fractions]
    )
    frames = []
    for fractions in settings:
        maps = dog_maps(volume_zyx, voxel_spacing_angstrom_zyx, fractions, config, catalog)
        floor = {name: float(np.quantile(m[::2, ::2, ::2], 0.99)) for name, m in zip(fractions, maps)}
        picks = maps_to_picks(
            maps,
            list(fractions),
            voxel_spacing_angstrom_zyx,
            run,
            floor,
            radius_fraction=config.nms_radius_fraction,
            catalog=catalog,
        )
        picks = picks.groupby("particle_type", sort=False).head(config.max_candidates)
        frames.append(picks.assign(body_fraction=picks["particle_type"].map(fractions).astype(float)))
    return pd.concat(frames, ignore_index=True)


def _run_candidates(source: DataSource, run: str, body_fractions, config: BaselineConfig) -> pd.DataFrame:
    tomogram = source.open_tomogram(run, config.tomo_type, config.level)
    return detect_candidates(
        tomogram.read(), tomogram.voxel_spacing_angstrom_zyx, run, body_fractions, config, source.catalog()
    )


def calibrate_candidates(
    candidates: pd.DataFrame,
    solution: pd.DataFrame,
    config: BaselineConfig,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> Calibration:
    """Per type, the blob radius and the exact F-beta-optimal threshold (``cryokit.thresholds``); a type
    without references or any hit gets ``inf`` (never predicted)."""
    best = {name: (0.0, math.inf, config.body_fractions[0]) for name in catalog.names}
    for fraction in config.body_fractions:
        rows = candidates[candidates["body_fraction"] == fraction].drop(columns="body_fraction")
        for name, curve in threshold_curves(rows, solution, beta=config.beta, catalog=catalog).items():
            threshold, fbeta = curve.best()
            if fbeta > best[name][0]:
                best[name] = (fbeta, threshold, fraction)
    return Calibration(
        {n: b[1] for n, b in best.items()}, {n: b[2] for n, b in best.items()}, {n: b[0] for n, b in best.items()}
    )


def calibrate(
    source: DataSource,
    runs: Iterable[str] | None = None,
    config: BaselineConfig = BaselineConfig(),
    progress: bool = True,
) -> Calibration:
    """Blob radius and threshold per type, F-beta-optimal on the picks of training runs."""
    runs = list(runs) if runs is not None else source.list_runs()
    candidates = pd.concat(
        [
            _run_candidates(source, run, None, config)
            for run in tqdm(runs, desc="calibrating", unit="run", disable=not progress)
        ],
        ignore_index=True,
    )
    return calibrate_candidates(candidates, source.read_solution(runs), config, source.catalog())


def predict_run(
    source: DataSource, run: str, calibration: Calibration, config: BaselineConfig = BaselineConfig()
) -> pd.DataFrame:
    """Picks of one run (experiment, particle_type, x, y, z in Angstrom, score) with a calibration."""
    used = {name: f for name, f in calibration.body_fractions.items() if math.isfinite(calibration.thresholds[name])}
    if not used:
        return empty_scored_picks()
    candidates = _run_candidates(source, run, used, config)
    cut = candidates["particle_type"].map(calibration.thresholds).astype(float)
    return candidates[candidates["score"] >= cut].drop(columns="body_fraction").reset_index(drop=True)


def predict(
    source: DataSource,
    calibration: Calibration,
    runs: Iterable[str] | None = None,
    config: BaselineConfig = BaselineConfig(),
    progress: bool = True,
) -> pd.DataFrame:
    """Picks of several runs (all runs of the source by default)."""
    runs = list(runs) if runs is not None else source.list_runs()
    frames = [
        predict_run(source, run, calibration, config)
        for run in tqdm(runs, desc="baseline", unit="run", disable=not progress)
    ]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else empty_scored_picks()
