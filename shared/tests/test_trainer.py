"""The shared trainer: learning, run-folder rules, resume, non-finite losses, precision, DDP."""

import json
import logging
import textwrap

import pytest
import torch

from papers_shared.distributed import run_torchrun
from papers_shared.trainer import (
    NonFiniteLossError,
    RunFolderError,
    Trainer,
    TrainerConfig,
)

# the tasks live in a string so that the 2-process test runs the very same code under torchrun
TASKS = textwrap.dedent('''
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from papers_shared.trainer import StepOutput, TrainTask

    class Regression(TrainTask):
        """y = x @ w_true on 64 samples; optional BatchNorm, NaN samples, a NaN loss schedule."""

        name = "regression"

        def __init__(self, lr=0.05, batch_size=8, use_bn=False, nan_samples=(), dtype=torch.float32,
                     nan_losses=(), momentum=0.9, n=64, shuffle=True):
            self.lr, self.batch_size, self.use_bn, self.momentum = lr, batch_size, use_bn, momentum
            self.nan_samples, self.nan_losses, self.dtype = tuple(nan_samples), set(nan_losses), dtype
            self.n, self.shuffle = n, shuffle
            self.calls = 0
            self.commits = 0
            self.optimizer = None
            self.scheduler = None
            self.seen = []  # (step, autocast enabled, autocast dtype)

        def config_dict(self):
            return {"lr": self.lr, "batch_size": self.batch_size, "use_bn": self.use_bn}

        def build_model(self):
            layers = [nn.Linear(4, 16)]
            if self.use_bn:
                layers.append(nn.BatchNorm1d(16))
            layers += [nn.Tanh(), nn.Linear(16, 1)]
            return nn.Sequential(*layers).to(self.dtype)

        def build_optimizer(self, model):
            self.optimizer = torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum)
            return self.optimizer

        def build_scheduler(self, optimizer, steps_per_epoch, epochs):
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 / (1 + 0.05 * s))
            return self.scheduler

        def train_dataloader(self):
            g = torch.Generator().manual_seed(123)
            x = torch.randn(self.n, 4, generator=g, dtype=torch.float64)
            y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]], dtype=torch.float64)
            for i in self.nan_samples:
                x[i] = float("nan")
            ds = TensorDataset(x.to(self.dtype), y.to(self.dtype))
            return DataLoader(ds, batch_size=self.batch_size, shuffle=self.shuffle)

        def training_step(self, model, batch, step):
            x, y = batch
            self.seen.append((step, torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
            self.before_forward(model, x, step)
            self.calls += 1
            loss = nn.functional.mse_loss(model(x).float(), y.float())
            if self.calls in self.nan_losses:
                loss = loss * float("nan")
            return StepOutput(loss, {"calls": float(self.calls)}, commit=self._commit)

        def _commit(self):
            self.commits += 1

        def before_forward(self, model, x, step):
            pass

        def evaluate(self, model):
            x, y = self.train_dataloader().dataset.tensors
            keep = ~torch.isnan(x).any(1)
            return {"val_mse": float(nn.functional.mse_loss(model(x[keep]), y[keep]))}

        def state_dict(self):
            return {"commits": self.commits}

        def load_state_dict(self, state):
            self.commits = state["commits"]
''')
_namespace: dict = {}
exec(TASKS, _namespace)
Regression = _namespace["Regression"]


def cfg(tmp_path, name="run", **kw):
    kw.setdefault("epochs", 3)
    kw.setdefault("device", "cpu")
    return TrainerConfig(output_dir=tmp_path / name, **kw)


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a, b, atol=0.0):
    return a.keys() == b.keys() and all(
        torch.allclose(a[k], b[k], rtol=0, atol=atol) if atol else torch.equal(a[k], b[k])
        for k in a
    )


def test_tiny_model_learns_and_writes_the_run_folder(tmp_path):
    result = Trainer(Regression(use_bn=True), cfg(tmp_path, epochs=6)).fit()
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.3 * losses[0], losses
    run = result.run_dir
    assert json.loads((run / "config.json").read_text())["task"] == {
        "lr": 0.05,
        "batch_size": 8,
        "use_bn": True,
    }
    lines = (run / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 6 * 8
    assert result.final["val_mse"] == result.history[-1]["val_mse"]
    from safetensors.torch import load_file

    saved = load_file(run / "model.safetensors")
    assert same(saved, params(result.model))
    assert type(result.model).__name__ == "Sequential"


def test_folder_holding_a_run_is_refused(tmp_path):
    Trainer(Regression(), cfg(tmp_path, epochs=1)).fit()
    with pytest.raises(RunFolderError, match="already holds a run"):
        Trainer(Regression(), cfg(tmp_path, epochs=1)).fit()


def test_overwrite_starts_again(tmp_path):
    Trainer(Regression(), cfg(tmp_path, epochs=3)).fit()
    (tmp_path / "run" / "stale.txt").write_text("old")
    result = Trainer(Regression(), cfg(tmp_path, epochs=1, overwrite=True)).fit()
    assert len(result.history) == 1
    assert not (tmp_path / "run" / "stale.txt").exists()
    assert len((tmp_path / "run" / "history.jsonl").read_text().splitlines()) == 1


def test_resume_keeps_history_and_matches_an_uninterrupted_run(tmp_path):
    straight = Trainer(Regression(use_bn=True), cfg(tmp_path, "straight", epochs=4)).fit()
    first = Trainer(Regression(use_bn=True), cfg(tmp_path, "split", epochs=2)).fit()
    task = Regression(use_bn=True)
    resumed = Trainer(task, cfg(tmp_path, "split", epochs=4, resume=True)).fit()
    assert not resumed.nothing_to_do
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.history[:2] == first.history
    assert [json.loads(line)["epoch"] for line in
            (tmp_path / "split" / "history.jsonl").read_text().splitlines()] == [1, 2, 3, 4]  # fmt: skip
    assert task.commits == 4 * 8  # task state came back from the checkpoint
    assert task.scheduler.last_epoch == 4 * 8
    assert same(params(resumed.model), params(straight.model), atol=1e-6)
    keys = ["train_loss", "lr", "val_mse"]
    for a, b in zip(resumed.history, straight.history):
        assert [a[k] for k in keys] == pytest.approx([b[k] for k in keys], rel=1e-5)


def test_resume_refuses_a_changed_config_naming_the_keys(tmp_path):
    Trainer(Regression(), cfg(tmp_path, epochs=1)).fit()
    with pytest.raises(RunFolderError, match=r"task\.lr, trainer\.grad_accum_steps"):
        Trainer(Regression(lr=0.1), cfg(tmp_path, epochs=2, grad_accum_steps=2, resume=True)).fit()
    # a new epoch count alone is fine
    assert len(Trainer(Regression(), cfg(tmp_path, epochs=2, resume=True)).fit().history) == 2


def test_resume_of_a_finished_run_has_nothing_to_do(tmp_path, caplog):
    done = Trainer(Regression(), cfg(tmp_path, epochs=2)).fit()
    with caplog.at_level(logging.INFO, logger="papers_shared.trainer"):
        again = Trainer(Regression(), cfg(tmp_path, epochs=2, resume=True)).fit()
    assert again.nothing_to_do
    assert "nothing to do" in caplog.text
    assert again.history == done.history and again.final == done.final
    assert same(params(again.model), params(done.model))


def test_max_steps_caps_optimizer_steps(tmp_path):
    result = Trainer(Regression(), cfg(tmp_path, epochs=5, max_steps=11)).fit()
    assert result.final["steps"] == 11 and result.final["epochs_done"] == 2


class Watched(Regression):
    """Snapshots model, BN buffers, optimizer, scheduler and task state before the NaN batch and
    checks them at the start of the next batch."""

    def __init__(self, **kw):
        super().__init__(use_bn=True, batch_size=4, n=16, shuffle=False, nan_samples=(5,), **kw)
        self.snapshot = None
        self.checked = False

    def _state(self, model, step):
        opt = {
            i: {k: v.clone() for k, v in s.items()}
            for i, s in enumerate(self.optimizer.state.values())
        }
        return params(model), opt, self.scheduler.last_epoch, self.commits, step

    def before_forward(self, model, x, step):
        if torch.isnan(x).any():
            self.snapshot = self._state(model, step)
        elif self.snapshot is not None and not self.checked:
            (p0, o0, s0, c0, st0), (p1, o1, s1, c1, st1) = self.snapshot, self._state(model, step)
            assert any("running_mean" in k for k in p0)
            assert same(p0, p1), "parameters or BatchNorm statistics changed"
            assert o0.keys() == o1.keys() and all(same(o0[i], o1[i]) for i in o0)
            assert (s0, c0, st0) == (s1, c1, st1)
            self.checked = True


def test_nan_batch_leaves_every_state_bitwise_unchanged(tmp_path):
    task = Watched()
    result = Trainer(task, cfg(tmp_path, epochs=1)).fit()
    assert task.checked
    assert result.history[0]["nonfinite_skipped"] == 1
    assert task.commits == 3 and result.final["steps"] == 3
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss"]))


def test_nonfinite_losses_in_a_row_stop_the_run(tmp_path):
    with pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row"):
        Trainer(Regression(nan_losses={2, 3, 4}), cfg(tmp_path)).fit()


def test_nonfinite_losses_apart_are_only_counted(tmp_path):
    result = Trainer(Regression(nan_losses={2, 3, 5, 6}), cfg(tmp_path, epochs=1)).fit()
    assert result.history[0]["nonfinite_skipped"] == 4 and result.final["steps"] == 4


def test_grad_accumulation_matches_the_big_batch(tmp_path):
    # the shuffled order comes from the trainer's seed, so 2 x 4 samples are the same 8 samples
    big = Trainer(Regression(batch_size=8), cfg(tmp_path, "big", epochs=2)).fit()
    acc = Regression(batch_size=4)
    small = Trainer(acc, cfg(tmp_path, "acc", epochs=2, grad_accum_steps=2)).fit()
    assert small.final["steps"] == big.final["steps"] == 16
    assert acc.scheduler.last_epoch == 16  # stepped once per optimizer step
    assert same(params(small.model), params(big.model), atol=1e-6)
    unaccumulated = Trainer(Regression(batch_size=4), cfg(tmp_path, "four", epochs=2)).fit()
    assert not same(params(unaccumulated.model), params(big.model), atol=1e-4)


def test_grad_clipping_bounds_the_update(tmp_path):
    before = Regression().build_model()
    torch.manual_seed(0)
    task = Regression(lr=1.0, momentum=0.0)
    task.build_model = lambda: before  # same start, to measure the one update
    start = params(before)
    result = Trainer(task, cfg(tmp_path, epochs=1, max_steps=1, clip_grad_norm=1e-3)).fit()
    step = torch.cat([(result.model.state_dict()[k] - start[k]).flatten() for k in start])
    assert 0 < step.norm() <= 1e-3 * (1 + 1e-4)


def test_bf16_on_cpu_autocasts(tmp_path):
    task = Regression()
    result = Trainer(task, cfg(tmp_path, epochs=4, precision="bf16")).fit()
    assert all(enabled and dtype == torch.bfloat16 for _, enabled, dtype in task.seen)
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]
    assert next(result.model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_fp32_and_auto_on_cpu_do_not_autocast(tmp_path, precision):
    task = Regression()
    Trainer(task, cfg(tmp_path, epochs=1, precision=precision)).fit()
    assert not any(enabled for _, enabled, _ in task.seen)


def test_float64_model_trains_in_float64(tmp_path):
    result = Trainer(Regression(dtype=torch.float64), cfg(tmp_path, epochs=4)).fit()
    assert all(p.dtype == torch.float64 for p in result.model.parameters())
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]


def test_fp16_on_cpu_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        Trainer(Regression(), cfg(tmp_path, precision="fp16")).fit()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("precision", "fp8", "precision must be one of"),
        ("epochs", 0, "epochs must be an int >= 1"),
        ("grad_accum_steps", 1.5, "grad_accum_steps"),
        ("clip_grad_norm", -1.0, "clip_grad_norm"),
        ("device", "gpu", "device must be"),
        ("max_steps", 0, "max_steps"),
    ],
)
def test_trainer_config_rejects_bad_values(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainerConfig(output_dir=tmp_path, **{field: value})


def test_trainer_config_resume_and_overwrite_exclude_each_other(tmp_path):
    with pytest.raises(ValueError, match="resume and overwrite"):
        TrainerConfig(output_dir=tmp_path, resume=True, overwrite=True)


def test_trainer_config_from_dict_round_trip_and_unknown_keys(tmp_path):
    config = TrainerConfig(output_dir=str(tmp_path), epochs=7, clip_grad_norm=1.0)
    assert TrainerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown TrainerConfig field\(s\) \['epoch'\]"):
        TrainerConfig.from_dict({"output_dir": "x", "epoch": 3})


DDP_SCRIPT = TASKS + textwrap.dedent("""
    import os, sys
    from papers_shared.distributed import cleanup_distributed
    from papers_shared.trainer import Trainer, TrainerConfig

    out, batch_size = sys.argv[1], int(sys.argv[2])
    task = Regression(batch_size=batch_size, momentum=0.9, nan_samples=(13,))
    result = Trainer(task, TrainerConfig(output_dir=out, epochs=2, device="cpu")).fit()
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save({k: v.clone() for k, v in result.model.state_dict().items()}, out + "/final.pt")
    del result
    cleanup_distributed()
""")


def one_process_reference(out):
    """What DDP_SCRIPT computes as one process with the global batch of 8 (run in this process)."""
    task = Regression(batch_size=8, momentum=0.9, nan_samples=(13,))
    result = Trainer(task, TrainerConfig(output_dir=out, epochs=2, device="cpu")).fit()
    return params(result.model)


@pytest.mark.distributed
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    run_torchrun([str(script), str(tmp_path / "two"), "4"], nproc=2, timeout=240, check=True)
    two = torch.load(tmp_path / "two" / "final.pt")
    one = one_process_reference(tmp_path / "one")
    assert same(two, one, atol=1e-5)
    history = [json.loads(x) for x in (tmp_path / "two" / "history.jsonl").read_text().splitlines()]
    # the NaN sample sits on one rank only; both ranks skipped that step together
    assert [h["nonfinite_skipped"] for h in history] == [1, 1]
    assert history[-1]["step"] == 2 * 7


@pytest.mark.slow
@pytest.mark.distributed
def test_accelerate_launch_runs_the_same_script(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    # on a machine without GPUs, --multi_gpu starts the torchrun-style launcher and gloo is used
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", "0", str(script), str(tmp_path / "acc"), "4"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    two = torch.load(tmp_path / "acc" / "final.pt")
    one = one_process_reference(tmp_path / "one")
    assert same(two, one, atol=1e-5)


class WithCritic(Regression):
    """A second module with its own optimizer, updated twice per batch before the main step."""

    def __init__(self, nan_critic_calls=(), bad_name=False, **kw):
        super().__init__(**kw)
        self.nan_critic_calls, self.bad_name = set(nan_critic_calls), bad_name
        self.critic_calls = 0
        self.critic_losses = []

    def config_dict(self):
        return {**super().config_dict(), "critic": True}

    def extra_modules(self):
        torch.manual_seed(7)
        self.critic = torch.nn.Sequential(
            torch.nn.Linear(1, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1)
        )
        return {"critic": self.critic}

    def build_extra_optimizers(self, modules):
        self.critic_optimizer = torch.optim.SGD(modules["critic"].parameters(), lr=0.02)
        return {"critic": self.critic_optimizer}

    def extra_steps(self, model, modules, batch, step):
        x, y = batch
        with torch.no_grad():
            guess = model(x)
        for _ in range(2):
            self.critic_calls += 1
            loss = torch.nn.functional.mse_loss(modules["critic"](guess), y)
            if self.critic_calls in self.nan_critic_calls:
                loss = loss * float("nan")
            self.critic_losses.append(float(loss.detach()))
            yield ("wrong" if self.bad_name else "critic"), loss


def critic_state(task):
    return {**params(task.critic), **{f"opt{i}": v["momentum_buffer"] for i, v in
            enumerate(task.critic_optimizer.state.values()) if v.get("momentum_buffer") is not None}}  # fmt: skip


def test_extra_optimizer_updates_its_module(tmp_path):
    task = WithCritic()
    start = params(task.extra_modules()["critic"])
    result = Trainer(task, cfg(tmp_path, epochs=3)).fit()
    assert task.critic_calls == 2 * 8 * 3
    assert not same(start, params(task.critic))
    first, last = task.critic_losses[:16], task.critic_losses[-16:]
    assert sum(last) < 0.5 * sum(first)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_nonfinite_extra_loss_is_skipped_and_counted(tmp_path):
    task = WithCritic(nan_critic_calls={3})
    seen = {}

    def spy(model, modules, batch, step, _inner=task.extra_steps):
        for name, loss in _inner(model, modules, batch, step):
            # calls 3 (NaN, skipped) and 4 forward the same input from the same start, so their
            # states match only if the skipped call left no trace (BatchNorm statistics included)
            if task.critic_calls in (3, 4):
                seen[task.critic_calls] = params(task.critic)
            yield name, loss

    task.extra_steps = spy
    result = Trainer(task, cfg(tmp_path, epochs=1)).fit()
    assert result.history[0]["nonfinite_skipped"] == 1
    assert any("running_mean" in k for k in seen[3])
    assert same(seen[3], seen[4])


def test_extra_steps_with_an_unknown_optimizer_name_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"named optimizer 'wrong'.*\['critic'\]"):
        Trainer(WithCritic(bad_name=True), cfg(tmp_path, epochs=1)).fit()


def test_extra_module_and_optimizer_resume_exactly(tmp_path):
    straight = WithCritic()
    Trainer(straight, cfg(tmp_path, "straight", epochs=2)).fit()
    Trainer(WithCritic(), cfg(tmp_path, "split", epochs=1)).fit()
    resumed = WithCritic()
    Trainer(resumed, cfg(tmp_path, "split", epochs=2, resume=True)).fit()
    assert same(params(resumed.critic), params(straight.critic), atol=1e-6)


def test_eval_every_zero_evaluates_only_after_the_last_epoch(tmp_path):
    result = Trainer(Regression(), cfg(tmp_path, epochs=3, eval_every=0)).fit()
    assert ["val_mse" in h for h in result.history] == [False, False, True]


def test_save_every_keeps_the_last_checkpoint(tmp_path):
    Trainer(Regression(), cfg(tmp_path, epochs=3, save_every=2)).fit()
    state = json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text())
    assert state["epochs_done"] == 3 and state["step"] == 24
    assert not (tmp_path / "run" / "checkpoint.tmp").exists()


def test_resume_uses_the_previous_checkpoint_when_the_swap_was_cut(tmp_path):
    Trainer(Regression(), cfg(tmp_path, epochs=2)).fit()
    run = tmp_path / "run"
    (run / "checkpoint").rename(run / "checkpoint.old")  # as if stopped between the renames
    result = Trainer(Regression(), cfg(tmp_path, epochs=3, resume=True)).fit()
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.final["steps"] == 24
    assert (run / "checkpoint").is_dir() and not (run / "checkpoint.old").exists()
