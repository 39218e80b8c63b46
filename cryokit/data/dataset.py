"""Training patches read lazily from zarr, augmented, with the targets a task asks for.

Every item is a pure function of ``(seed, epoch, index)``: the same seed gives the same batches with
any number of loader workers. Call ``set_epoch`` before iterating a new epoch (with
``persistent_workers=True`` the workers keep the epoch they started with, so leave that off).
Tomograms are opened lazily in each worker process; ``__init__`` reads only metadata, picks and the
intensity statistics (a subsample of each tomogram, once), which travel to the workers with the dataset.
Each item reads only the context its drawn augmentation needs (``AugmentParams.margin_zyx``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cryokit.coords import angstrom_xyz_to_voxel_zyx, as_spacing_zyx, outside_extent
from cryokit.data.augment import Augmenter, Sample, apply_augmentation
from cryokit.data.normalise import IntensityStats, read_region, tomogram_intensity_stats
from cryokit.data.sampling import (
    choose_particle,
    class_sampling_weights,
    particle_patch_origin,
    picks_in_patch,
    random_patch_origin,
)
from cryokit.data.targets import TargetRenderer, class_radii_voxels
from cryokit.io.source import DataSource
from cryokit.io.tomogram import Tomogram
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog

__all__ = ["split_runs", "PatchDataset", "collate"]

log = logging.getLogger(__name__)


def split_runs(all_runs: Sequence[str], val_runs: Sequence[str]) -> tuple[list[str], list[str]]:
    """(train runs, validation runs): whole runs held out; raises naming unknown validation runs."""
    all_runs, val_runs = list(all_runs), list(val_runs)
    unknown = sorted(set(val_runs) - set(all_runs))
    if unknown:
        raise ValueError(f"val_runs {unknown} are not among the runs {all_runs}")
    train = [run for run in all_runs if run not in set(val_runs)]
    if not train:
        raise ValueError(f"val_runs {val_runs} leave no run to train on")
    return train, [run for run in all_runs if run in set(val_runs)]


@dataclass(frozen=True)
class _Run:
    name: str
    shape_zyx: tuple[int, int, int]
    voxel_spacing_angstrom_zyx: np.ndarray
    centres_voxel_zyx: np.ndarray  # (N, 3) tomogram voxels
    class_indices: np.ndarray  # (N,)
    stats: dict[str, IntensityStats]  # per tomo type, computed once here, shipped to the workers


class PatchDataset(Dataset):
    """``patches_per_epoch`` random training patches per epoch from whole runs.

    Args:
        source: where the runs, tomograms and picks are (``cryokit.io.source``).
        runs: the runs to sample from (see ``split_runs``).
        size_zyx: patch size in voxels of the level.
        patches_per_epoch: items per epoch.
        positive_share: share of patches centred near a particle (the rest are placed uniformly).
        class_oversampling: extra weight per class name for particle-centred patches (others weigh 1).
        jitter_fraction: particle-centred patches are shifted by up to this share of the size per axis.
        target: renders a patch's target from its picks (``cryokit.data.targets.BallTargets`` or
            ``GaussianTargets``, ``cryokit.models.detection_coder.DetectionTargetEncoder``).
        augmenter: augmentation strengths, or None for plain patches.
        tomo_type, level: which tomograms. ``tomo_type`` may name several (``("denoised", "wbp")``):
            each patch then comes from one of them, drawn uniformly, so the network sees every
            reconstruction of the same particles (each tomogram normalised with its own statistics).
        seed: base seed of every item.

    Items are dicts: ``image`` (1, Z, Y, X) float32; ``target`` as ``target`` renders it (ball labels,
    heatmaps, or a dict of detection grids); ``centres_voxel_zyx`` (N, 3) float32 and ``class_indices``
    (N,) int64 of the picks in the patch (up to one particle radius outside it); ``run`` (str);
    ``origin_zyx`` (3,) int64 tomogram voxel of the patch's first voxel before augmentation.
    """

    def __init__(
        self,
        source: DataSource,
        runs: Sequence[str],
        *,
        size_zyx: Sequence[int],
        patches_per_epoch: int,
        positive_share: float,
        class_oversampling: Mapping[str, float],
        jitter_fraction: float,
        target: TargetRenderer,
        augmenter: Augmenter | None = None,
        tomo_type: str | Sequence[str] = "denoised",
        level: int = 0,
        seed: int = 0,
        catalog: ParticleCatalog = COMPETITION_CATALOG,
    ) -> None:
        if not runs:
            raise ValueError("runs must name at least one run")
        if any(int(n) % target.stride for n in size_zyx):
            raise ValueError(f"patch size {tuple(size_zyx)} must be a multiple of the target stride {target.stride}")
        if patches_per_epoch < 1 or not 0 <= positive_share <= 1:
            raise ValueError(
                f"need patches_per_epoch >= 1 and positive_share in [0, 1], got {patches_per_epoch}, {positive_share}"
            )
        self.tomo_types = (tomo_type,) if isinstance(tomo_type, str) else tuple(tomo_type)
        if not self.tomo_types:
            raise ValueError("tomo_type must name at least one tomo type")
        self.source, self.level = source, level
        self.patches_per_epoch, self.positive_share, self.jitter_fraction = (
            patches_per_epoch,
            positive_share,
            jitter_fraction,
        )
        self.target = target
        self.augmenter, self.seed, self.epoch = augmenter, seed, 0
        self.size_zyx = np.asarray(size_zyx, dtype=np.int64)
        self.catalog = catalog
        self.class_weights = class_sampling_weights(class_oversampling, catalog)
        self.runs = [self._describe(run, picks) for run, picks in zip(runs, self._picks(list(runs)))]
        self._particle_run = np.concatenate([np.full(len(r.class_indices), i) for i, r in enumerate(self.runs)])
        self._particle_row = np.concatenate([np.arange(len(r.class_indices)) for r in self.runs])
        self._particle_class = np.concatenate([r.class_indices for r in self.runs])
        volumes = np.array([np.prod(r.shape_zyx, dtype=np.float64) for r in self.runs])
        self._run_weights = volumes / volumes.sum()
        self._tomograms: dict[tuple[str, str], Tomogram] = {}
        self._pid = -1

    def _picks(self, runs: list[str]) -> list[Any]:
        picks = self.source.read_picks(runs)
        return [picks[picks["experiment"] == run] for run in runs]

    def _describe(self, run: str, picks) -> _Run:
        tomograms = {t: self.source.open_tomogram(run, t, self.level) for t in self.tomo_types}
        tomogram = tomograms[self.tomo_types[0]]
        shapes = {t: tomo.shape_zyx for t, tomo in tomograms.items()}
        if len(set(shapes.values())) > 1:
            raise ValueError(f"run {run}: the tomo types' shapes differ at level {self.level}: {shapes}")
        spacing = as_spacing_zyx(tomogram.voxel_spacing_angstrom_zyx)
        outside = outside_extent(picks[["x", "y", "z"]].to_numpy(np.float64), tomogram.extent_angstrom_xyz)
        if outside.any():
            counts = picks["particle_type"][outside].value_counts().sort_index()
            log.warning(
                "%s run %s: %d of %d picks lie outside the tomogram (negative or beyond %s Angstrom x, y, z; "
                "picks files %s) and are left out of training",
                self.source.describe(),
                run,
                int(outside.sum()),
                len(picks),
                "x".join(f"{v:.0f}" for v in tomogram.extent_angstrom_xyz),
                ", ".join(f"{name}.json: {n}" for name, n in counts.items()),
            )
            picks = picks[~outside]
        if picks.empty:
            centres, classes = np.zeros((0, 3)), np.zeros(0, np.int64)
        else:
            centres = angstrom_xyz_to_voxel_zyx(picks[["x", "y", "z"]].to_numpy(np.float64), spacing)
            unknown = sorted(set(picks["particle_type"]) - set(self.catalog.names))
            if unknown:
                raise ValueError(
                    f"{self.source.describe()}: run {run} has picks of {unknown}, not in the catalog "
                    f"({self.catalog.source}: {', '.join(self.catalog.names)})"
                )
            classes = np.array([self.catalog.names.index(n) for n in picks["particle_type"]], dtype=np.int64)
        stats = {t: tomogram_intensity_stats(tomo) for t, tomo in tomograms.items()}
        return _Run(run, tomogram.shape_zyx, spacing, centres, classes, stats)

    def set_epoch(self, epoch: int) -> None:
        """Items of a new epoch (call before creating the epoch's iterator)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.patches_per_epoch)

    def _tomogram(self, run: str, tomo_type: str) -> Tomogram:
        if self._pid != os.getpid():  # a fresh worker process: open its own stores
            self._tomograms, self._pid = {}, os.getpid()
        if (run, tomo_type) not in self._tomograms:
            self._tomograms[run, tomo_type] = self.source.open_tomogram(run, tomo_type, self.level)
        return self._tomograms[run, tomo_type]

    def _choose(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """(run position, patch origin): near a particle with probability ``positive_share``."""
        particle = None
        if rng.random() < self.positive_share:
            particle = choose_particle(rng, self._particle_class, self.class_weights)
        if particle is None:
            run_index = int(rng.choice(len(self.runs), p=self._run_weights))
            return run_index, random_patch_origin(rng, self.runs[run_index].shape_zyx, self.size_zyx)
        run = self.runs[self._particle_run[particle]]
        centre = run.centres_voxel_zyx[self._particle_row[particle]]
        origin = particle_patch_origin(rng, run.shape_zyx, self.size_zyx, centre, self.jitter_fraction)
        return int(self._particle_run[particle]), origin

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} patches")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        run_index, origin = self._choose(rng)
        run = self.runs[run_index]
        tomo_type = self.tomo_types[0]
        if len(self.tomo_types) > 1:  # one tomo type draws nothing: a single-type dataset's items stay as they were
            tomo_type = self.tomo_types[int(rng.integers(len(self.tomo_types)))]
        params = None
        if self.augmenter is not None:
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            params = self.augmenter.draw(generator, tuple(self.size_zyx))
        margin = np.zeros(3, np.int64) if params is None else params.margin_zyx()  # context this draw needs
        region_origin, region_size = origin - margin, self.size_zyx + 2 * margin
        radii = class_radii_voxels(run.voxel_spacing_angstrom_zyx)
        centres, classes = picks_in_patch(
            run.centres_voxel_zyx, run.class_indices, region_origin, region_size, radii[run.class_indices]
        )
        image = read_region(self._tomogram(run.name, tomo_type), region_origin, region_size, stats=run.stats[tomo_type])
        sample = Sample(torch.from_numpy(image), centres, classes)
        if params is not None:
            sample = apply_augmentation(sample, params)
        centres, classes = picks_in_patch(
            sample.centres_voxel_zyx, sample.class_indices, (0, 0, 0), self.size_zyx, radii[sample.class_indices]
        )
        return {
            "image": sample.image_zyx[None].float().contiguous(),
            "target": self.target(tuple(self.size_zyx), centres, classes, run.voxel_spacing_angstrom_zyx),
            "centres_voxel_zyx": torch.as_tensor(centres, dtype=torch.float32),
            "class_indices": torch.as_tensor(classes, dtype=torch.int64),
            "run": run.name,
            "tomo_type": tomo_type,
            "origin_zyx": torch.as_tensor(origin, dtype=torch.int64),
        }


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack ``image``, ``target`` (per key for detection) and ``origin_zyx`` into batch tensors (B, ...);
    keep ``centres_voxel_zyx``, ``class_indices`` and ``run`` as lists of length B."""
    first = items[0]["target"]
    if isinstance(first, dict):
        target = {key: torch.stack([item["target"][key] for item in items]) for key in first}
    else:
        target = torch.stack([item["target"] for item in items])
    return {
        "image": torch.stack([item["image"] for item in items]),
        "target": target,
        "centres_voxel_zyx": [item["centres_voxel_zyx"] for item in items],
        "class_indices": [item["class_indices"] for item in items],
        "run": [item["run"] for item in items],
        "origin_zyx": torch.stack([item["origin_zyx"] for item in items]),
    }
