"""Training through the shared trainer: loss goes down, frozen weights stay, run-folder rules."""

import json

import pytest
import torch
from etris.config import TrainConfig
from etris.models.etris import ETRIS_VARIANTS


def _cfg(**overrides):
    from etris.config import ETRISConfig

    model = ETRISConfig(**{**ETRIS_VARIANTS["etris_test_vit"], "word_len": 16})
    base = dict(model=model, dataset="shapes", batch_size=8, lr=1e-3, shapes_train=16, shapes_val=8)
    base.update(overrides)
    return TrainConfig(**base)


def test_training_lowers_the_loss_and_keeps_clip_weights():
    from etris.train import ETRISTask

    task = ETRISTask(_cfg(), seed=0)
    model = task.build_model().train()
    frozen = {k: v.clone() for k, v in model.backbone.named_parameters() if not v.requires_grad}
    opt = task.build_optimizer(model)
    batch = next(iter(task.train_dataloader()))
    losses = []
    for step in range(12):
        loss = task.training_step(model, batch, step).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    for name, param in model.backbone.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name


def test_scheduler_steps_by_epoch_at_the_milestone():
    from etris.train import ETRISTask

    task = ETRISTask(_cfg(milestones=(2,)))
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1e-4)
    sched = task.build_scheduler(opt, steps_per_epoch=3, epochs=4)
    lrs = []
    for _ in range(9):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:6] == [1e-4] * 6
    assert lrs[6:] == pytest.approx([1e-5] * 3)


def test_trainer_run_folder_resume_and_eval(tmp_path):
    from etris.train import ETRISTask

    from papers_shared.trainer import RunFolderError, Trainer, TrainerConfig

    out = tmp_path / "run"
    result = Trainer(ETRISTask(_cfg()), TrainerConfig(output_dir=out, epochs=1, device="cpu")).fit()
    assert (out / "model.safetensors").exists()
    assert "val_mIoU" in result.history[-1] and 0.0 <= result.history[-1]["val_mIoU"] <= 1.0
    with pytest.raises(RunFolderError):
        Trainer(ETRISTask(_cfg()), TrainerConfig(output_dir=out, epochs=1, device="cpu")).fit()
    with pytest.raises(RunFolderError, match="lr"):
        Trainer(
            ETRISTask(_cfg(lr=5e-4)),
            TrainerConfig(output_dir=out, epochs=2, resume=True, device="cpu"),
        ).fit()
    again = Trainer(
        ETRISTask(_cfg()), TrainerConfig(output_dir=out, epochs=1, resume=True, device="cpu")
    ).fit()
    assert again.nothing_to_do
    saved = json.loads((out / "config.json").read_text())
    assert saved["task"]["train"]["model"]["clip_model"] == "test-vit"


@pytest.mark.slow
def test_red_blue_squares_learns_the_named_square():
    """The reference miniature: two squares, the sentence names one colour; text must be used."""
    from etris.config import ETRISConfig
    from etris.data.transforms import normalize_image, tokenize
    from etris.evaluate import RISMetrics, predict_probs
    from etris.losses import etris_loss
    from etris.models import ETRIS

    def batch(n, gen):
        images = torch.full((n, 3, 96, 96), 120.0)
        masks = torch.zeros(n, 1, 96, 96)
        words = []
        for i in range(n):
            ys = torch.randint(0, 64, (2,), generator=gen)
            xs = torch.randint(0, 64, (2,), generator=gen)
            while abs(int(xs[0]) - int(xs[1])) < 33 and abs(int(ys[0]) - int(ys[1])) < 33:
                xs = torch.randint(0, 64, (2,), generator=gen)
            colours = [(220.0, 40.0, 40.0), (40.0, 60.0, 220.0)]
            for c in range(2):
                images[i, :, ys[c] : ys[c] + 32, xs[c] : xs[c] + 32] = torch.tensor(colours[c])[
                    :, None, None
                ]
            target = int(torch.randint(0, 2, (1,), generator=gen))
            masks[i, 0, ys[target] : ys[target] + 32, xs[target] : xs[target] + 32] = 1
            words.append(("red", "blue")[target])
        return torch.stack([normalize_image(im) for im in images]), tokenize(words, 8), masks, words

    import copy

    cfg = copy.deepcopy(ETRIS_VARIANTS["etris_test_vit"])
    cfg["clip_config"]["vision_cfg"]["image_size"] = 96
    torch.manual_seed(0)
    model = ETRIS(ETRISConfig(**{**cfg, "image_size": 96, "num_layers": 1})).train()
    frozen = {k: v.clone() for k, v in model.backbone.named_parameters() if not v.requires_grad}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        images, ids, masks, _ = batch(16, gen)
        loss = etris_loss(model(images, ids), masks)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    images, ids, masks, words = batch(64, torch.Generator().manual_seed(123))
    metrics = RISMetrics()
    with torch.no_grad():
        metrics.update(predict_probs(model, images, ids)[:, 0] > 0.35, masks[:, 0] > 0.5)
        flipped = tokenize([{"red": "blue", "blue": "red"}[w] for w in words], 8)
        other = predict_probs(model, images, flipped)[:, 0] > 0.35
    assert metrics.compute()["mIoU"] > 0.6
    changed = (other != (predict_probs(model, images, ids)[:, 0] > 0.35)).float().mean()
    assert changed > 0.05  # changing the sentence moves the mask
    for name, param in model.backbone.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name
