"""The trainer learns, validates on the metric, resumes to the same weights, and stops early."""

from __future__ import annotations

import pytest
import torch
from conftest import blob_config, make_blob_layout

from cryokit.config import apply_overrides, replace
from cryokit.io import KaggleSource
from cryokit.models.build import build_model_and_task, sliding_window
from cryokit.training.checkpoint import load_checkpoint, load_model
from cryokit.training.loop import evaluate, fit, lr_at

RUNS = ("TS_a", "TS_b", "TS_c")


@pytest.fixture(scope="module")
def blob_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("blobs")
    make_blob_layout(root, runs=RUNS)
    return root


def _untrained_score_then_fit(config, blob_root):
    """Validation F4 of the configured network before training (seed 0), and the result of training it."""
    torch.manual_seed(0)
    untrained, task = build_model_and_task(config, (20.0, 20.0, 20.0))
    window = sliding_window(config.patch)
    before = evaluate(untrained, task, KaggleSource(blob_root), ["TS_c"], window, torch.device("cpu")).score
    return before, fit(config, progress=False)


def test_learning_raises_the_score_above_the_untrained_model(blob_root, tmp_path):
    before, result = _untrained_score_then_fit(blob_config(blob_root, tmp_path / "run", epochs=4), blob_root)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0]
    assert result.best_score > before + 0.1
    assert result.best_score > 0.2  # two weight-1 classes present: at most 2/7
    assert set(result.thresholds) == {"apo-ferritin", "ribosome"}
    assert (tmp_path / "run" / "val_table.csv").is_file() and (tmp_path / "run" / "thresholds.json").is_file()
    # The saved thresholds are the best epoch's validation optimum times postprocess.threshold_scale.
    config = blob_config(blob_root, tmp_path / "run", epochs=4)
    best = load_model(result.best_checkpoint)
    again = evaluate(
        best.model,
        best.task,
        KaggleSource(blob_root),
        ["TS_c"],
        sliding_window(config.patch),
        torch.device("cpu"),
        level=config.data.level,
        threshold_scale=config.postprocess.threshold_scale,
    )
    assert again.score == pytest.approx(result.best_score)
    assert result.thresholds == pytest.approx(again.saved_thresholds)
    assert again.saved_thresholds == pytest.approx({k: 0.8 * t for k, t in again.thresholds.items()})


def test_a_deeply_supervised_dynunet_learns(blob_root, tmp_path):
    config = blob_config(blob_root, tmp_path / "deep", epochs=4)
    config = apply_overrides(
        config,
        {"model.name": "dynunet", "model.deep_supervision": 1, "model.channels": [8, 16, 16], "model.strides": [2, 2]},
    )
    before, result = _untrained_score_then_fit(config, blob_root)
    losses = [h["train_loss"] for h in result.history]
    assert all("train_deep_supervision" in h for h in result.history)  # both heads were trained
    assert losses[-1] < 0.8 * losses[0]
    assert result.best_score > before + 0.1
    assert load_model(result.best_checkpoint).model(torch.zeros(1, 1, 16, 32, 32)).ndim == 5  # eval: main head


def test_resume_reaches_the_weights_of_an_uninterrupted_run(blob_root, tmp_path):
    config = blob_config(blob_root, tmp_path / "straight", epochs=3, ema_decay=0.9)
    fit(config, progress=False)

    class Interrupt(Exception):
        pass

    def stop_after_first(epoch, metrics):
        if epoch == 1:
            raise Interrupt

    resumed = replace(config, train=replace(config.train, out_dir=str(tmp_path / "resumed")))
    with pytest.raises(Interrupt):
        fit(resumed, on_epoch_end=stop_after_first, progress=False)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    fit(resumed, resume=True, progress=False)
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    again = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert again["epoch"] == straight["epoch"] == 3 and again["step"] == straight["step"]
    for key in ("model", "ema"):
        for name, tensor in straight[key].items():
            torch.testing.assert_close(again[key][name], tensor, rtol=0, atol=0, msg=f"{key}.{name} differs")
    assert [h["train_loss"] for h in again["history"]] == [h["train_loss"] for h in straight["history"]]


def test_checkpoint_describes_itself(blob_root, tmp_path):
    config = blob_config(blob_root, tmp_path / "run", epochs=1)
    result = fit(config, progress=False)
    loaded = load_model(result.best_checkpoint)
    assert loaded.config == config
    assert loaded.thresholds == result.thresholds
    assert not loaded.model.training
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.pt is not a cryokit checkpoint: cannot be read"):
        load_model(tmp_path / "broken.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        load_model(tmp_path / "missing.pt")


def test_early_stopping_when_validation_stalls(blob_root, tmp_path):
    # lr = 0 never changes the model, so the first validation is never beaten.
    config = blob_config(blob_root, tmp_path / "run", epochs=5, early_stopping_patience=2)
    config = replace(config, train=replace(config.train, lr=0.0))
    result = fit(config, progress=False)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.best_epoch == 1


def test_learning_rate_warms_up_then_decays():
    rates = [lr_at(step, 100, 1.0, 10) for step in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert rates[-1] == pytest.approx(0.05, abs=0.01)


def test_init_from_starts_with_the_checkpoints_weights_and_names_a_mismatch(blob_root, tmp_path):
    pretrained = fit(blob_config(blob_root, tmp_path / "pretrain", epochs=2, ema_decay=0.5), progress=False)
    source_weights = load_checkpoint(pretrained.best_checkpoint)["ema"]  # EMA weights are the ones taken
    # lr = 0: fine-tuning changes nothing, so the run's weights are exactly the checkpoint's.
    tuned = fit(
        blob_config(blob_root, tmp_path / "tune", epochs=1, lr=0.0, init_from=str(pretrained.best_checkpoint)),
        progress=False,
    )
    weights = load_checkpoint(tuned.last_checkpoint)["model"]
    for name, tensor in source_weights.items():
        torch.testing.assert_close(weights[name], tensor, rtol=0, atol=0, msg=name)
    assert tuned.best_score == pytest.approx(pretrained.best_score, abs=1e-9)
    scratch = fit(blob_config(blob_root, tmp_path / "scratch", epochs=1, lr=0.0), progress=False)
    assert scratch.best_score < tuned.best_score - 0.1  # the weights did come over
    wider = apply_overrides(
        blob_config(blob_root, tmp_path / "wider", epochs=1, init_from=str(pretrained.best_checkpoint)),
        {"model.channels": [4, 8]},
    )
    named = r"(?s)initialise from .*best\.pt.*0\.conv\.weight: checkpoint \(8, 1, 3, 3, 3\), model \(4, 1"
    with pytest.raises(ValueError, match=named):
        fit(wider, progress=False)
    assert not (tmp_path / "wider" / "last.pt").exists()


def test_cpu_bf16_runs_the_training_steps_in_bf16_and_still_learns(blob_root, tmp_path, monkeypatch):
    import cryokit.inference.device as device
    import cryokit.training.loop as loop

    monkeypatch.setattr(device, "cpu_native_bf16", lambda cpuinfo="/proc/cpuinfo": True)  # any CPU runs bf16
    seen, to_fp32 = [], loop._float32
    monkeypatch.setattr(loop, "_float32", lambda output: (seen.append(output.dtype), to_fp32(output))[1])
    result = fit(blob_config(blob_root, tmp_path / "bf16", epochs=4, cpu_bf16=True), progress=False)
    assert set(seen) == {torch.bfloat16}  # the network's outputs; the loss is taken in fp32
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0] and result.best_score > 0.2
    seen.clear()
    fit(blob_config(blob_root, tmp_path / "fp32", epochs=1), progress=False)
    assert set(seen) == {torch.float32}  # cpu_bf16 is off by default


def test_a_step_with_non_finite_gradients_is_skipped(blob_root, tmp_path, monkeypatch, caplog):
    real_clip = torch.nn.utils.clip_grad_norm_

    def overflowing(parameters, max_norm):  # what clipping reports after a bf16 backward overflowed
        real_clip(parameters, max_norm)
        return torch.tensor(float("inf"))

    frozen = fit(blob_config(blob_root, tmp_path / "lr0", epochs=1, lr=0.0), progress=False)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", overflowing)
    skipped = fit(blob_config(blob_root, tmp_path / "inf", epochs=1), progress=False)
    steps = len([r for r in caplog.records if "non-finite gradients at epoch 1, step" in r.getMessage()])
    assert steps > 0 and all(h["train_loss"] == h["train_loss"] for h in skipped.history)  # no NaN loss
    weights = load_checkpoint(skipped.best_checkpoint)["model"]
    for name, tensor in load_checkpoint(frozen.best_checkpoint)["model"].items():
        torch.testing.assert_close(weights[name], tensor)  # every step skipped: the initial weights
