import dyt
import pytest
import torch
from dyt.losses import DyTLoss

COLOURS = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])


def coloured_patch_batch(batch: int, generator: torch.Generator, grid: int = 4, patch: int = 8):
    """Noise images with one class-coloured patch at a random grid cell.

    Returns images (B, 3, grid*patch, grid*patch), labels (B,), patch index (B,).
    """
    size = grid * patch
    images = 0.3 * torch.randn(batch, 3, size, size, generator=generator)
    labels = torch.randint(0, 4, (batch,), generator=generator)
    cells = torch.randint(0, grid * grid, (batch,), generator=generator)
    for i in range(batch):
        row, col = divmod(int(cells[i]), grid)
        images[i, :, row * patch : (row + 1) * patch, col * patch : (col + 1) * patch] = COLOURS[
            labels[i]
        ][:, None, None]
    return images, labels, cells


def run_tiny_training(tiny_vit, depth: int, width: int, steps: int, seed: int = 0):
    torch.manual_seed(seed)
    vit = tiny_vit(depth=depth, embed_dim=width, num_heads=2, num_classes=4)
    model = dyt.convert_vit(vit, rate=0.25, num_classes=4)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=1e-4)
    criterion = DyTLoss(rate=0.25, alpha=2.0)
    generator = torch.Generator().manual_seed(seed)
    frozen_before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    train_rates = []
    model.train()
    for _ in range(steps):
        images, labels, _ = coloured_patch_batch(32, generator)
        logits, aux = dyt.forward_dyt(model, images)
        complete = dyt.forward_dyt(model, images, complete=True)[0]
        losses = criterion(logits, labels, aux["token_select"], complete)
        optimizer.zero_grad()
        losses.total.backward()
        optimizer.step()
        train_rates.append(float(losses.activation))
    for name, param in model.named_parameters():
        if name in frozen_before:
            assert torch.equal(param, frozen_before[name]), f"frozen {name} changed"
    model.eval()
    images, labels, cells = coloured_patch_batch(256, generator)
    with torch.no_grad():
        logits, aux = dyt.forward_dyt(model, images)
    masks = aux["token_select"].squeeze(-1)  # (B, L, N)
    informative = masks[torch.arange(len(cells)), :, cells].mean()
    accuracy = (logits.argmax(-1) == labels).float().mean()
    return sum(train_rates[-20:]) / 20, float(informative), float(masks.mean()), float(accuracy)


def test_tiny_training_hits_rate_and_activates_informative_patch(tiny_vit):
    train_rate, informative, average, _ = run_tiny_training(tiny_vit, depth=2, width=32, steps=120)
    assert abs(train_rate - 0.25) <= 0.05
    assert informative >= 2 * average


@pytest.mark.slow
def test_longer_training_reaches_high_accuracy(tiny_vit):
    train_rate, informative, average, accuracy = run_tiny_training(
        tiny_vit, depth=4, width=64, steps=300
    )
    assert abs(train_rate - 0.25) <= 0.05
    assert informative >= 2 * average
    assert accuracy >= 0.9
