import json

import pytest
import torch
from causeb import CauseEB, hsic_of_features
from causeb.cli import main

from papers_shared.dg import TrainConfig, train


def test_help_ends_with_examples(capsys):
    for argv in (
        ["--help"],
        ["train", "--help"],
        ["eval", "--help"],
        ["sweep", "--help"],
        ["export", "--help"],
    ):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out.rstrip().splitlines()
        assert out[-3].startswith("examples:") and out[-1].strip().startswith("causeb")


def test_train_writes_domainbed_outputs_and_export_works(tmp_path, capsys):
    out_dir = tmp_path / "run"
    argv = ["train", "--dataset", "DebugDomains", "--steps", "3", "--checkpoint_freq", "2"]
    argv += ["--output_dir", str(out_dir), "--hparams", '{"cnn_width": 8, "batch_size": 4}']
    assert main([*argv, "--no-progress"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"loss_main", "loss_cons", "loss_indp", "hsic"} <= set(last)
    assert (out_dir / "done").exists() and (out_dir / "model.pkl").exists()
    assert main(["export", str(out_dir / "model.pkl"), "--output", str(tmp_path / "m.pt")]) == 0
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert not any("domain" in k or "cdpl" in k for k in state)


def test_bad_hparams_give_one_error_line(capsys):
    assert main(["train", "--dataset", "DebugDomains", "--hparams", '{"alhpa": 1}']) == 1
    assert "unknown hyper-parameter" in capsys.readouterr().err


def _colour_domains(seed: int, n: int = 96):
    """3 domains of 2x12x12 images: the label is a stripe orientation, each domain its own colour
    gain/offset per channel. Returns a list of (x, y) per domain."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.arange(12.0)
    patterns = torch.stack(
        [torch.sin(grid)[None, :].expand(12, 12), torch.sin(grid)[:, None].expand(12, 12)]
    )
    domains = []
    for gain, offset in ((1.0, 0.0), (2.0, 1.0), (0.5, -1.0)):
        y = torch.randint(0, 2, (n,), generator=g)
        x = patterns[y][:, None].repeat(1, 2, 1, 1) + 0.3 * torch.randn(n, 2, 12, 12, generator=g)
        x = x * torch.tensor([gain, 1 / gain])[None, :, None, None] + offset
        domains.append((x, y))
    return domains


def _train_tiny(alpha: float, domains, steps: int = 60):
    torch.manual_seed(0)
    hparams = {"cnn_width": 8, "alpha": alpha, "rds_draws": 2000, "lr": 1e-3}  # small-image lr
    algorithm = CauseEB((2, 12, 12), 2, 2, hparams)
    algorithm.rds_generator = torch.Generator().manual_seed(0)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        batches = []
        for x, y in domains[:2]:
            idx = torch.randint(0, len(y), (16,), generator=g)
            batches.append((x[idx], y[idx]))
        algorithm.update(batches)
    x_test, y_test = domains[2]
    algorithm.eval()
    with torch.no_grad():
        accuracy = (algorithm.predict(x_test).argmax(1) == y_test).float().mean().item()
    return accuracy, hsic_of_features(algorithm, x_test)


def _alpha_pairs(data_seeds):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [
            (_train_tiny(1.0, domains), _train_tiny(0.0, domains))
            for domains in (_colour_domains(seed) for seed in data_seeds)
        ]
    finally:
        torch.set_num_threads(threads)


def test_tiny_training_run_learns_and_independence_lowers_hsic():
    [((acc_alpha, hsic_alpha), (acc_zero, hsic_zero))] = _alpha_pairs([0])
    assert hsic_alpha < 0.5 * hsic_zero  # held-out HSIC(z_c, z_d)
    assert acc_alpha > 0.75  # held-out accuracy, chance 0.5
    assert acc_alpha >= acc_zero - 0.1


@pytest.mark.slow
def test_independence_lowers_hsic_over_data_seeds():
    runs = _alpha_pairs(range(3))
    for (_, hsic_alpha), (_, hsic_zero) in runs:
        assert hsic_alpha < 0.5 * hsic_zero  # held-out HSIC(z_c, z_d)
    # Held-out accuracy (chance 0.5). Measured: alpha=1 reaches 1.0 on two data seeds out of three
    # and 0.56 on the third, alpha=0 reaches 1.0 on all three: only "well above chance" is robust.
    assert sum(acc for (acc, _), _ in runs) / len(runs) > 0.75


def test_tiny_harness_run_improves_training_loss():
    cfg = TrainConfig(
        dataset="DebugDomains",
        algorithm="CauseEB",
        hparams={"cnn_width": 8, "batch_size": 8, "rds_draws": 1000},
        steps=30,
        checkpoint_freq=10,
        output_dir=None,
        progress=False,
    )
    records = train(cfg)
    assert records[-1]["loss_main"] < records[0]["loss_main"]


def test_sweep_with_random_hparams_then_collect(tmp_path, capsys):
    argv = ["sweep", "launch", "--datasets", "DebugDomains", "--n_hparams_from", "1"]
    argv += ["--n_hparams", "2", "--n_trials", "1", "--steps", "2", "--single_test_envs"]
    argv += ["--skip_model_save", "--output_dir", str(tmp_path), "--no-progress"]
    argv += ["--hparams", '{"cnn_width": 8, "batch_size": 4, "rds_draws": 500}']
    assert main(argv) == 0
    assert "ran 3" in capsys.readouterr().out
    assert main(argv) == 0  # resumes: nothing left to run
    assert "ran 0, skipped 3" in capsys.readouterr().out
    assert main(["collect", "--input_dir", str(tmp_path)]) == 0
    assert "CauseEB" in capsys.readouterr().out
