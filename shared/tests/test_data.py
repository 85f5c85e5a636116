import pytest
import torch

from papers_shared.data import load_digits
from papers_shared.dg import ColoredDigits, RotatedDigits


def test_digits_are_real_and_normalised():
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8) and labels.shape == (1797,)
    assert images.min() >= 0 and images.max() == 1
    assert torch.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_resize():
    images, _ = load_digits(16)
    assert images.shape == (1797, 1, 16, 16) and images.min() >= 0 and images.max() <= 1
    with pytest.raises(ValueError, match="size"):
        load_digits(2)


def test_rotated_digits_domains():
    data = RotatedDigits(size=16)
    assert len(data) == 6 and data.input_shape == (1, 16, 16) and data.num_classes == 10
    sizes = [len(d) for d in data.datasets]
    assert sum(sizes) == 1797 and max(sizes) - min(sizes) <= 1
    # rotation moves mass: the 75-degree domain differs from the same digits un-rotated
    x0 = data.datasets[0].tensors[0]
    assert x0.shape[1:] == (1, 16, 16)
    mean_0 = data.datasets[0].tensors[0].mean(0)
    mean_75 = data.datasets[5].tensors[0].mean(0)
    assert (mean_0 - mean_75).abs().max() > 0.05


def test_colored_digits_colour_agreement_per_domain():
    data = ColoredDigits(size=8)
    assert data.input_shape == (2, 8, 8) and data.num_classes == 2
    for expected, dataset in zip((0.9, 0.8, 0.1), data.datasets):
        x, y = dataset.tensors
        green = (x[:, 1].sum((1, 2)) > 0).long()  # colour 1 keeps the green channel
        red = (x[:, 0].sum((1, 2)) > 0).long()
        assert torch.all(green + red == 1)
        agreement = (green == y).float().mean().item()
        assert abs(agreement - expected) < 0.06


def test_bad_test_env_is_rejected():
    with pytest.raises(ValueError, match="test_envs"):
        RotatedDigits(test_envs=[6])
