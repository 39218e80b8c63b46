"""Test-time augmentation: flips and 90 degree turns of the volume, undone on the maps.

Each transform is undone on the maps, and on a task's vector channels (the detector's offsets) as well,
so every transform's maps line up with the tomogram before they are averaged.

The choice can differ between the groups of an ensemble (``group_ttas``): on held-out simulated runs flips
lifted every U-Net tried and lowered the detector (docs/BENCHMARKS.md, "Test-time augmentation").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["TTA_CHOICES", "GridTransform", "group_ttas", "tta_transforms"]

TTA_CHOICES = ("none", "flips", "flips+rot90")


@dataclass(frozen=True)
class GridTransform:
    """Flip some of the axes (0 = z, 1 = y, 2 = x) of a (Z, Y, X) grid, then turn ``k`` times by 90
    degrees in the (y, x) plane (``torch.rot90`` over dims (1, 2))."""

    flips: tuple[int, ...] = ()
    turns: int = 0

    def apply(self, grid: torch.Tensor) -> torch.Tensor:
        """(..., Z, Y, X) -> transformed grid."""
        if self.flips:
            grid = grid.flip([a - 3 for a in self.flips])
        return torch.rot90(grid, self.turns, dims=(-2, -1)) if self.turns else grid

    def undo(self, maps: torch.Tensor, vector_channels: Sequence[Sequence[int]]) -> torch.Tensor:
        """(C, z, y, x) maps of the transformed grid -> maps in the original frame, vectors included."""
        maps = torch.rot90(maps, -self.turns, dims=(-2, -1)) if self.turns else maps
        maps = maps.flip([a - 3 for a in self.flips]) if self.flips else maps
        if vector_channels:
            maps = maps.clone()
            for cz, cy, cx in vector_channels:
                dy, dx = maps[cy].clone(), maps[cx].clone()
                # rot90 by k maps (y, x) displacements like the grid; undo by turning them back.
                for _ in range(self.turns % 4):
                    dy, dx = dx, -dy
                maps[cy], maps[cx] = dy, dx
                for axis in self.flips:
                    channel = (cz, cy, cx)[axis]
                    maps[channel] = -maps[channel]
        return maps


def _check_choice(tta: str) -> None:
    if tta not in TTA_CHOICES:
        raise ValueError(f"tta must be one of {TTA_CHOICES}, got {tta!r}")


def tta_transforms(tta: str) -> list[GridTransform]:
    """The transforms of a TTA choice: "none" (1), "flips" (8 axis-flip combinations), "flips+rot90" (16)."""
    _check_choice(tta)
    if tta == "none":
        return [GridTransform()]
    flips = [tuple(a for a in range(3) if mask >> a & 1) for mask in range(8)]
    turns = (0, 1) if tta == "flips+rot90" else (0,)
    return [GridTransform(f, k) for k in turns for f in flips]


def group_ttas(tta: str | Sequence[str], n_groups: int) -> tuple[str, ...]:
    """One TTA choice per ensemble group: a single choice for every group, or a sequence, one per group in
    order (``ensemble_groups`` order: first-seen kind first)."""
    if not isinstance(tta, str) and not (isinstance(tta, Sequence) and all(isinstance(t, str) for t in tta)):
        raise ValueError(f"tta must be a choice of {TTA_CHOICES} or a list of them, got {tta!r}")
    ttas = (tta,) * n_groups if isinstance(tta, str) else tuple(tta)
    for choice in ttas:
        _check_choice(choice)
    if len(ttas) != n_groups:
        raise ValueError(
            f"{len(ttas)} TTA choices ({', '.join(ttas)}) for {n_groups} group(s) of checkpoints: give one "
            "for all or one per group"
        )
    return ttas
