"""Augmentations that move a volume, its label map and its picks together.

An ``Augmenter`` holds the strength of every family; ``Augmenter.draw`` draws every random choice into
an ``AugmentParams`` (which also says how much context its geometry needs, ``margin_zyx``, so a reader
fetches no more than that), and ``apply_augmentation`` applies it; ``augment_sample`` does both. The
output patch is taken from the centre of a (larger) input region:

1. geometry: ``p = A (q - c_out + d(q)) + c_in`` maps output voxel ``q`` to input voxel ``p`` with a
   random rotation about a random axis and an isotropic zoom (``A``) and an elastic displacement field
   ``d`` (random control-point displacements, trilinear in between), all in one ``grid_sample``. Picks
   go the other way, ``q = c_out + A^-1 (p - c_in) - d(q)``, solved by fixed-point iteration (it
   converges while the field's gradient is below 1, true for smooth fields of a few voxels).
   Without rotation, zoom or elastic field the output is a plain centre crop.
2. exact voxel moves: flips per axis and 90 degree turns in the Y-X plane (``torch.flip``/``torch.rot90``).
3. appearance (``cryokit.data.appearance``): intensity (TorchIO's gamma, blur, bias field, noise; a linear
   ``v * (1 + a) + b``) and imaging (a random band-pass and an extra missing wedge in Fourier space).

Each family has a strength knob (``Augmenter``'s fields, which ``cryokit.config.AugmentConfig`` mirrors);
0 switches it off, and ``Augmenter()`` changes nothing. All randomness comes from the
``torch.Generator`` passed in, so a seed reproduces a sample. Written with torch's ``grid_sample``
rather than MONAI ``Affine``/``Rand3DElastic`` because the exact matrix and field are needed to move
the picks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cryokit.data.appearance import AppearanceParams, apply_appearance, draw_appearance

__all__ = [
    "Sample",
    "AugmentParams",
    "Augmenter",
    "apply_augmentation",
    "augment_sample",
]

_FIXED_POINT_ITERATIONS = 12


@dataclass(frozen=True)
class Sample:
    """A patch and what lies in it.

    Attributes:
        image_zyx: (Z, Y, X) float32 tensor.
        centres_voxel_zyx: (N, 3) float64 fractional voxel centres in this patch's frame.
        class_indices: (N,) int64 class index per centre.
        label_map_zyx: optional (Z, Y, X) int64 tensor moved with the image (nearest neighbour).
    """

    image_zyx: torch.Tensor
    centres_voxel_zyx: np.ndarray
    class_indices: np.ndarray
    label_map_zyx: torch.Tensor | None = None


def _uniform(generator: torch.Generator, low: float = 0.0, high: float = 1.0, n: int = 1) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def _has_geometry(augmenter: Augmenter) -> bool:
    return (augmenter.affine_p > 0 and (augmenter.rotate_degrees > 0 or augmenter.scale_fraction > 0)) or (
        augmenter.elastic_p > 0 and augmenter.elastic_magnitude_voxels > 0
    )


def _margin_bound_zyx(augmenter: Augmenter, size_zyx: Sequence[int]) -> np.ndarray:
    """(3,) int64 context needed on each side of a patch so rotations, zooms and the elastic field of
    ``augmenter`` never sample outside the input region (a bound over all draws; zeros when off)."""
    if not _has_geometry(augmenter):
        return np.zeros(3, dtype=np.int64)
    theta = math.radians(min(augmenter.rotate_degrees, 90.0))
    off_diagonal = math.sin(theta) + (1 - math.cos(theta)) / 2  # Rodrigues bound on |R_ij|, i != j
    zoom_out = 1 / (1 - min(augmenter.scale_fraction, 0.5))
    half = (np.asarray(size_zyx, dtype=np.float64) - 1) / 2
    elastic = 3 * augmenter.elastic_magnitude_voxels if augmenter.elastic_p > 0 else 0.0
    reach = zoom_out * (half + off_diagonal * (half.sum() - half) + elastic * math.sqrt(3))
    return (np.ceil(reach - half) + 1).astype(np.int64)


def _draw_matrix(augmenter: Augmenter, generator: torch.Generator) -> torch.Tensor | None:
    """(3, 3) float64 ``A`` (output offset -> input offset, zyx) or None for the identity."""
    if (augmenter.rotate_degrees <= 0 and augmenter.scale_fraction <= 0) or augmenter.affine_p <= 0:
        return None
    if float(_uniform(generator)) >= augmenter.affine_p:
        return None
    axis = torch.randn(3, generator=generator, dtype=torch.float64)
    axis = axis / axis.norm().clamp_min(1e-12)
    angle = math.radians(augmenter.rotate_degrees) * float(_uniform(generator, -1, 1))
    k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=torch.float64)
    rotation = torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)
    zoom = 1 + augmenter.scale_fraction * float(_uniform(generator, -1, 1))
    return rotation / zoom


def _draw_elastic(augmenter: Augmenter, generator: torch.Generator, out_size: Sequence[int]) -> torch.Tensor | None:
    """(1, 3, cz, cy, cx) float32 control-point displacements (output voxels, zyx) or None."""
    if augmenter.elastic_p <= 0 or augmenter.elastic_magnitude_voxels <= 0:
        return None
    if float(_uniform(generator)) >= augmenter.elastic_p:
        return None
    points = [max(2, math.ceil((n - 1) / augmenter.elastic_spacing_voxels) + 1) for n in out_size]
    displacements = torch.randn(1, 3, *points, generator=generator).clamp_(-3, 3)  # 3 sigma: a hard bound
    return augmenter.elastic_magnitude_voxels * displacements


def _field_at(field: torch.Tensor, points_zyx: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
    """Displacement (N, 3) at fractional output voxels (N, 3): the same trilinear function as
    ``F.interpolate(field, out_size, mode="trilinear", align_corners=True)`` on the voxel grid."""
    scale = torch.tensor([max(n - 1, 1) for n in out_size], dtype=points_zyx.dtype)
    grid = (2 * points_zyx / scale - 1).flip(-1).float().reshape(1, -1, 1, 1, 3)
    values = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return values.reshape(3, -1).T.to(points_zyx.dtype)


def _sampling_grid(matrix: torch.Tensor, field, c_in, c_out, in_size, out_size) -> torch.Tensor:
    """(1, Zo, Yo, Xo, 3) ``grid_sample`` grid (x, y, z in [-1, 1]) of ``p = A (q - c_out + d(q)) + c_in``.

    The normalisation to [-1, 1] and the zyx -> xyz flip are folded into the matrix, and the grid is a sum
    of three broadcast axis terms, which is several times faster than a matrix product per voxel. The
    elastic field is multiplied by the matrix on its control points (interpolation is linear, so this
    equals transforming the dense field).
    """
    to_unit = (2 / (torch.tensor(in_size, dtype=torch.float64) - 1).clamp_min(1)).diag()
    folded = (to_unit @ matrix).flip(0)  # rows: x, y, z of the grid
    shift = (to_unit @ c_in - 1).flip(0)
    axes = [torch.arange(n, dtype=torch.float64) - c for n, c in zip(out_size, c_out)]
    terms = [(axis[:, None] * folded[:, i]).float() for i, axis in enumerate(axes)]  # (n_i, 3)
    grid = terms[0][:, None, None] + terms[1][None, :, None] + (terms[2] + shift.float())[None, None]
    if field is not None:
        grid = grid + _upsample_field(torch.einsum("ij,bj...->bi...", folded.float(), field)[0], out_size)
    return grid[None]


def _linear_weights(n_out: int, n_in: int) -> torch.Tensor:
    """(n_out, n_in) weights of linear interpolation with ``align_corners=True``."""
    position = torch.linspace(0, n_in - 1, n_out, dtype=torch.float64)
    low = position.floor().clamp(max=n_in - 2).long()
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    weights[torch.arange(n_out), low] = 1 - (position - low)
    weights[torch.arange(n_out), low + 1] = position - low
    return weights.float()


def _upsample_field(coarse: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
    """(Zo, Yo, Xo, 3) trilinear upsampling (align_corners) of a (3, cz, cy, cx) field, one axis at a time:
    the same values as ``F.interpolate(..., mode="trilinear", align_corners=True)``, several times faster."""
    wz, wy, wx = (_linear_weights(n, c) for n, c in zip(out_size, coarse.shape[1:]))
    along_x = torch.einsum("cijk,xk->ijxc", coarse, wx)
    along_y = torch.einsum("ijxc,yj->iyxc", along_x, wy)
    return (wz @ along_y.reshape(along_y.shape[0], -1)).reshape(*out_size, 3)


def _resample(sample: Sample, params: AugmentParams) -> Sample:
    """Apply ``p = A (q - c_out + d(q)) + c_in`` to image and label map, and its inverse to the picks."""
    in_size, out_size, field = sample.image_zyx.shape, params.out_size_zyx, params.field
    c_out = (torch.tensor(out_size, dtype=torch.float64) - 1) / 2
    c_in = c_out + torch.tensor([(i - o) // 2 for i, o in zip(in_size, out_size)], dtype=torch.float64)
    matrix = torch.eye(3, dtype=torch.float64) if params.matrix is None else params.matrix
    grid = _sampling_grid(matrix, field, c_in, c_out, in_size, out_size)
    image = F.grid_sample(
        sample.image_zyx[None, None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )[0, 0]
    labels = None
    if sample.label_map_zyx is not None:
        labels = (
            F.grid_sample(
                sample.label_map_zyx[None, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=True
            )[0, 0]
            .round()
            .long()
        )
    points = torch.as_tensor(sample.centres_voxel_zyx, dtype=torch.float64).reshape(-1, 3)
    undeformed = (points - c_in) @ torch.linalg.inv(matrix).T + c_out
    moved = undeformed.clone()
    for _ in range(_FIXED_POINT_ITERATIONS if field is not None and len(points) else 0):
        moved = undeformed - _field_at(field, moved, out_size)
    return Sample(image, moved.numpy(), sample.class_indices, labels)


def _crop(sample: Sample, out_size: Sequence[int]) -> Sample:
    start = [(i - o) // 2 for i, o in zip(sample.image_zyx.shape, out_size)]
    window = tuple(slice(s, s + o) for s, o in zip(start, out_size))
    labels = None if sample.label_map_zyx is None else sample.label_map_zyx[window]
    return Sample(sample.image_zyx[window], sample.centres_voxel_zyx - np.asarray(start), sample.class_indices, labels)


def _flip_and_turn(sample: Sample, flips: tuple[bool, bool, bool], turns: int) -> Sample:
    image, labels, points = sample.image_zyx, sample.label_map_zyx, np.array(sample.centres_voxel_zyx, copy=True)
    sizes = image.shape
    for axis in np.flatnonzero(flips):
        image, points[:, axis] = image.flip(int(axis)), sizes[axis] - 1 - points[:, axis]
        labels = None if labels is None else labels.flip(int(axis))
    if turns and sizes[1] == sizes[2]:
        image = torch.rot90(image, turns, dims=(1, 2))
        labels = None if labels is None else torch.rot90(labels, turns, dims=(1, 2))
        for _ in range(turns):  # torch.rot90 once: (y, x) -> (X - 1 - x, y)
            points[:, 1], points[:, 2] = sizes[2] - 1 - points[:, 2], points[:, 1].copy()
    return Sample(image.contiguous(), points, sample.class_indices, None if labels is None else labels.contiguous())


@dataclass(frozen=True)
class Augmenter:
    """The strength of every augmentation family; the defaults change nothing.

    Attributes:
        flip_p: probability of flipping each axis.
        rot90_p: probability of 1 to 3 quarter turns in the Y-X plane (only when Y == X).
        rotate_degrees: largest rotation about a random axis; affine_p: probability of rotation + zoom.
        scale_fraction: isotropic zoom by up to this share.
        elastic_p: probability of an elastic field; elastic_magnitude_voxels: its control-point
            displacement (standard deviation, clipped at 3 of them); elastic_spacing_voxels: control-point spacing.
        intensity_p: probability of ``v * (1 + a) + b`` with ``|a|, |b| <= intensity_fraction``.
        noise_p: probability of Gaussian noise of ``noise_std`` (normalised units; TorchIO ``RandomNoise``).
        gamma_p: probability of TorchIO's sign-preserving ``RandomGamma`` with ``|log gamma| <= gamma_log``.
        blur_p: probability of TorchIO's ``RandomBlur``, sigma up to ``blur_std_voxels``.
        bias_p: probability of TorchIO's ``RandomBiasField`` (order 3) of ``bias_coefficient``.
        bandpass_p: probability (each) of a Gaussian low-pass of sigma up to ``bandpass_lowpass_voxels`` and
            of a Gaussian high-pass of sigma ``bandpass_highpass_voxels`` to 3x that.
        wedge_p: probability of an extra missing wedge, tilt range drawn in ``wedge_tilt_degrees``, tilt
            axis at any angle in the x-y plane (``cryokit.data.appearance``).
    """

    flip_p: float = 0.0
    rot90_p: float = 0.0
    rotate_degrees: float = 0.0
    affine_p: float = 0.0
    scale_fraction: float = 0.0
    elastic_p: float = 0.0
    elastic_magnitude_voxels: float = 0.0
    elastic_spacing_voxels: float = 24.0
    intensity_p: float = 0.0
    intensity_fraction: float = 0.0
    noise_p: float = 0.0
    noise_std: float = 0.0
    gamma_p: float = 0.0
    gamma_log: float = 0.0
    blur_p: float = 0.0
    blur_std_voxels: float = 0.0
    bias_p: float = 0.0
    bias_coefficient: float = 0.0
    bandpass_p: float = 0.0
    bandpass_lowpass_voxels: float = 0.0
    bandpass_highpass_voxels: float = 0.0
    wedge_p: float = 0.0
    wedge_tilt_degrees: tuple[float, float] = (45.0, 70.0)

    def __post_init__(self) -> None:
        probabilities = {f.name: getattr(self, f.name) for f in fields(self) if f.name.endswith("_p")}
        bad = {k: v for k, v in probabilities.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"augmentation probabilities must lie in [0, 1], got {bad}")
        low, high = self.wedge_tilt_degrees
        if not 0 < low <= high < 90:
            raise ValueError(
                f"wedge_tilt_degrees must be (low, high) with 0 < low <= high < 90, got {self.wedge_tilt_degrees}"
            )
        if self.elastic_spacing_voxels <= 0 or not 0 <= self.scale_fraction < 1:
            raise ValueError(
                f"need elastic_spacing_voxels > 0 and 0 <= scale_fraction < 1, got "
                f"{self.elastic_spacing_voxels}, {self.scale_fraction}"
            )

    @classmethod
    def from_config(cls, augment: Any) -> Augmenter:
        """From ``cryokit.config.AugmentConfig`` (or anything with the same fields)."""
        return cls(**{f.name: getattr(augment, f.name) for f in fields(cls)})

    def margin_bound_zyx(self, size_zyx: Sequence[int]) -> np.ndarray:
        """(3,) int64 context needed on each side of a patch so that no draw's rotation, zoom or elastic
        field samples outside the input region (zeros when geometry is off)."""
        return _margin_bound_zyx(self, size_zyx)

    def draw(self, generator: torch.Generator, out_size_zyx: Sequence[int]) -> AugmentParams:
        """Every random choice of one augmentation, drawn from ``generator`` in a fixed order."""
        return _draw(self, generator, out_size_zyx)


@dataclass(frozen=True)
class AugmentParams:
    """Every random choice of one augmentation.

    Attributes:
        out_size_zyx: output patch (Z, Y, X).
        matrix: (3, 3) float64 rotation / zoom ``A`` (output offset -> input offset, zyx), or None.
        field: (1, 3, cz, cy, cx) float32 elastic control-point displacements (output voxels), or None.
        flips: flip per axis (z, y, x); turns: quarter turns in the Y-X plane (0..3; only if Y == X).
        appearance: the intensity and imaging choices (``cryokit.data.appearance``): values change, picks do not.
    """

    out_size_zyx: tuple[int, int, int]
    matrix: torch.Tensor | None
    field: torch.Tensor | None
    flips: tuple[bool, bool, bool]
    turns: int
    appearance: AppearanceParams = AppearanceParams()

    def margin_zyx(self) -> np.ndarray:
        """(3,) int64 context each side of the patch that this draw's geometry samples from."""
        if self.matrix is None and self.field is None:
            return np.zeros(3, dtype=np.int64)
        half = (np.asarray(self.out_size_zyx, dtype=np.float64) - 1) / 2
        reach = half + (0 if self.field is None else self.field.abs().amax(dim=(0, 2, 3, 4)).double().numpy())
        matrix = np.eye(3) if self.matrix is None else self.matrix.numpy()
        return np.ceil(np.maximum(np.abs(matrix) @ reach - half, 0) + 1e-6).astype(np.int64)


def _draw(augmenter: Augmenter, generator: torch.Generator, out_size_zyx: Sequence[int]) -> AugmentParams:
    """Draw every random choice of ``augmenter`` from ``generator`` (in a fixed order)."""
    out_size = tuple(int(n) for n in out_size_zyx)
    matrix, field = _draw_matrix(augmenter, generator), _draw_elastic(augmenter, generator, out_size)
    flips = tuple(bool(f) for f in (_uniform(generator, n=3) < augmenter.flip_p))
    turns = int(torch.randint(1, 4, (1,), generator=generator)) if float(_uniform(generator)) < augmenter.rot90_p else 0
    return AugmentParams(out_size, matrix, field, flips, turns, draw_appearance(augmenter, generator))


def apply_augmentation(sample: Sample, params: AugmentParams) -> Sample:
    """Apply drawn ``params`` to a sample whose image is at least ``out_size + 2 * margin_zyx()``.

    Args:
        sample: input region; image (Z_in, Y_in, X_in); picks in its frame. The output is its centre.

    Returns:
        A ``Sample`` of ``params.out_size_zyx`` with all picks moved (including those now outside it).
    """
    out_size = params.out_size_zyx
    if sample.image_zyx.ndim != 3 or any(o > i for o, i in zip(out_size, sample.image_zyx.shape)):
        raise ValueError(
            f"out_size_zyx {out_size} must fit in the (Z, Y, X) image of shape {tuple(sample.image_zyx.shape)}"
        )
    if params.matrix is None and params.field is None:
        sample = _crop(sample, out_size)
    else:
        sample = _resample(sample, params)
    sample = _flip_and_turn(sample, params.flips, params.turns)
    return replace(sample, image_zyx=apply_appearance(sample.image_zyx, params.appearance))


def augment_sample(
    sample: Sample,
    augmenter: Augmenter,
    generator: torch.Generator,
    out_size_zyx: Sequence[int] | None = None,
) -> Sample:
    """Draw and apply one augmentation of every family of ``augmenter``; returns a new ``Sample``.

    Args:
        sample: input region; its image is (Z_in, Y_in, X_in) and its picks are in its frame.
        augmenter: strengths per family (0 switches a family off).
        generator: the source of all randomness (seed it to reproduce a result).
        out_size_zyx: output patch (Z, Y, X), centred in the input (default: the input's size). Give the
            input ``augmenter.margin_bound_zyx(out_size_zyx)`` of context on each side to avoid zeros.
    """
    out_size = tuple(int(n) for n in (out_size_zyx or sample.image_zyx.shape))
    return apply_augmentation(sample, augmenter.draw(generator, out_size))
