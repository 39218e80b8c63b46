"""MedicalNet 3D ResNet-18: key layout, shapes and strides, checkpoint loading and its errors."""

from __future__ import annotations

import pytest
import torch

from cryokit.models.resnet3d import MedicalNetResNet, load_medicalnet_weights, medicalnet_resnet18

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _expected_keys(shortcut_type: str) -> list[str]:
    """MedicalNet's ``resnet18`` state-dict keys (Tencent/MedicalNet models/resnet.py), without conv_seg.

    Stem ``conv1``/``bn1``; four layers of two BasicBlocks (``conv1``, ``bn1``, ``conv2``, ``bn2``). Only
    the first block of layers 2, 3, 4 changes width (64->128->256->512), so with shortcut "B" only those
    three blocks own ``downsample.0`` (1x1x1 conv, no bias) and ``downsample.1`` (batch norm); shortcut
    "A" has no parameters.
    """
    keys = ["conv1.weight"] + [f"bn1.{k}" for k in BN]
    for layer in (1, 2, 3, 4):
        for block in (0, 1):
            prefix = f"layer{layer}.{block}."
            keys += [prefix + "conv1.weight"] + [prefix + f"bn1.{k}" for k in BN]
            keys += [prefix + "conv2.weight"] + [prefix + f"bn2.{k}" for k in BN]
            if shortcut_type == "B" and layer > 1 and block == 0:
                keys += [prefix + "downsample.0.weight"] + [prefix + f"downsample.1.{k}" for k in BN]
    return keys


@pytest.mark.parametrize("shortcut_type", ["A", "B"])
def test_state_dict_keys_follow_medicalnet(shortcut_type):
    model = medicalnet_resnet18(shortcut_type)
    assert list(model.state_dict()) == _expected_keys(shortcut_type)


def test_shapes_strides_and_dilations_follow_medicalnet():
    model = medicalnet_resnet18("B")
    state = model.state_dict()
    assert state["conv1.weight"].shape == (64, 1, 7, 7, 7)
    assert (model.conv1.stride, model.conv1.padding, model.conv1.bias) == ((2, 2, 2), (3, 3, 3), None)
    assert (model.maxpool.kernel_size, model.maxpool.stride, model.maxpool.padding) == (3, 2, 1)
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1, 1)
    assert state["layer3.0.conv1.weight"].shape == (256, 128, 3, 3, 3)
    assert state["layer4.1.conv2.weight"].shape == (512, 512, 3, 3, 3)
    for layer, stride, dilation in ((model.layer2, 2, 1), (model.layer3, 1, 2), (model.layer4, 1, 4)):
        assert layer[0].conv1.stride == (stride,) * 3
        assert layer[1].conv2.dilation == layer[1].conv2.padding == (dilation,) * 3


def test_parameter_count_matches_medicalnet_readme():
    # MedicalNet's README lists 3D-ResNet18 at 32.99 M parameters (shortcut A, as its checkpoint).
    n = sum(p.numel() for p in medicalnet_resnet18("A").parameters())
    assert round(n / 1e6, 2) == 32.99


def test_feature_shapes_and_strides():
    model = medicalnet_resnet18().eval()
    with torch.no_grad():
        features = model(torch.randn(1, 1, 32, 64, 64))
    for name, tensor in features.items():
        s = model.feature_strides[name]
        assert tensor.shape == (1, model.feature_channels[name], 32 // s, 64 // s, 64 // s), name
    assert model.total_stride == 8


@pytest.mark.parametrize("shortcut_type", ["A", "B"])
def test_half_width_keeps_the_layout_with_half_the_channels(shortcut_type):
    """``width=32`` is the same ResNet-18 (keys, strides, dilations) with every width halved: features of
    32, 32, 64, 128 and 256 channels at the strides of width 64, and about a quarter of the parameters."""
    narrow, full = medicalnet_resnet18(shortcut_type, width=32), medicalnet_resnet18(shortcut_type)
    assert list(narrow.state_dict()) == _expected_keys(shortcut_type)
    assert narrow.feature_channels == {"stem": 32, "layer1": 32, "layer2": 64, "layer3": 128, "layer4": 256}
    assert full.feature_channels == {"stem": 64, "layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
    with torch.no_grad():
        features = narrow.eval()(torch.randn(1, 1, 16, 32, 32))
    for name, tensor in features.items():
        s = narrow.feature_strides[name]
        assert tensor.shape == (1, narrow.feature_channels[name], 16 // s, 32 // s, 32 // s), name
    assert narrow.layer4[1].conv2.dilation == full.layer4[1].conv2.dilation == (4, 4, 4)
    n_narrow, n_full = (sum(p.numel() for p in m.parameters()) for m in (narrow, full))
    assert 0.24 < n_narrow / n_full < 0.27


def test_pretrained_weights_need_medicalnets_width(tmp_path, source_model):
    path = tmp_path / "resnet_18.pth"
    torch.save(_medicalnet_checkpoint(source_model), path)
    with pytest.raises(ValueError, match=rf"{path}.*width 64; got width 32"):
        medicalnet_resnet18("A", weights_path=path, width=32)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="width must be an integer >= 1"):
            MedicalNetResNet(width=bad)


def test_shortcut_a_subsamples_and_zero_pads():
    shortcut = medicalnet_resnet18("A").layer2[0].downsample
    x = torch.randn(1, 64, 4, 4, 4)
    out = shortcut(x)
    assert out.shape == (1, 128, 2, 2, 2)
    assert torch.equal(out[:, :64], x[:, :, ::2, ::2, ::2])
    assert not out[:, 64:].any()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="shortcut_type"):
        medicalnet_resnet18("C")
    with pytest.raises(ValueError, match="blocks_per_layer"):
        MedicalNetResNet((2, 2, 2))
    with pytest.raises(ValueError, match=r"\(1, 2, 16, 16, 16\)"):
        medicalnet_resnet18()(torch.zeros(1, 2, 16, 16, 16))


def _medicalnet_checkpoint(source: MedicalNetResNet) -> dict:
    """A checkpoint as MedicalNet saves it: DataParallel prefix, segmentation head, under 'state_dict'."""
    state = {f"module.{k}": v.clone() for k, v in source.state_dict().items()}
    state["module.conv_seg.0.weight"] = torch.randn(512, 32, 2, 2, 2)
    state["module.conv_seg.6.weight"] = torch.randn(2, 32, 1, 1, 1)
    return {"state_dict": state}


@pytest.fixture(scope="module")
def source_model():
    model = MedicalNetResNet((2, 2, 2, 2), "A")
    with torch.no_grad():
        for buffer in model.buffers():
            buffer.add_(torch.rand_like(buffer.float()).to(buffer.dtype))
    return model


def test_load_medicalnet_checkpoint(tmp_path, source_model):
    path = tmp_path / "resnet_18.pth"
    torch.save(_medicalnet_checkpoint(source_model), path)
    model = medicalnet_resnet18("A")
    report = load_medicalnet_weights(model, path)
    for key, value in source_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert set(report.loaded) == set(source_model.state_dict())
    assert report.skipped == ("conv_seg.0.weight", "conv_seg.6.weight")
    assert report.path == str(path)


def test_load_bare_state_dict_without_batch_counters(tmp_path, source_model):
    # Checkpoints from PyTorch < 0.4.1 carry no num_batches_tracked buffers.
    state = {k: v for k, v in source_model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "bare.pth"
    torch.save(state, path)
    model = medicalnet_resnet18("A")
    report = load_medicalnet_weights(model, path)
    assert torch.equal(model.layer4[1].conv2.weight, source_model.layer4[1].conv2.weight)
    assert report.kept_default and all(k.endswith("num_batches_tracked") for k in report.kept_default)


def test_mismatched_checkpoint_lists_missing_unexpected_and_shapes(tmp_path, source_model):
    state = _medicalnet_checkpoint(source_model)["state_dict"]
    state["module.conv1.weight"] = torch.zeros(64, 3, 7, 7, 7)
    del state["module.layer4.1.conv2.weight"]
    state["module.fc.weight"] = torch.zeros(2, 512)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        load_medicalnet_weights(medicalnet_resnet18("A"), path)
    message = str(info.value)
    assert str(path) in message
    assert "missing keys ['layer4.1.conv2.weight']" in message
    assert "unexpected keys ['fc.weight']" in message
    assert "conv1.weight: checkpoint (64, 3, 7, 7, 7) vs model (64, 1, 7, 7, 7)" in message


def test_shortcut_a_checkpoint_refused_by_shortcut_b_model(tmp_path, source_model):
    path = tmp_path / "a.pth"
    torch.save(_medicalnet_checkpoint(source_model), path)
    with pytest.raises(ValueError, match=r"missing keys \['layer2.0.downsample.0.weight'"):
        load_medicalnet_weights(medicalnet_resnet18("B"), path)


def test_corrupted_and_missing_files(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a torch checkpoint")
    with pytest.raises(ValueError, match="broken.pth is not a readable torch checkpoint"):
        load_medicalnet_weights(medicalnet_resnet18(), path)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_medicalnet_weights(medicalnet_resnet18(), tmp_path / "absent.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth holds no state dict"):
        load_medicalnet_weights(medicalnet_resnet18(), tmp_path / "list.pth")
