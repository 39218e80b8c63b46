"""Losses: known limits, values worked out by hand on tiny tensors, gradient flow, MONAI agreement."""

from __future__ import annotations

import math

import monai.losses
import pytest
import torch
import torch.nn.functional as F

from cryokit.config import LossConfig, ModelConfig, PostprocessConfig, TargetConfig
from cryokit.losses import (
    CompositeDetectionLoss,
    DeepSupervisionLoss,
    DiceCELoss,
    LossOutput,
    focal_loss,
    particle_smoothed_cross_entropy,
    smooth_l1,
    soft_fbeta_loss,
    softmax_focal_loss,
)
from cryokit.models.build import build_loss, build_task, segmentation_class_weights
from cryokit.particles import COMPETITION_CATALOG

LN2 = math.log(2.0)


# ---- focal ---------------------------------------------------------------------------------------------


def test_focal_gamma0_is_bce():
    logits, targets = torch.randn(4, 5), torch.randint(0, 2, (4, 5)).float()
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    assert torch.allclose(focal_loss(logits, targets, alpha=None, gamma=0.0), bce)
    assert torch.allclose(focal_loss(logits, targets, alpha=0.5, gamma=0.0), 0.5 * bce)


def test_focal_by_hand():
    # logit 0: p = 0.5, BCE = ln 2, (1 - p_t)^2 = 0.25; alpha 0.25 on the positive, 0.75 on the negative.
    loss = focal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]), alpha=0.25, gamma=2.0, reduction="none")
    assert torch.allclose(loss, torch.tensor([0.25 * 0.25 * LN2, 0.75 * 0.25 * LN2]))
    assert focal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]), reduction="sum").item() == pytest.approx(0.25 * LN2)


def test_softmax_focal_gamma0_is_cross_entropy():
    logits, labels = torch.randn(3, 4, 2, 2), torch.randint(0, 4, (3, 2, 2))
    one_hot = F.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    assert torch.allclose(softmax_focal_loss(logits, one_hot, gamma=0.0), F.cross_entropy(logits, labels))
    # Two equal logits: p = 0.5, so (1 - p)^2 * ln 2 = 0.25 ln 2.
    assert softmax_focal_loss(torch.zeros(1, 2), torch.tensor([[0.0, 1.0]])).item() == pytest.approx(0.25 * LN2)


def test_focal_bad_arguments():
    with pytest.raises(ValueError, match="reduction"):
        focal_loss(torch.zeros(2), torch.zeros(2), reduction="max")
    with pytest.raises(ValueError, match="one shape"):
        focal_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="alpha"):
        focal_loss(torch.zeros(2), torch.zeros(2), alpha=1.5)


# ---- soft F-beta ---------------------------------------------------------------------------------------

PROBS = torch.tensor([[1.0, 0.0], [0.5, 0.5]])  # (N=2 cells, C=2 classes)
TARGETS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
# beta = 4, 1 + b^2 = 17, b^2 = 16.
# class 0: TP = 1*1 + 0.5*0 = 1, FP = 0*... + 0.5*1 = 0.5, FN = 0*1 + 0.5*0 = 0 -> F0 = 17 / (17 + 0.5)
# class 1: TP = 0.5, FP = 0, FN = 1*0 + 0.5*1 = 0.5 -> F1 = 8.5 / (8.5 + 16*0.5) = 8.5 / 16.5
F0, F1 = 17 / 17.5, 8.5 / 16.5


def test_soft_fbeta_by_hand():
    assert soft_fbeta_loss(PROBS, TARGETS).item() == pytest.approx(1 - (F0 + F1) / 2, abs=1e-5)
    weighted = soft_fbeta_loss(PROBS, TARGETS, class_weights=[1.0, 2.0]).item()
    assert weighted == pytest.approx(1 - (F0 + 2 * F1) / 3, abs=1e-5)
    # beta = 1: F1 score; class 1: 2*0.5 / (2*0.5 + 0.5 + 0) = 2/3; class 0: 2 / 2.5.
    assert soft_fbeta_loss(PROBS, TARGETS, beta=1.0).item() == pytest.approx(1 - (0.8 + 2 / 3) / 2, abs=1e-5)


def test_soft_fbeta_perfect_prediction_is_zero_and_layouts_agree():
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # class 2 absent and never predicted
    assert soft_fbeta_loss(targets.clone(), targets).item() == pytest.approx(0.0, abs=1e-6)
    probs, onehot = torch.rand(2, 3, 2, 2, 2), torch.rand(2, 3, 2, 2, 2).round()
    rows = lambda t: t.permute(0, 2, 3, 4, 1).reshape(-1, 3)  # noqa: E731
    assert torch.allclose(soft_fbeta_loss(probs, onehot), soft_fbeta_loss(rows(probs), rows(onehot)))


def test_soft_fbeta_bad_arguments():
    with pytest.raises(ValueError, match="class_weights"):
        soft_fbeta_loss(PROBS, TARGETS, class_weights=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="class_weights"):
        soft_fbeta_loss(PROBS, TARGETS, class_weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="share a shape"):
        soft_fbeta_loss(PROBS, TARGETS[:1])


# ---- smooth L1 -----------------------------------------------------------------------------------------


def test_smooth_l1_by_hand_and_empty():
    pred = torch.zeros(1, 1, 3, 1, 1, 2, requires_grad=True)
    target = torch.zeros(1, 1, 3, 1, 1, 2)
    target[0, 0, :, 0, 0, 0] = torch.tensor([0.5, 2.0, 0.0])
    target[0, 0, :, 0, 0, 1] = 9.0  # not positive: ignored
    positive = torch.tensor([True, False]).reshape(1, 1, 1, 1, 2)
    # |d| < 1: 0.5 d^2 = 0.125; |d| = 2: |d| - 0.5 = 1.5; 0 -> 0; sum 1.625 over 1 positive cell.
    assert smooth_l1(pred, target, positive).item() == pytest.approx(1.625)
    empty = smooth_l1(pred, target, torch.zeros_like(positive))
    empty.backward()
    assert empty.item() == 0.0 and pred.grad is not None and not pred.grad.any()
    with pytest.raises(ValueError, match="does not fit"):
        smooth_l1(pred, target, positive[..., :1])


def test_a_smaller_smooth_l1_beta_pulls_harder_on_small_offset_errors():
    target = torch.zeros(1, 1, 1, 1, 1, 1)
    positive = torch.ones(1, 1, 1, 1, 1, dtype=torch.bool)

    def gradient(error: float, beta: float) -> float:
        pred = torch.full((1, 1, 1, 1, 1, 1), error, requires_grad=True)
        smooth_l1(pred, target, positive, beta).backward()
        return float(pred.grad.sum())

    # quadratic below beta: gradient error / beta; linear above: 1 whatever the error
    assert gradient(0.05, 1.0) == pytest.approx(0.05)
    assert gradient(0.05, 0.1) == pytest.approx(0.5)
    assert gradient(2.0, 0.1) == pytest.approx(1.0) and gradient(2.0, 1.0) == pytest.approx(1.0)


# ---- composite detection loss --------------------------------------------------------------------------


def _tiny_detection(requires_grad: bool = False):
    """B=1, A=1, C=2, grid 1x1x2; cell 0 holds class 1, cell 1 is empty; every logit 0."""
    outputs = {
        "objectness": torch.zeros(1, 1, 1, 1, 2),
        "class_scores": torch.zeros(1, 1, 2, 1, 1, 2),
        "offset_zyx": torch.zeros(1, 1, 3, 1, 1, 2),
        "log_radius_ratio": torch.zeros(1, 1, 1, 1, 2),
    }
    for tensor in outputs.values():
        tensor.requires_grad_(requires_grad)
    offsets = torch.zeros(1, 1, 3, 1, 1, 2)
    offsets[0, 0, :, 0, 0, 0] = torch.tensor([0.5, 0.0, 0.0])
    targets = {
        "objectness": torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 1, 2),
        "class_index": torch.tensor([1, -1]).reshape(1, 1, 1, 1, 2),
        "offset_zyx": offsets,
        "log_radius_ratio": torch.tensor([0.1, 0.0]).reshape(1, 1, 1, 1, 2),
    }
    return outputs, targets


def test_composite_terms_by_hand():
    outputs, targets = _tiny_detection()
    out = CompositeDetectionLoss(alpha=0.25, gamma=2.0, beta=4.0)(outputs, targets)
    assert isinstance(out, LossOutput)
    terms = out.terms
    # objectness p = 0.5: positive 0.25*0.25*ln2 + negative 0.75*0.25*ln2 = 0.25 ln2, over 1 positive.
    assert terms["focal_objectness"] == pytest.approx(0.25 * LN2)
    # class softmax p = 0.5 on the positive cell: (1 - 0.5)^2 * ln 2.
    assert terms["focal_class"] == pytest.approx(0.25 * LN2)
    assert terms["focal"] == pytest.approx(0.5 * LN2)
    # scores = 0.5 * 0.5 = 0.25 per class and cell; wanted: cell 0 -> class 1 only.
    # class 0: TP 0, FP 0.5, FN 0 -> F ~ 0; class 1: TP 0.25, FP 0.25, FN 0.75 -> 4.25 / (4.25 + 12 + 0.25).
    assert terms["fbeta"] == pytest.approx(1 - (4.25 / 16.5) / 2, abs=1e-5)
    # offsets: 0.5 * 0.5^2 = 0.125; log radius: 0.5 * 0.1^2 = 0.005.
    assert terms["box_offset"] == pytest.approx(0.125) and terms["box_radius"] == pytest.approx(0.005)
    assert terms["box"] == pytest.approx(0.13)
    assert out.total.item() == pytest.approx(terms["focal"] + terms["fbeta"] + terms["box"], rel=1e-6)
    weighted = CompositeDetectionLoss(2.0, 0.5, 3.0)(outputs, targets)
    assert weighted.total.item() == pytest.approx(
        2 * terms["focal"] + 0.5 * terms["fbeta"] + 3 * terms["box"], rel=1e-6
    )


def test_composite_ignore_mask_drops_cells():
    outputs, targets = _tiny_detection()
    targets["ignore"] = torch.tensor([False, True]).reshape(1, 1, 1, 1, 2)
    terms = CompositeDetectionLoss()(outputs, targets).terms
    assert terms["focal_objectness"] == pytest.approx(0.25 * 0.25 * LN2)
    # class 1 loses its FP: TP 0.25, FP 0, FN 0.75 -> 4.25 / 16.25; class 0: FP 0.25 -> F ~ 0.
    assert terms["fbeta"] == pytest.approx(1 - (4.25 / 16.25) / 2, abs=1e-5)


@pytest.mark.parametrize(
    "lambdas, reached",
    [
        ((1.0, 1.0, 1.0), {"objectness", "class_scores", "offset_zyx", "log_radius_ratio"}),
        ((1.0, 0.0, 0.0), {"objectness", "class_scores"}),
        ((0.0, 1.0, 0.0), {"objectness", "class_scores"}),
        ((0.0, 0.0, 1.0), {"offset_zyx", "log_radius_ratio"}),
    ],
)
def test_composite_gradients_reach_head_outputs(lambdas, reached):
    torch.manual_seed(0)
    outputs = {
        "objectness": torch.randn(2, 3, 2, 2, 2),
        "class_scores": torch.randn(2, 3, 6, 2, 2, 2),
        "offset_zyx": torch.randn(2, 3, 3, 2, 2, 2),
        "log_radius_ratio": torch.randn(2, 3, 2, 2, 2),
    }
    for tensor in outputs.values():
        tensor.requires_grad_(True)
    objectness = (torch.rand(2, 3, 2, 2, 2) < 0.3).float()
    targets = {
        "objectness": objectness,
        "class_index": torch.where(objectness > 0, torch.randint(0, 6, objectness.shape), -1),
        "offset_zyx": torch.rand(2, 3, 3, 2, 2, 2) - 0.5,
        "log_radius_ratio": 0.1 * torch.randn(2, 3, 2, 2, 2),
    }
    CompositeDetectionLoss(*lambdas, class_weights=[1, 0, 2, 1, 2, 1])(outputs, targets).total.backward()
    got = {name for name, tensor in outputs.items() if tensor.grad is not None and tensor.grad.abs().sum() > 0}
    assert got == reached


def test_composite_without_positives_and_bad_inputs():
    outputs, targets = _tiny_detection(requires_grad=True)
    targets["objectness"] = torch.zeros_like(targets["objectness"])
    out = CompositeDetectionLoss()(outputs, targets)
    out.total.backward()
    assert torch.isfinite(out.total) and out.terms["box"] == 0.0 and out.terms["focal_class"] == 0.0
    with pytest.raises(ValueError, match="offset_zyx"):
        CompositeDetectionLoss()(outputs, {**targets, "offset_zyx": torch.zeros(1, 1, 3, 1, 1, 3)})
    with pytest.raises(ValueError, match="targets lack \\['class_index'\\]"):
        CompositeDetectionLoss()(outputs, {k: v for k, v in targets.items() if k != "class_index"})
    with pytest.raises(ValueError, match="lambda_focal"):
        CompositeDetectionLoss(lambda_focal=-1.0)


# ---- segmentation losses -------------------------------------------------------------------------------

WEIGHTS = [1.0, 8.0, 8.0, 8.0]


@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_dice_ce_matches_monai(weights):
    torch.manual_seed(1)
    logits, labels = torch.randn(2, 4, 6, 6, 6), torch.randint(0, 4, (2, 1, 6, 6, 6))
    ours = DiceCELoss(class_weights=weights)(logits, labels)
    w = None if weights is None else torch.tensor(weights)
    theirs = monai.losses.DiceCELoss(softmax=True, to_onehot_y=True, weight=w)(logits, labels)
    assert torch.allclose(ours.total, theirs, atol=1e-6)
    assert sorted(ours.terms) == ["ce", "dice"]
    assert ours.terms["dice"] + ours.terms["ce"] == pytest.approx(theirs.item(), rel=1e-5)


def test_dice_ce_near_perfect_beats_random():
    labels = torch.randint(0, 4, (1, 1, 6, 6, 6))
    perfect = 10.0 * F.one_hot(labels[:, 0], 4).permute(0, 4, 1, 2, 3).float()
    loss = DiceCELoss(class_weights=WEIGHTS)
    assert loss(perfect, labels).total < 0.1 * loss(torch.randn(1, 4, 6, 6, 6), labels).total


def test_class_weights_change_ce_as_expected():
    torch.manual_seed(2)
    logits, labels = torch.randn(1, 4, 4, 4, 4), torch.randint(0, 4, (1, 1, 4, 4, 4))
    ce = DiceCELoss(class_weights=WEIGHTS)(logits, labels).terms["ce"]
    per_voxel = F.cross_entropy(logits, labels[:, 0], reduction="none")
    w = torch.tensor(WEIGHTS)[labels[:, 0]]
    assert ce == pytest.approx(((w * per_voxel).sum() / w.sum()).item(), rel=1e-5)  # weighted mean
    assert ce != pytest.approx(DiceCELoss()(logits, labels).terms["ce"], rel=1e-3)


def test_tversky_and_focal_variants_match_monai():
    torch.manual_seed(3)
    logits, labels = torch.randn(1, 3, 4, 4, 4), torch.randint(0, 3, (1, 4, 4, 4))  # (B, Z, Y, X) labels
    out = DiceCELoss(overlap="tversky", voxel="focal", tversky_alpha=0.3, tversky_beta=0.7)(logits, labels)
    assert sorted(out.terms) == ["focal", "tversky"]
    tversky = monai.losses.TverskyLoss(to_onehot_y=True, softmax=True, alpha=0.3, beta=0.7)(logits, labels[:, None])
    focal = monai.losses.FocalLoss(to_onehot_y=True, use_softmax=True)(logits, labels[:, None])
    assert out.terms["tversky"] == pytest.approx(tversky.item(), rel=1e-5)
    assert out.terms["focal"] == pytest.approx(focal.item(), rel=1e-5)
    with pytest.raises(ValueError, match="overlap"):
        DiceCELoss(overlap="jaccard")
    with pytest.raises(ValueError, match="labels"):
        DiceCELoss()(logits, labels[:, :2])


# ---- build_loss ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, dice_weight, terms",
    [
        ("dice_ce", 1.0, ["ce", "dice"]),
        ("dice_focal", 1.0, ["dice", "focal"]),
        ("focal", 1.0, ["dice", "focal"]),
        ("tversky_ce", 1.0, ["ce", "tversky"]),
        # The default weighs the overlap part 0: it is left out, not logged as if it counted.
        ("dice_ce", 0.0, ["ce"]),
        ("focal", 0.0, ["focal"]),
        ("tversky_ce", 0.0, ["ce"]),
    ],
)
def test_build_segmentation_losses(name, dice_weight, terms):
    loss = build_loss(LossConfig(name=name, dice_weight=dice_weight), n_classes=7)
    out = loss(torch.randn(1, 7, 4, 4, 4), torch.randint(0, 7, (1, 1, 4, 4, 4)))
    assert sorted(out.terms) == terms
    lambdas = {"dice": dice_weight, "tversky": dice_weight, "ce": 1.0, "focal": 1.0}
    assert float(out.total) == pytest.approx(sum(lambdas[t] * value for t, value in out.terms.items()), rel=1e-6)
    if name == "dice_ce":
        assert loss.voxel.weight.tolist() == [1.0] + [LossConfig().particle_weight] * 6


def test_overlap_alone_keeps_its_gradient_and_zero_weights_are_refused():
    logits = torch.randn(1, 7, 4, 4, 4, requires_grad=True)
    out = DiceCELoss(lambda_dice=1.0, lambda_ce=0.0)(logits, torch.randint(0, 7, (1, 1, 4, 4, 4)))
    assert sorted(out.terms) == ["dice"] and float(out.total.detach()) == pytest.approx(out.terms["dice"])
    out.total.backward()
    assert logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not both 0"):
        DiceCELoss(lambda_dice=0.0, lambda_ce=0.0)


def test_particle_label_smoothing_is_plain_weighted_ce_at_zero_and_softens_particles_only():
    torch.manual_seed(0)
    weight = torch.tensor([1.0, 82.0, 60.0, 24.0, 5.0, 8.0, 7.0])
    logits, labels = torch.randn(2, 7, 3, 3, 3), torch.randint(0, 7, (2, 3, 3, 3))
    plain = F.cross_entropy(logits, labels, weight=weight)
    assert float(particle_smoothed_cross_entropy(logits, labels, 0.0, weight)) == pytest.approx(float(plain), rel=1e-6)
    # One background voxel and one apo-ferritin voxel, both already near certain of their class.
    labels = torch.tensor([0, 1]).view(1, 2, 1, 1)
    confident = torch.zeros(1, 7, 2, 1, 1)
    confident[0, 0, 0], confident[0, 1, 1] = 10.0, 10.0
    leaf = confident.clone().requires_grad_(True)
    particle_smoothed_cross_entropy(leaf, labels, 0.1, weight).backward()
    assert float(leaf.grad[0, 0, 0]) < 0  # background stays one-hot: still pulled up
    assert float(leaf.grad[0, 1, 1]) > 0  # the particle's target is 0.9: pushed back down
    assert float(leaf.grad[0, 0, 1]) > 0  # and none of its 0.1 goes to background
    assert all(float(leaf.grad[0, c, 1]) < 0 for c in range(2, 7))  # but to the other particle classes
    with pytest.raises(ValueError, match="2 or more"):
        particle_smoothed_cross_entropy(torch.zeros(1, 2, 1, 1, 1), torch.zeros(1, 1, 1, 1, dtype=torch.long), 0.1)


def test_label_smoothing_reaches_the_loss_and_needs_the_cross_entropy():
    labels = torch.randint(0, 7, (1, 1, 3, 3, 3))
    logits = torch.randn(1, 7, 3, 3, 3)
    config = LossConfig(label_smoothing=0.2, particle_weighting="volume")
    loss = build_loss(config, n_classes=7, class_weights=segmentation_class_weights(config))
    expected = particle_smoothed_cross_entropy(logits, labels[:, 0], 0.2, loss.voxel.weight)
    assert float(loss(logits, labels).total) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="label_smoothing"):
        build_loss(LossConfig(name="focal", label_smoothing=0.1), n_classes=7)
    with pytest.raises(ValueError, match="label_smoothing"):
        DiceCELoss(label_smoothing=1.0)


def test_deep_supervision_weighs_the_heads_by_halves_and_equals_the_loss_when_they_agree():
    torch.manual_seed(0)
    labels = torch.randint(0, 7, (2, 1, 4, 4, 4))
    main, auxiliary = torch.randn(2, 7, 4, 4, 4), torch.randn(2, 7, 4, 4, 4)
    loss = DiceCELoss(lambda_dice=0.0, class_weights=[1.0] + [8.0] * 6)
    deep = DeepSupervisionLoss(loss)
    out = deep(torch.stack([main, auxiliary], dim=1), labels)
    expected = (float(loss(main, labels).total) + 0.5 * float(loss(auxiliary, labels).total)) / 1.5
    assert float(out.total) == pytest.approx(expected, rel=1e-6)
    assert out.terms["ce"] == pytest.approx(float(loss(main, labels).total), rel=1e-6)  # the main head's term
    assert out.terms["deep_supervision"] == pytest.approx(expected, rel=1e-6)
    same = deep(torch.stack([main, main, main], dim=1), labels)
    assert float(same.total) == pytest.approx(float(loss(main, labels).total), rel=1e-6)
    assert float(deep(main, labels).total) == float(loss(main, labels).total)  # one head (eval mode) passes through


def test_build_task_wraps_the_loss_for_a_deeply_supervised_model_only():
    plain = build_task(ModelConfig(name="dynunet"), TargetConfig(), LossConfig(), PostprocessConfig(), (10.0,) * 3)
    assert isinstance(plain.loss_fn, DiceCELoss)
    deep = build_task(
        ModelConfig(name="dynunet", deep_supervision=2), TargetConfig(), LossConfig(), PostprocessConfig(), (10.0,) * 3
    )
    assert isinstance(deep.loss_fn, DeepSupervisionLoss) and isinstance(deep.loss_fn.loss, DiceCELoss)
    heads = torch.randn(1, 3, 7, 4, 4, 4)
    torch.testing.assert_close(deep.dense_maps(heads), deep.dense_maps(heads[:, 0]))
    detector = ModelConfig(name="yolo3d", deep_supervision=1)
    with pytest.raises(ValueError, match="needs model.name='dynunet'"):
        build_task(
            detector,
            TargetConfig(kind="detection", stride=4),
            LossConfig(name="detection"),
            PostprocessConfig(),
            (10.0,) * 3,
        )


def test_build_detection_loss_and_errors():
    loss = build_loss(LossConfig(name="detection", lambda_box=2.0), n_classes=6)
    assert isinstance(loss, CompositeDetectionLoss)
    assert loss.class_weights == (1.0, 0.0, 2.0, 1.0, 2.0, 1.0) and loss.lambdas == (1.0, 1.0, 2.0)
    assert loss.smooth_l1_beta == 1.0
    assert build_loss(LossConfig(name="detection", smooth_l1_beta=0.1), n_classes=6).smooth_l1_beta == 0.1
    with pytest.raises(ValueError, match="smooth_l1_beta > 0"):
        build_loss(LossConfig(name="detection", smooth_l1_beta=0.0), n_classes=6)
    with pytest.raises(ValueError, match="loss name"):
        build_loss(LossConfig(name="hinge"), n_classes=6)
    with pytest.raises(ValueError, match="class_weights"):
        build_loss(LossConfig(), n_classes=7, class_weights=[1.0, 2.0])


def test_volume_weighting_gives_every_particle_the_same_weight_whatever_its_size():
    loss_config = LossConfig(particle_weighting="volume", particle_weight=32.0, background_weight=0.5)
    weights = segmentation_class_weights(loss_config)
    radii = [p.radius_angstrom for p in COMPETITION_CATALOG]
    assert weights[0] == 0.5 and len(weights) == len(radii) + 1
    # weight x ball volume is one constant: a particle's voxels together weigh the same for every class
    per_particle = [w * r**3 for w, r in zip(weights[1:], radii)]
    assert max(per_particle) == pytest.approx(min(per_particle), rel=1e-9)
    assert sum(weights[1:]) / len(radii) == pytest.approx(32.0)
    assert weights[1] > weights[3] > weights[4]  # apo-ferritin (60 A) > beta-galactosidase (90) > ribosome (150)
    assert segmentation_class_weights(LossConfig(particle_weight=8.0)) == [1.0] + [8.0] * len(radii)


def test_build_task_gives_the_ball_loss_the_configured_weighting_and_refuses_it_elsewhere():
    volume, spacing = LossConfig(particle_weighting="volume"), (10.0, 10.0, 10.0)
    task = build_task(ModelConfig(), TargetConfig(), volume, PostprocessConfig(), spacing)
    assert task.loss_fn.voxel.weight.tolist() == pytest.approx(segmentation_class_weights(volume))
    with pytest.raises(ValueError, match="particle_weighting.*'uniform', 'volume'"):
        build_task(ModelConfig(), TargetConfig(), LossConfig(particle_weighting="count"), PostprocessConfig(), spacing)
    with pytest.raises(ValueError, match="target.kind='gaussian' needs 'uniform'"):
        build_task(ModelConfig(), TargetConfig(kind="gaussian"), volume, PostprocessConfig(), spacing)
