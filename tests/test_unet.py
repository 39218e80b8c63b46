"""The U-Net family: output shapes per architecture and stride, argument checks (MONAI's test shape)."""

from __future__ import annotations

import pytest
import torch

from cryokit.models.unet import segmentation_unet


@pytest.mark.parametrize("architecture", ["unet", "basicunet", "segresnet", "flexibleunet", "dynunet"])
@pytest.mark.parametrize("output_stride", [1, 2])
def test_output_shape(architecture, output_stride):
    # The body halves the input 2 (unet, segresnet), 4 (basicunet) or 5 (flexibleunet's ResNet) times.
    halvings = {"unet": 2, "segresnet": 2, "basicunet": 4, "flexibleunet": 5, "dynunet": 2}[architecture]
    size = (2 ** (halvings + 1) * output_stride,) * 3  # instance norms need 2+ voxels at the bottom
    net = segmentation_unet(
        architecture, out_channels=7, channels=(8, 16, 32), strides=(2, 2), output_stride=output_stride
    ).eval()
    with torch.no_grad():
        logits = net(torch.zeros(1, 1, *size))
    assert logits.shape == (1, 7, *(n // output_stride for n in size))


@pytest.mark.parametrize("output_stride", [1, 2])
def test_deep_supervision_heads_in_training_and_the_main_head_alone_in_eval(output_stride):
    net = segmentation_unet(
        "dynunet", 7, (4, 8, 16), (2, 2), num_res_units=1, output_stride=output_stride, deep_supervision=1
    )
    image = torch.randn(2, 1, *(8 * output_stride,) * 3)
    heads = net.train()(image)
    assert heads.shape == (2, 2, 7, 8, 8, 8)  # (B, main + 1 auxiliary head, C, z, y, x)
    with torch.no_grad():
        main = net.eval()(image)
    assert main.shape == (2, 7, 8, 8, 8)
    # The auxiliary head is upsampled from a deeper decoder level: not a copy of the main head.
    assert not torch.allclose(heads[:, 0], heads[:, 1])


def test_half_resolution_cells_see_their_own_voxels():
    """Output cell j of a stride-2 network depends on voxels [2j, 2j+2) through the stem only."""
    torch.manual_seed(0)
    net = segmentation_unet("unet", 7, (4, 8), (2,), num_res_units=0, output_stride=2)
    image = torch.randn(1, 1, 8, 8, 8, requires_grad=True)
    # The stem's convolution (its instance norm then mixes in volume-wide statistics, no positions).
    net.stem[0](image)[0, :, 1, 2, 3].sum().backward()  # output cell (1, 2, 3)
    reached = image.grad[0, 0].abs() > 0
    expected = torch.zeros_like(reached)
    expected[2:4, 4:6, 6:8] = True  # voxels [2j, 2j + 2) on each axis
    assert torch.equal(reached, expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"channels": (8, 16), "strides": (2, 2)}, "one entry fewer"),
        ({"output_stride": 4}, "output_stride must be 1 or 2"),
        ({"out_channels": 1}, "background and at least one class"),
        ({"architecture": "vnet"}, "architecture must be one of"),
        ({"deep_supervision": 1}, "needs architecture 'dynunet'"),
        ({"architecture": "dynunet", "channels": (8, 16), "strides": (2,)}, "3 or more levels"),
        ({"architecture": "dynunet", "deep_supervision": 3}, "at most len.strides. - 1 = 2"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        segmentation_unet(**kwargs)
