"""Losses for the detector and the U-Net track; each module returns ``LossOutput(total, terms)``.

The maths lives in module-level functions (``focal_loss``, ``softmax_focal_loss``, ``soft_fbeta_loss``,
``smooth_l1``); the ``nn.Module`` classes are thin wrappers that combine them, as MONAI's focal loss
does. ``cryokit.models.build.build_loss`` maps a ``LossConfig`` onto them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import monai.losses
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from cryokit.models.detection_coder import DETECTION_TARGET_KEYS, DETECTOR_OUTPUTS

__all__ = [
    "LossOutput",
    "focal_loss",
    "softmax_focal_loss",
    "soft_fbeta_loss",
    "smooth_l1",
    "CompositeDetectionLoss",
    "particle_smoothed_cross_entropy",
    "DiceCELoss",
    "HeatmapFocalLoss",
    "DeepSupervisionLoss",
]

REDUCTIONS = ("none", "mean", "sum")


@dataclass
class LossOutput:
    """A loss for ``backward`` plus its parts for logging.

    Attributes:
        total: scalar tensor to call ``backward`` on.
        terms: unweighted parts as floats (detached), e.g. ``{"dice": 0.4, "ce": 0.1}``.
    """

    total: torch.Tensor
    terms: dict[str, float] = field(default_factory=dict)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float | None = 0.25, gamma: float = 2.0, reduction: str = "mean"
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017), element-wise over any shape.

    ``FL = a_t * (1 - p_t) ** gamma * BCE(logits, targets)`` with ``p_t = p t + (1 - p)(1 - t)`` and
    ``a_t = alpha t + (1 - alpha)(1 - t)``; with ``gamma=0`` and ``alpha=None`` it is BCE with logits.

    Args:
        logits: (*) raw scores.
        targets: (*) targets in [0, 1], same shape.
        alpha: weight of positives in [0, 1] (negatives get 1 - alpha); None for no weighting.
        gamma: focusing exponent >= 0.
        reduction: "none" (shape (*)), "mean" or "sum".
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have one shape")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if gamma < 0 or (alpha is not None and not 0.0 <= alpha <= 1.0):
        raise ValueError(f"need gamma >= 0 and alpha in [0, 1] or None, got gamma={gamma}, alpha={alpha}")
    targets = targets.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if gamma:
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = loss * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return _reduce(loss, reduction)


def softmax_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, dim: int = 1, reduction: str = "mean"
) -> torch.Tensor:
    """Softmax focal loss ``-sum_c t_c (1 - p_c) ** gamma log p_c``; cross-entropy when ``gamma=0``.

    Args:
        logits: (..., C, ...) raw scores with the class axis at ``dim``.
        targets: same shape, one-hot or soft class targets.
        gamma: focusing exponent >= 0.
        dim: the class axis.
        reduction: "none" (the input shape without ``dim``), "mean" or "sum".
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have one shape")
    if reduction not in REDUCTIONS or gamma < 0:
        raise ValueError(f"need reduction in {REDUCTIONS} and gamma >= 0, got {reduction!r}, {gamma}")
    log_p = F.log_softmax(logits, dim=dim)
    loss = -(targets.to(log_p.dtype) * (1 - log_p.exp()) ** gamma * log_p).sum(dim)
    return _reduce(loss, reduction)


def soft_fbeta_loss(
    probs: torch.Tensor,
    targets: torch.Tensor,
    beta: float = 4.0,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """One minus the class-weighted mean of a differentiable per-class F-beta.

    Per class c, summed over every axis but the class axis: ``TP = sum(p t)``, ``FP = sum(p (1 - t))``,
    ``FN = sum((1 - p) t)`` and ``F = ((1 + b^2) TP + eps) / ((1 + b^2) TP + b^2 FN + FP + eps)``; the loss
    is ``1 - sum_c(w_c F_c) / sum_c(w_c)``. ``eps`` makes a class with neither targets nor predictions
    score 1, so a perfect prediction gives 0.

    Args:
        probs: (N, C) or (B, C, ...) class probabilities in [0, 1]; axis 1 is the class axis.
        targets: same shape, one-hot or soft targets in [0, 1].
        beta: recall weight (4 in the competition).
        class_weights: (C,) non-negative weights, e.g. the metric's; None weighs classes equally.
        eps: smoothing added to numerator and denominator.
    """
    if probs.shape != targets.shape or probs.ndim < 2:
        raise ValueError(
            f"probs {tuple(probs.shape)} and targets {tuple(targets.shape)} must share a shape with a class axis at 1"
        )
    axes = [0] + list(range(2, probs.ndim))
    targets = targets.to(probs.dtype)
    tp = (probs * targets).sum(axes)
    fp = (probs * (1 - targets)).sum(axes)
    fn = ((1 - probs) * targets).sum(axes)
    b2 = beta**2
    f = ((1 + b2) * tp + eps) / ((1 + b2) * tp + b2 * fn + fp + eps)
    weights = torch.ones_like(f) if class_weights is None else torch.as_tensor(class_weights).to(f)
    if weights.shape != f.shape or bool((weights < 0).any()) or float(weights.sum()) <= 0:
        raise ValueError(
            f"class_weights must be {f.shape[0]} non-negative values with a positive sum, got {class_weights!r}"
        )
    return 1 - (weights * f).sum() / weights.sum()


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, positive: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Smooth L1 summed over components, averaged over positive cells (0 when there are none).

    Args:
        pred: (B, A, K, Z, Y, X) with K components (e.g. 3 offsets), or (B, A, Z, Y, X).
        target: same shape as ``pred``.
        positive: (B, A, Z, Y, X) bool or 0/1 mask of the cells that hold an object.
        beta: where the loss turns from quadratic to linear.

    Returns:
        Scalar; with no positive cell it is 0 and still has a (zero) gradient.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have one shape")
    if pred.ndim == positive.ndim:
        pred, target = pred.unsqueeze(2), target.unsqueeze(2)
    if pred.ndim != positive.ndim + 1 or pred.shape[:2] + pred.shape[3:] != positive.shape:
        raise ValueError(f"positive {tuple(positive.shape)} does not fit pred {tuple(pred.shape)}")
    mask = positive.to(pred.dtype).unsqueeze(2)
    loss = F.smooth_l1_loss(pred, target.to(pred.dtype), beta=beta, reduction="none") * mask
    return loss.sum() / mask.sum().clamp(min=1.0)


class CompositeDetectionLoss(nn.Module):
    """Focal + soft F-beta + smooth L1 for ``YOLO3D`` outputs against ``cryokit.models.detection_coder`` targets.

    Terms (unweighted; "per positive" means divided by the number of positive cell-anchors, at least 1):

    * ``focal_objectness``: sigmoid focal loss of the objectness logits summed over every cell-anchor
      (except those marked ``ignore``), per positive (RetinaNet's normalisation).
    * ``focal_class``: softmax focal loss of the class logits on positive cell-anchors, per positive
      (class probabilities are a softmax over C, as ``decode_detections`` reads them).
      ``focal`` is the sum of the two.
    * ``fbeta``: ``soft_fbeta_loss`` of the per-class scores ``sigmoid(objectness) * softmax(class)``
      against ``objectness * one_hot(class_index)`` over all cell-anchors, with ``class_weights``.
    * ``box_offset`` / ``box_radius``: ``smooth_l1`` of ``offset_zyx`` and ``log_radius_ratio`` on
      positives; ``box`` is their sum.

    ``total = lambda_focal * focal + lambda_fbeta * fbeta + lambda_box * box``.

    Args:
        lambda_focal, lambda_fbeta, lambda_box: non-negative weights of the three groups.
        alpha: objectness focal weight of positives in [0, 1], or None.
        gamma: focal exponent >= 0 (objectness and class).
        beta: F-beta's recall weight (4 in the competition).
        class_weights: (C,) weights for the F-beta term (e.g. the metric's 1, 0, 2, 1, 2, 1); None: equal.
        smooth_l1_beta: smooth L1 transition point.
    """

    def __init__(
        self,
        lambda_focal: float = 1.0,
        lambda_fbeta: float = 1.0,
        lambda_box: float = 1.0,
        alpha: float | None = 0.25,
        gamma: float = 2.0,
        beta: float = 4.0,
        class_weights: Sequence[float] | None = None,
        smooth_l1_beta: float = 1.0,
    ):
        super().__init__()
        if min(lambda_focal, lambda_fbeta, lambda_box) < 0:
            raise ValueError(
                f"lambda_focal, lambda_fbeta and lambda_box must be >= 0, got "
                f"{lambda_focal}, {lambda_fbeta}, {lambda_box}"
            )
        if gamma < 0 or (alpha is not None and not 0.0 <= alpha <= 1.0) or beta <= 0 or smooth_l1_beta <= 0:
            raise ValueError(
                f"need gamma >= 0, alpha in [0, 1] or None, beta > 0 and smooth_l1_beta > 0, got "
                f"gamma={gamma}, alpha={alpha}, beta={beta}, smooth_l1_beta={smooth_l1_beta}"
            )
        self.lambdas = (lambda_focal, lambda_fbeta, lambda_box)
        self.alpha, self.gamma, self.beta, self.smooth_l1_beta = alpha, gamma, beta, smooth_l1_beta
        self.class_weights = None if class_weights is None else tuple(float(w) for w in class_weights)

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> LossOutput:
        """Loss of one batch.

        Args:
            outputs: ``YOLO3D`` output: ``objectness`` (B, A, Z, Y, X) logits, ``class_scores``
                (B, A, C, Z, Y, X) logits, ``offset_zyx`` (B, A, 3, Z, Y, X), ``log_radius_ratio`` (B, A, Z, Y, X).
            targets: batched ``DetectionTargets.as_tensors()``: ``objectness`` (B, A, Z, Y, X) in {0, 1},
                ``class_index`` (B, A, Z, Y, X) int (-1 where empty), ``offset_zyx`` (B, A, 3, Z, Y, X),
                ``log_radius_ratio`` (B, A, Z, Y, X); optional ``ignore`` (B, A, Z, Y, X) bool.
        """
        _check_detection_shapes(outputs, targets)
        objectness = targets["objectness"].to(outputs["objectness"].dtype)
        positive = objectness > 0.5
        n_positive = positive.sum().clamp(min=1).to(objectness.dtype)
        valid = torch.ones_like(objectness)
        if targets.get("ignore") is not None:
            valid = valid * (~targets["ignore"].bool()).to(valid.dtype)
        n_classes = outputs["class_scores"].shape[2]
        one_hot = F.one_hot(targets["class_index"].long().clamp(0, n_classes - 1), n_classes)
        one_hot = rearrange(one_hot, "b a z y x c -> b a c z y x").to(objectness.dtype)
        focal_obj = focal_loss(outputs["objectness"], objectness, self.alpha, self.gamma, "none")
        focal_obj = (focal_obj * valid).sum() / n_positive
        focal_cls = softmax_focal_loss(outputs["class_scores"], one_hot, self.gamma, dim=2, reduction="none")
        focal_cls = (focal_cls * positive).sum() / n_positive
        scores = torch.sigmoid(outputs["objectness"]).unsqueeze(2) * outputs["class_scores"].softmax(dim=2)
        wanted = objectness.unsqueeze(2) * one_hot
        to_rows, keep = "b a c z y x -> (b a z y x) c", valid.unsqueeze(2)
        fbeta = soft_fbeta_loss(
            rearrange(scores * keep, to_rows),
            rearrange(wanted * keep, to_rows),
            beta=self.beta,
            class_weights=self.class_weights,
        )
        box_offset = smooth_l1(outputs["offset_zyx"], targets["offset_zyx"], positive, self.smooth_l1_beta)
        box_radius = smooth_l1(outputs["log_radius_ratio"], targets["log_radius_ratio"], positive, self.smooth_l1_beta)
        focal, box = focal_obj + focal_cls, box_offset + box_radius
        total = self.lambdas[0] * focal + self.lambdas[1] * fbeta + self.lambdas[2] * box
        parts = {
            "focal": focal,
            "focal_objectness": focal_obj,
            "focal_class": focal_cls,
            "fbeta": fbeta,
            "box": box,
            "box_offset": box_offset,
            "box_radius": box_radius,
        }
        return LossOutput(total, {name: float(value.detach()) for name, value in parts.items()})


def _check_detection_shapes(outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> None:
    for where, mapping, names in (
        ("outputs", outputs, DETECTOR_OUTPUTS),
        ("targets", targets, DETECTION_TARGET_KEYS),
    ):
        lacking = [name for name in names if name not in mapping]
        if lacking:
            raise ValueError(f"{where} lack {lacking}; got keys {sorted(mapping)}")
    grid = outputs["objectness"].shape
    expected = {
        "objectness": grid,
        "class_index": grid,
        "log_radius_ratio": grid,
        "ignore": grid,
        "offset_zyx": outputs["offset_zyx"].shape,
    }
    for name, shape in expected.items():
        if targets.get(name) is not None and targets[name].shape != shape:
            raise ValueError(f"targets[{name!r}] has shape {tuple(targets[name].shape)}, outputs need {tuple(shape)}")


def particle_smoothed_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, smoothing: float, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Class-weighted cross-entropy against soft labels among the particle classes.

    A particle voxel's target keeps ``1 - smoothing`` on its class and spreads ``smoothing`` evenly over the
    other particle classes; background voxels stay one-hot. Smoothing over every class (torch's
    ``label_smoothing``) breaks under heavy particle weights: with apo-ferritin weighted 82, a background
    voxel's weighted target then favours apo-ferritin over background (0.1 / 7 x 82 > 0.914). The mean is
    torch's weighted one (divided by the summed weight of each voxel's own class), so ``smoothing=0`` is
    ``F.cross_entropy(logits, labels, weight)``.

    Args:
        logits: (B, C, Z, Y, X), channel 0 background, C >= 3.
        labels: (B, Z, Y, X) integer class per voxel.
        smoothing: share of a particle voxel's target moved to the other particle classes, in [0, 1).
        weight: (C,) class weights; None: equal.
    """
    n_classes = logits.shape[1]
    if n_classes < 3:
        raise ValueError(
            f"smoothing among particle classes needs 2 or more of them, got logits of {n_classes} channels"
        )
    weight = torch.ones(n_classes, device=logits.device) if weight is None else weight.to(logits.device)
    per_class = (1, n_classes) + (1,) * (logits.ndim - 2)  # a (C,) vector against (B, C, Z, Y, X)
    one_hot = F.one_hot(labels, n_classes).movedim(-1, 1).to(logits.dtype)
    particle = (labels > 0).unsqueeze(1).to(logits.dtype)
    is_particle_class = torch.ones(n_classes, device=logits.device, dtype=logits.dtype)
    is_particle_class[0] = 0
    others = (is_particle_class.view(per_class) - one_hot) / (n_classes - 2)
    soft = one_hot + particle * smoothing * (others - one_hot)
    class_weight = weight.view(per_class).to(logits.dtype)
    per_voxel = -(soft * class_weight * F.log_softmax(logits, dim=1)).sum(dim=1)
    return per_voxel.sum() / weight[labels].sum()


class DiceCELoss(nn.Module):
    """MONAI's Dice + cross-entropy for (B, C, Z, Y, X) logits, with both parts reported.

    The overlap part is MONAI's ``DiceLoss`` (or ``TverskyLoss``) on softmax probabilities; the voxel part
    is cross-entropy (or MONAI's softmax ``FocalLoss``). As in MONAI's ``DiceCELoss``, ``class_weights``
    weigh the cross-entropy (and focal) classes and also the per-class Dice terms; Tversky takes none.

    Args:
        lambda_dice: weight of the overlap part (>= 0; 0 leaves it out: not computed, not in ``terms``).
        lambda_ce: weight of the voxel part (>= 0; 0 leaves it out likewise). One of the two must be > 0.
        class_weights: (C,) weights, background first; None: equal.
        overlap: "dice" or "tversky" (the term's name in ``terms``).
        voxel: "ce" or "focal" (the term's name in ``terms``).
        include_background: whether the overlap part scores the background channel.
        tversky_alpha, tversky_beta: Tversky's FP and FN weights (beta > alpha favours recall).
        focal_gamma: focal exponent when ``voxel="focal"``.
        label_smoothing: cross-entropy only: soft labels among the particle classes
            (``particle_smoothed_cross_entropy``; 0: one-hot).

    Examples::

        >>> loss = DiceCELoss(class_weights=[1.0] + [8.0] * 6)
        >>> out = loss(torch.randn(2, 7, 8, 8, 8), torch.randint(0, 7, (2, 1, 8, 8, 8)))
        >>> sorted(out.terms)
        ['ce', 'dice']
    """

    def __init__(
        self,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        class_weights: Sequence[float] | None = None,
        overlap: str = "dice",
        voxel: str = "ce",
        include_background: bool = True,
        tversky_alpha: float = 0.3,
        tversky_beta: float = 0.7,
        focal_gamma: float = 2.0,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        if not 0 <= label_smoothing < 1 or (label_smoothing > 0 and voxel != "ce"):
            raise ValueError(
                f"label_smoothing must lie in [0, 1) and needs voxel='ce', got {label_smoothing} with voxel={voxel!r}"
            )
        if lambda_dice < 0 or lambda_ce < 0 or lambda_dice + lambda_ce == 0:
            raise ValueError(f"lambda_dice and lambda_ce must be >= 0 and not both 0, got {lambda_dice}, {lambda_ce}")
        if overlap not in ("dice", "tversky") or voxel not in ("ce", "focal"):
            raise ValueError(
                f"overlap must be 'dice' or 'tversky' and voxel 'ce' or 'focal', got {overlap!r}, {voxel!r}"
            )
        weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        dice_weight = weight[1:] if weight is not None and not include_background else weight
        common = dict(include_background=include_background, to_onehot_y=True, softmax=True)
        self.overlap = (
            monai.losses.DiceLoss(weight=dice_weight, **common)
            if overlap == "dice"
            else monai.losses.TverskyLoss(alpha=tversky_alpha, beta=tversky_beta, **common)
        )
        self.voxel = (
            nn.CrossEntropyLoss(weight=weight)
            if voxel == "ce"
            else monai.losses.FocalLoss(to_onehot_y=True, use_softmax=True, gamma=focal_gamma, weight=weight)
        )
        self.names = (overlap, voxel)
        self.lambda_dice, self.lambda_ce = lambda_dice, lambda_ce
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """Loss of one batch.

        Args:
            logits: (B, C, Z, Y, X) raw scores, channel 0 background.
            labels: (B, 1, Z, Y, X) or (B, Z, Y, X) integer class per voxel.
        """
        if labels.ndim == logits.ndim - 1:
            labels = labels.unsqueeze(1)
        if labels.shape[1] != 1 or labels.shape[2:] != logits.shape[2:] or labels.shape[0] != logits.shape[0]:
            raise ValueError(f"labels {tuple(labels.shape)} must be (B, 1, Z, Y, X) for logits {tuple(logits.shape)}")
        # A part weighted 0 is skipped: it would cost a softmax pass and show in the logs as if it counted.
        parts = {}
        if self.lambda_dice > 0:
            parts[self.names[0]] = (self.lambda_dice, self.overlap(logits, labels))
        if self.lambda_ce > 0:
            if self.label_smoothing > 0:
                voxel_loss = particle_smoothed_cross_entropy(
                    logits, labels[:, 0].long(), self.label_smoothing, self.voxel.weight
                )
            elif isinstance(self.voxel, nn.CrossEntropyLoss):
                voxel_loss = self.voxel(logits, labels[:, 0].long())
            else:
                voxel_loss = self.voxel(logits, labels)
            parts[self.names[1]] = (self.lambda_ce, voxel_loss)
        total = sum(weight * value for weight, value in parts.values())
        return LossOutput(total, {name: float(value.detach()) for name, (_, value) in parts.items()})


class HeatmapFocalLoss(nn.Module):
    """Sigmoid focal loss of (B, C, Z, Y, X) logits against Gaussian heatmaps in [0, 1].

    Args:
        gamma: focal exponent >= 0.
        positive_weight: weight of a voxel at a heatmap peak (1 far from every centre, linear in between),
            up-weighting the rare voxels near centres; the mean keeps the scale independent of patch size.
    """

    def __init__(self, gamma: float = 2.0, positive_weight: float = 8.0):
        super().__init__()
        if gamma < 0 or positive_weight <= 0:
            raise ValueError(f"need gamma >= 0 and positive_weight > 0, got {gamma}, {positive_weight}")
        self.gamma, self.positive_weight = gamma, positive_weight

    def forward(self, logits: torch.Tensor, heatmaps: torch.Tensor) -> LossOutput:
        per_voxel = focal_loss(logits, heatmaps, alpha=None, gamma=self.gamma, reduction="none")
        weights = 1.0 + (self.positive_weight - 1.0) * heatmaps
        total = (per_voxel * weights).mean()
        return LossOutput(total, {"focal": float(total.detach())})


class DeepSupervisionLoss(nn.Module):
    """``loss`` over every head of a deeply supervised network, the heads weighted 1, 1/2, 1/4, ... (MONAI's
    "exp" weights, nnU-Net's scheme) and normalised to sum to 1.

    MONAI's own ``DeepSupervisionLoss`` wants a loss returning a tensor; ours return ``LossOutput``.

    Args:
        loss: a loss returning ``LossOutput`` for (logits, target) of one head.

    Forward takes (B, H, C, Z, Y, X) outputs, the main head first and every head at the target's size (MONAI
    DynUNet in training mode), or (B, C, Z, Y, X) from a single head (eval mode), which passes straight to
    ``loss``. ``terms`` hold the main head's terms plus ``"deep_supervision"``, the weighted total.
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> LossOutput:
        if outputs.ndim != 6:
            return self.loss(outputs, target)
        weights = [0.5**head for head in range(outputs.shape[1])]
        per_head = [self.loss(outputs[:, head], target) for head in range(outputs.shape[1])]
        total = sum(w * out.total for w, out in zip(weights, per_head)) / sum(weights)
        return LossOutput(total, {**per_head[0].terms, "deep_supervision": float(total.detach())})
