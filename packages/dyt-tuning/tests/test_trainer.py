import json
from pathlib import Path

import pytest
import torch
from dyt.cli import main
from dyt.config import get_train_preset
from dyt.data.vtab import VTABFolder, read_split_file, vtab_group_means
from dyt.train import cosine_lr
from PIL import Image

from papers_shared.distributed import run_torchrun

TINY = '{"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}'


def make_vtab_task(root: Path, name: str = "eurosat", per_class: int = 4) -> Path:
    """A fake VTAB-1K task folder: coloured squares, two classes, both split files."""
    folder = root / name
    (folder / "images").mkdir(parents=True)
    lines = []
    for label, colour in enumerate([(250, 20, 20), (20, 20, 250)]):
        for i in range(per_class):
            path = f"images/{label}_{i}.png"
            Image.new("RGB", (40, 40), colour).save(folder / path)
            lines.append(f"{path} {label}")
    (folder / "train800val200.txt").write_text("\n".join(lines) + "\n")
    (folder / "test.txt").write_text("\n".join(lines[::2]) + "\n")
    return folder


def _train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data-root", str(root), "--task", "eurosat", "--model-overrides", TINY,
            "--img-size", "32", "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "4",
            "--num-workers", "0", "--eval-every", "1", "--output-dir", str(out), "--device", "cpu",
            "--no-progress", *extra]  # fmt: skip


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def test_vtab_folder_reads_split_and_images(tmp_path):
    folder = make_vtab_task(tmp_path)
    dataset = VTABFolder(folder, "train800val200")
    image, label = dataset[0]
    assert image.shape == (3, 224, 224) and label == 0
    assert dataset.num_classes == 10  # eurosat has 10 classes even if fewer are present
    assert image.min() >= -1.0 and image.max() <= 1.0


def test_malformed_split_file_and_missing_folder_raise(tmp_path):
    bad = tmp_path / "test.txt"
    bad.write_text("images/a.png\n")
    with pytest.raises(ValueError, match="relative/path label"):
        read_split_file(bad)
    with pytest.raises(FileNotFoundError, match="VTAB task folder"):
        VTABFolder(tmp_path / "nope")


def test_group_mean_is_mean_of_three_group_means():
    accuracies = {"cifar": 70.0, "dtd": 80.0, "eurosat": 90.0, "clevr_count": 60.0}
    means = vtab_group_means(accuracies)
    assert means["natural"] == 75.0 and means["specialized"] == 90.0 and means["structured"] == 60.0
    assert means["group_mean"] == pytest.approx(75.0)
    with pytest.raises(ValueError, match="unknown VTAB task"):
        vtab_group_means({"imagenet": 1.0})


def test_presets_follow_the_paper():
    vtab = get_train_preset("vtab")
    assert (vtab.dyt.bottleneck, vtab.dyt.adapter_scale, vtab.lr, vtab.weight_decay) == (
        8,
        1.0,
        1e-3,
        1e-4,
    )
    assert (vtab.batch_size, vtab.epochs, vtab.warmup_epochs, vtab.min_lr) == (64, 100, 10, 1e-5)
    assert get_train_preset("vtab_official_script").dyt.bottleneck == 16
    full = get_train_preset("full_image")
    assert (full.dyt.bottleneck, full.dyt.adapter_scale, full.lr_is_base) == (64, 0.1, True)
    assert (full.batch_size, full.weight_decay, full.warmup_epochs) == (1024, 0.01, 20)
    for name, epochs, protocol in [("video_k400", 12, "k400"), ("video_ssv2", 50, "ssv2")]:
        video = get_train_preset(name)
        assert (video.num_frames, video.epochs, video.warmup_epochs) == (8, epochs, 2)
        assert (video.batch_size, video.dyt.bottleneck, video.dyt.adapter_scale) == (128, 64, 0.1)
        assert video.video_protocol == protocol
    with pytest.raises(ValueError, match="unknown preset"):
        get_train_preset("imagenet")
    with pytest.raises(ValueError, match="video_protocol"):
        get_train_preset("video_ssv2", video_protocol="ucf")


def test_schedule_warms_up_then_decays_to_floor():
    values = [cosine_lr(s, 100, 10, 1e-3, 1e-5) for s in range(101)]
    assert values[0] == pytest.approx(1e-4) and values[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(values[9:], values[10:]))
    assert values[100] == pytest.approx(1e-5)


def test_train_eval_report_commands_on_fake_vtab(tmp_path, capsys):
    make_vtab_task(tmp_path)
    out = tmp_path / "run"
    assert main(_train_args(tmp_path, out)) == 0
    records = _history(out)
    assert [r["epoch"] for r in records] == [1, 2]
    assert "eval_accuracy" in records[-1] and records[-1]["eval_gflops"] > 0
    assert records[-1]["train_rate"] >= 0 and records[-1]["train_kl"] > -1e-5
    assert records[-1]["step"] == 4  # 8 images, global batch 4, 2 epochs
    saved = json.loads((out / "config.json").read_text())
    assert saved["task"]["model_overrides"]["depth"] == 2 and saved["task"]["task"] == "eurosat"
    assert (out / "model.safetensors").exists() and (out / "checkpoint").is_dir()
    capsys.readouterr()
    assert main(["eval", str(out), "--num-workers", "0", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_images"] == 4 and 0 <= result["activation"] <= 1
    assert result["path"] == "packed"
    # the saved weights reproduce the last training evaluation
    assert result["accuracy"] == records[-1]["eval_accuracy"]
    assert result["gflops"] == pytest.approx(records[-1]["eval_gflops"])
    assert result["activation"] == pytest.approx(records[-1]["eval_activation"])


def test_eval_dense_reports_the_dense_paths_flops(tmp_path, capsys):
    make_vtab_task(tmp_path)
    out = tmp_path / "run"
    assert main(_train_args(tmp_path, out, "--epochs", "1", "--warmup-epochs", "0")) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--num-workers", "0", "--device", "cpu"]) == 0
    packed = json.loads(capsys.readouterr().out)
    assert main(["eval", str(out), "--num-workers", "0", "--device", "cpu", "--dense"]) == 0
    dense = json.loads(capsys.readouterr().out)
    assert dense["accuracy"] == packed["accuracy"] and dense["path"] == "dense"
    from dyt.flops import ViTDims, dyt_flops

    complete = dyt_flops(ViTDims(num_patches=16, embed_dim=32, depth=2, mlp_hidden=128,
                                 patch_size=8, num_classes=10), 8)  # fmt: skip
    assert dense["gflops"] == pytest.approx(complete.gflops)
    assert packed["activation"] < 1 and packed["gflops"] < dense["gflops"]


def test_official_checkpoint_with_namespace_args_evaluates(tmp_path, capsys):
    """A file written like the official scripts ({"model", "args": Namespace, "epoch"}) loads."""
    import argparse

    from safetensors.torch import load_file

    make_vtab_task(tmp_path)
    out = tmp_path / "run"
    assert main(_train_args(tmp_path, out, "--epochs", "1", "--warmup-epochs", "0")) == 0
    weights = {k.removeprefix("model."): v for k, v in load_file(out / "model.safetensors").items()}
    official = tmp_path / "checkpoint-best.pth"
    torch.save({"model": weights, "args": argparse.Namespace(lr=1e-3, rate=0.5), "epoch": 0},
               official)  # fmt: skip
    capsys.readouterr()
    assert main(["eval", str(out), "--num-workers", "0", "--device", "cpu"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert main(["eval", str(out), "--checkpoint", str(official), "--num-workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == ours["accuracy"]


def test_report_says_when_the_group_mean_is_partial(tmp_path, capsys, caplog):
    make_vtab_task(tmp_path)
    out = tmp_path / "run"
    assert main(_train_args(tmp_path, out, "--epochs", "1", "--warmup-epochs", "0")) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["partial"] is True and len(summary["missing_tasks"]) == 18
    assert set(summary["tasks"]) == {"eurosat"} and "specialized" in summary
    assert "partial: 1 of 19" in caplog.text


def test_train_without_pretrained_backbone_warns(tmp_path, caplog):
    make_vtab_task(tmp_path)
    assert (
        main(_train_args(tmp_path, tmp_path / "run", "--epochs", "1", "--warmup-epochs", "0")) == 0
    )
    assert "no pre-trained backbone" in caplog.text


def test_train_resumes_keeps_history_and_refuses_a_changed_config(tmp_path, capsys):
    make_vtab_task(tmp_path)
    out = tmp_path / "run"
    assert main(_train_args(tmp_path, out, "--epochs", "1", "--warmup-epochs", "0")) == 0
    first = _history(out)
    saved_config = (out / "config.json").read_text()
    # the same folder again without --resume / --overwrite is refused
    assert main(_train_args(tmp_path, out, "--epochs", "1", "--warmup-epochs", "0")) == 1
    assert "already holds a run" in capsys.readouterr().err
    # a different learning rate is refused and the saved config is left alone
    assert main(_train_args(tmp_path, out, "--warmup-epochs", "0", "--lr", "0.5", "--resume")) == 1
    assert "lr" in capsys.readouterr().err
    assert (out / "config.json").read_text() == saved_config
    # more epochs continue the run and keep the earlier history
    assert main(_train_args(tmp_path, out, "--warmup-epochs", "0", "--resume")) == 0
    records = _history(out)
    assert [r["epoch"] for r in records] == [1, 2] and records[0] == first[0]


def test_cli_reports_missing_data_as_one_error_line(tmp_path, capsys):
    assert main(_train_args(tmp_path, tmp_path / "run")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FileNotFoundError" in err[0]


@pytest.mark.slow
@pytest.mark.distributed
def test_trainer_runs_unchanged_under_torchrun_gloo(tmp_path, capsys):
    """Two gloo processes share the global batch; the saved weights reproduce the evaluation."""
    make_vtab_task(tmp_path)
    out = tmp_path / "ddp"
    run_torchrun(["-m", "dyt.cli", *_train_args(tmp_path, out)], nproc=2, timeout=600, check=True)
    records = _history(out)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["step"] == 4  # global batch 4 = 2 per rank: 2 steps per epoch
    assert all(r["nonfinite_skipped"] == 0 and r["train_loss"] > 0 for r in records)
    capsys.readouterr()
    assert main(["eval", str(out), "--num-workers", "0", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == records[-1]["eval_accuracy"]  # both ranks' halves reduced
    assert result["gflops"] == pytest.approx(records[-1]["eval_gflops"])


def test_image_transforms_follow_the_paper():
    from dyt.data.vtab import image_transform

    image = Image.new("RGB", (64, 48), (255, 0, 0))
    for augment in ("none", "rrc_flip"):
        for train in (True, False):
            out = image_transform(32, augment, train)(image)
            assert out.shape == (3, 32, 32) and out.max() <= 1.0 and out.min() >= -1.0
    names = [type(t).__name__ for t in image_transform(32, "rrc_flip", True).transforms]
    assert names[:2] == ["RandomResizedCrop", "RandomHorizontalFlip"]
    test_steps = image_transform(224, "rrc_flip", False).transforms
    assert test_steps[0].size == 256 and test_steps[1].size == (224, 224)
    assert get_train_preset("full_image").augment == "rrc_flip"
    assert get_train_preset("vtab").augment == "none"
    with pytest.raises(ValueError, match="augment"):
        image_transform(32, "mixup")


def test_evaluate_reports_top1_mean_per_class_accuracy_and_mask_flops():
    import dyt
    from dyt.flops import flops_from_masks
    from dyt.train import evaluate
    from timm.models.vision_transformer import VisionTransformer
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                            num_classes=3)  # fmt: skip
    model = dyt.convert_vit(vit).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.mlp_token_select.mlp_head.weight.normal_(0, 0.5)
    images = torch.randn(10, 3, 32, 32)
    with torch.no_grad():
        logits, aux = dyt.forward_dyt(model, images)
    predictions = logits.argmax(-1)
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    hits = predictions == labels
    per_class = [hits[labels == k].float().mean() for k in range(3)]
    loader = DataLoader(TensorDataset(images, labels), batch_size=4)
    result = evaluate(model, loader, torch.device("cpu"))
    assert result.accuracy == pytest.approx(hits.float().mean().item())
    assert result.mean_class_accuracy == pytest.approx(torch.stack(per_class).mean().item())
    expected_gflops = flops_from_masks(model, aux["token_select"]).mean().item() / 1e9
    assert result.gflops == pytest.approx(expected_gflops)
    assert result.activation == pytest.approx(aux["token_select"].mean().item())


def test_trainer_and_eval_accept_a_swin_backbone(tmp_path, capsys):
    make_vtab_task(tmp_path)
    out = tmp_path / "swin"
    swin = '{"patch_size": 4, "window_size": 2, "embed_dim": 16, "depths": [2, 2], "num_heads": [2, 4]}'
    args = _train_args(tmp_path, out, "--model", "swin_base_patch4_window7_224")
    args[args.index("--model-overrides") + 1] = swin
    assert main(args) == 0
    record = _history(out)[-1]
    assert record["eval_gflops"] > 0 and 0 <= record["eval_activation"] <= 1
    capsys.readouterr()
    assert main(["eval", str(out), "--num-workers", "0", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["gflops"] == pytest.approx(record["eval_gflops"])
    assert result["accuracy"] == record["eval_accuracy"]
