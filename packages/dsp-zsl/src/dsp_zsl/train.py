"""DSP training around any base generator, as a :class:`papers_shared.trainer.TrainTask`.

One trainer step = ``critic_iter`` critic updates (on fresh real batches, run inside
:meth:`DSPTask.training_step` with the task's own critic optimizer, each skipped when its loss is
not finite) followed by one generator update whose loss the trainer back-propagates and steps:

    G, E, F   <- L_G^base(c) + lambda_v2s * ||V2SM_frozen(x^) - c||_1
    V2SM      <- ||V2SM(x) - a_y||_1                      (real features)
    VOPE      <- lambda_vope * ||VOPE(z_in[y]) - stopgrad(V2SM(x^))||_1

with c = Z[y] the dynamic seen prototype (detached): Z = VOPE(A_s) recomputed each step
(``direct``) or Z <- VOPE(Z) once per epoch (``recurrent``). Without DSP, c = a_y.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dsp_zsl import losses
from dsp_zsl.config import DSPConfig
from dsp_zsl.data.xlsa17 import ZSLData, load_xlsa17
from dsp_zsl.evaluate import ClassifierData, run_final_classifier, select_epoch
from dsp_zsl.models.bases import BaseModels, LinearLogSoftmax, create_base, frozen
from dsp_zsl.models.dsp import PrototypeBank, create_v2sm
from papers_shared.trainer import NonFiniteLossError, StepOutput, Trainer, TrainerConfig, TrainTask

__all__ = [
    "DSPCritic",
    "DSPGenerator",
    "DSPModel",
    "DSPTask",
    "FitResult",
    "build_dsp_model",
    "evaluate_model",
    "fit_dsp",
    "load_dsp_checkpoint",
    "save_dsp_checkpoint",
]

logger = logging.getLogger(__name__)


class DSPCritic(nn.Module):
    """Critic-side modules of a base (``netD`` and ``netDec`` / ``netFR`` / ``netCls``)."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)


class DSPGenerator(nn.Module):
    """Generator-side modules (``netG``, ``netE``, ``netF``), DSP's ``netV2SM`` / ``netVOPE``
    (absent without DSP) and the prototype ``bank``. This is the model the trainer optimizes."""

    _row: torch.Tensor

    def __init__(self, cfg: DSPConfig, modules: dict[str, nn.Module], bank: PrototypeBank) -> None:
        super().__init__()
        self.cfg = cfg
        for name, module in modules.items():
            self.add_module(name, module)
        self.bank = bank
        self.netV2SM: nn.Module | None = None
        self.netVOPE: nn.Module | None = None
        if cfg.use_dsp:
            self.netV2SM = create_v2sm(cfg.v2sm, cfg.feature_dim, cfg.att_dim, cfg.hidden_dim)
            from dsp_zsl.models.dsp import VOPE

            self.netVOPE = VOPE(cfg.att_dim, residual=cfg.vope_residual)
        self.register_buffer("_row", bank.seen_row(), persistent=False)

    def rows(self, y: torch.Tensor) -> torch.Tensor:
        """Global seen labels (B,) -> rows 0..S-1."""
        rows = self._row[y]
        if (rows < 0).any():
            raise ValueError("training labels must belong to the seen classes")
        return rows

    def conditions(self, y: torch.Tensor, refresh: bool = False) -> torch.Tensor:
        """Detached generator conditions (B, d_a) for global seen labels y (B,)."""
        if self.netVOPE is None:
            return self.bank.A[y]
        if refresh and self.cfg.evolve_mode == "direct":
            self.bank.evolve(self.netVOPE, "direct")
        return self.bank.Z[self.rows(y)].detach()

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, critic: nn.Module, base: BaseModels
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Generator-side loss of one batch (B, F), (B,) global labels."""
        cfg = self.cfg
        rows = self.rows(y)
        c = self.conditions(y, refresh=True)
        with frozen(critic):
            loss, fake, metrics = base.generator_loss(self, critic, x, c, rows)
        metrics = {"g_base": float(loss.detach()), **metrics}
        if self.netV2SM is not None and self.netVOPE is not None:
            a_y = self.bank.A[y]
            l_real = losses.v2s_loss(self.netV2SM(x), a_y)
            params = {k: v.detach() for k, v in self.netV2SM.named_parameters()}
            mapped_fake = functional_call(self.netV2SM, params, (fake,))
            l_fake = losses.v2s_loss(mapped_fake, c)
            z_in = a_y if cfg.evolve_mode == "direct" else self.bank.Z[rows]
            l_vope = losses.vope_loss(self.netVOPE(z_in), mapped_fake)
            loss = loss + cfg.lambda_v2s * l_fake + l_real + cfg.lambda_vope * l_vope
            metrics.update(
                v2s_real=float(l_real.detach()),
                v2s_fake=float(l_fake.detach()),
                vope=float(l_vope.detach()),
            )
        return loss, metrics


class DSPModel(nn.Module):
    """Both sides together (what a DSP checkpoint holds)."""

    def __init__(self, generator: DSPGenerator, critic: DSPCritic) -> None:
        super().__init__()
        self.generator = generator
        self.critic = critic

    @property
    def cfg(self) -> DSPConfig:
        return self.generator.cfg


def build_dsp_model(
    cfg: DSPConfig, prototypes: torch.Tensor, seen: torch.Tensor, unseen: torch.Tensor
) -> tuple[DSPModel, BaseModels]:
    """The modules of ``cfg.base`` (+ DSP) for prototypes (C, d_a) and seen/unseen class ids."""
    if prototypes.shape[1] != cfg.att_dim:
        raise ValueError(
            f"the prototypes have {prototypes.shape[1]} dimensions but att_dim is {cfg.att_dim}"
        )
    base = create_base(cfg.base, cfg)
    bank = PrototypeBank(prototypes, seen, unseen)
    generator = DSPGenerator(cfg, base.build_generator(), bank)
    critic = DSPCritic(base.build_critic(len(seen)))
    return DSPModel(generator, critic), base


def _param_groups(modules: nn.Module, names: dict[str, str], cfg: DSPConfig) -> list[dict]:
    groups = []
    for name, module in modules.named_children():
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            continue
        key = "dsp_lr" if name in ("netV2SM", "netVOPE") else names.get(name, "lr")
        groups.append({"params": params, "lr": getattr(cfg, key), "name": name})
    return groups


def _split(
    n: int, labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (keep, held) index split; each class keeps at least one sample."""
    keep, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = min(int(round(fraction * idx.size)), idx.size - 1)
        held.extend(idx[:k].tolist())
        keep.extend(idx[k:].tolist())
    return np.sort(np.asarray(keep, dtype=np.int64)), np.sort(np.asarray(held, dtype=np.int64))


@torch.no_grad()
def _enhance(
    model: DSPModel, base: BaseModels, x: torch.Tensor, y: torch.Tensor | None, mode: str
) -> torch.Tensor:
    """Classifier input for features x (B, F): [x ; base features ; semantic part]."""
    gen, cfg = model.generator, model.cfg
    parts = [x]
    extra = base.classifier_features(model.critic, x)
    if extra is not None:
        parts.append(extra)
    if mode != "none":
        if gen.netVOPE is None or gen.netV2SM is None:
            raise ValueError(f"enhance={mode!r} needs the DSP modules")
        if mode in ("label", "oracle") and y is not None:
            parts.append(gen.netVOPE(gen.bank.A)[y])
        else:
            parts.append(gen.netVOPE(gen.netV2SM(x)))
    del cfg
    return torch.cat(parts, dim=1)


@torch.no_grad()
def synthesize_unseen(
    model: DSPModel, base: BaseModels, num_per_class: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(U * num, F) features and (U * num,) global labels from the mixed unseen conditions."""
    gen, cfg = model.generator, model.cfg
    cond = gen.bank.mixed_unseen(gen.netVOPE, cfg.alpha, cfg.renorm_mix)  # (U, d_a)
    c = cond.repeat_interleave(num_per_class, dim=0)
    y = gen.bank.unseen.repeat_interleave(num_per_class)
    feats = [base.synthesize(gen, model.critic, c[i : i + 4096]) for i in range(0, len(c), 4096)]
    return torch.cat(feats), y


@torch.no_grad()
def evaluate_model(
    model: DSPModel,
    base: BaseModels,
    data: ZSLData,
    *,
    seed: int = 0,
    selection: str | None = None,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Synthesize unseen features, train the final classifier and measure it.

    Returns (the selected classifier epoch's metrics, every classifier epoch's records).
    """
    cfg = model.cfg
    selection = selection or cfg.selection
    device = model.generator.bank.A.device
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    t = lambda a, dt=torch.float32: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    syn_x, syn_y = synthesize_unseen(model, base, cfg.syn_num)
    train_x, train_y = t(data.train_x), t(data.train_y, torch.long)
    empty_x, empty_y = train_x[:0], train_y[:0]
    if selection == "val":
        keep, held = _split(len(train_y), data.train_y, cfg.val_fraction, rng)
        skeep, sheld = _split(len(syn_y), syn_y.cpu().numpy(), cfg.val_fraction, rng)
        val_seen = (train_x[t(held, torch.long)], train_y[t(held, torch.long)])
        val_unseen = (syn_x[t(sheld, torch.long)], syn_y[t(sheld, torch.long)])
        train_x, train_y = train_x[t(keep, torch.long)], train_y[t(keep, torch.long)]
        syn_x, syn_y = syn_x[t(skeep, torch.long)], syn_y[t(skeep, torch.long)]
    else:
        val_seen = val_unseen = (empty_x, empty_y)
    mode = cfg.enhance
    test_mode = "oracle" if mode == "oracle" else ("v2sm" if mode == "label" else mode)
    enh = lambda x, y, m: _enhance(model, base, x, y, m)  # noqa: E731
    if cfg.gzsl:
        cls_x = torch.cat([enh(train_x, train_y, mode), enh(syn_x, syn_y, mode)])
        cls_y = torch.cat([train_y, syn_y])
    else:
        cls_x, cls_y = enh(syn_x, syn_y, mode), syn_y
    ts_x, ts_y = t(data.test_seen_x), t(data.test_seen_y, torch.long)
    tu_x, tu_y = t(data.test_unseen_x), t(data.test_unseen_y, torch.long)
    cdata = ClassifierData(
        train_x=cls_x,
        train_y=cls_y,
        val_seen_x=enh(val_seen[0], val_seen[1], test_mode),
        val_seen_y=val_seen[1],
        val_unseen_x=enh(val_unseen[0], val_unseen[1], test_mode),
        val_unseen_y=val_unseen[1],
        test_seen_x=enh(ts_x, ts_y if test_mode == "oracle" else None, test_mode),
        test_seen_y=ts_y,
        test_unseen_x=enh(tu_x, tu_y if test_mode == "oracle" else None, test_mode),
        test_unseen_y=tu_y,
        seen_classes=t(data.seen_classes, torch.long),
        unseen_classes=t(data.unseen_classes, torch.long),
        num_classes=data.num_classes,
    )
    with torch.enable_grad():
        records = run_final_classifier(
            cdata,
            gzsl=cfg.gzsl,
            lr=cfg.classifier_lr,
            epochs=cfg.classifier_epochs,
            batch_size=cfg.classifier_batch or cfg.syn_num,
            beta1=cfg.beta1,
            generator=gen,
        )
    chosen = select_epoch(records, selection, "H" if cfg.gzsl else "Acc")
    model.train(was_training)
    return chosen, records


def _pretrain_seen_classifier(
    cls: LinearLogSoftmax, x: torch.Tensor, rows: torch.Tensor, epochs: int
) -> None:
    """f-CLSWGAN's classifier on real seen features (Adam 1e-3, beta1 0.5, batch 100)."""
    cls.requires_grad_(True)
    opt = torch.optim.Adam(cls.parameters(), lr=1e-3, betas=(0.5, 0.999))
    n = x.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n)
        for i in range(0, n, 100):
            idx = order[i : i + 100]
            loss = F.nll_loss(cls(x[idx]), rows[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    cls.requires_grad_(False)


class DSPTask(TrainTask):
    """DSP (or the plain base when ``cfg.use_dsp`` is False) on one ZSL benchmark."""

    name = "dsp-zsl"

    def __init__(self, cfg: DSPConfig, data: ZSLData, *, max_nonfinite: int = 3) -> None:
        if data.att_dim != cfg.att_dim or data.feature_dim != cfg.feature_dim:
            raise ValueError(
                f"the data has feature_dim {data.feature_dim} and att_dim {data.att_dim}; the "
                f"config says {cfg.feature_dim} and {cfg.att_dim}"
            )
        self.cfg = cfg
        self.data = data
        self.max_nonfinite = max_nonfinite
        self.base: BaseModels = create_base(cfg.base, cfg)
        self.critic: DSPCritic | None = None
        self.critic_opt: torch.optim.Optimizer | None = None
        self.best: dict[str, float] = {}
        self.critic_nonfinite = 0
        self._x = torch.as_tensor(data.train_x)
        self._y = torch.as_tensor(data.train_y, dtype=torch.long)
        self._steps_per_epoch = max(1, len(self._y) // cfg.batch_size)
        self.generator: DSPGenerator | None = None

    def config_dict(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def build_model(self) -> nn.Module:
        d = self.data
        model, self.base = build_dsp_model(
            self.cfg,
            torch.as_tensor(d.prototypes),
            torch.as_tensor(d.seen_classes, dtype=torch.long),
            torch.as_tensor(d.unseen_classes, dtype=torch.long),
        )
        self.critic = model.critic
        self.generator = model.generator
        if hasattr(self.critic, "netCls"):
            cls = self.critic.netCls
            assert isinstance(cls, LinearLogSoftmax)
            _pretrain_seen_classifier(
                cls, self._x, model.generator.rows(self._y), self.cfg.pretrain_cls_epochs
            )
        return model.generator

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        assert self.critic is not None
        device = next(model.parameters()).device
        self.critic.to(device)
        _broadcast_module(self.critic)  # the trainer's DDP copies rank 0's generator side only
        betas = (self.cfg.beta1, 0.999)
        critic_groups = _param_groups(self.critic, self.base.critic_lr_keys, self.cfg)
        self.critic_opt = torch.optim.Adam(critic_groups, betas=betas)
        return torch.optim.Adam(
            _param_groups(model, self.base.generator_lr_keys, self.cfg), betas=betas
        )

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        k = self.cfg.critic_iter
        index = torch.arange(len(self._y)).repeat(k)
        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(index),
            batch_size=self.cfg.batch_size * k,
            shuffle=True,
            drop_last=True,
        )

    def _critic_steps(self, gen: DSPGenerator, x: torch.Tensor, y: torch.Tensor) -> dict:
        assert self.critic is not None and self.critic_opt is not None
        cfg = self.cfg
        metrics: dict[str, float] = {}
        gps: list[float] = []
        for xc, yc in zip(x.chunk(cfg.critic_iter), y.chunk(cfg.critic_iter)):
            with torch.no_grad():
                c = gen.conditions(yc, refresh=True)
            self.critic_opt.zero_grad(set_to_none=True)
            loss, m = self.base.critic_loss(gen, self.critic, xc, c, gen.rows(yc))
            if not torch.isfinite(loss):
                self.critic_nonfinite += 1
                logger.warning("non-finite critic loss: update skipped (%d in a row)",
                               self.critic_nonfinite)  # fmt: skip
                if self.critic_nonfinite >= self.max_nonfinite:
                    raise NonFiniteLossError(
                        f"{self.critic_nonfinite} non-finite critic losses in a row; lower the "
                        "learning rate or check the data"
                    )
                continue
            self.critic_nonfinite = 0
            loss.backward()
            _all_reduce_grads(self.critic)
            self.critic_opt.step()
            gps.append(m.get("gp", 0.0))
            metrics = {f"d_{k}": v for k, v in m.items()}
            metrics["d_loss"] = float(loss.detach())
        if cfg.adapt_gp and cfg.base != "clswgan" and gps and self.base.lambda_gp > 0:
            # TF-VAEGAN: keep the mean GP near its target by scaling lambda_gp
            ratio = sum(gps) / len(gps)
            if ratio > 1.05:
                self.base.lambda_gp = self.base.lambda_gp * 1.1
            elif ratio < 1.001:
                self.base.lambda_gp = self.base.lambda_gp / 1.1
        self.critic_opt.zero_grad(set_to_none=True)
        return metrics

    def training_step(self, model: nn.Module, batch: Any, step: int) -> StepOutput:
        (index,) = batch
        gen = _unwrap(model)
        assert isinstance(gen, DSPGenerator)
        device = index.device
        if self._x.device != device:
            self._x, self._y = self._x.to(device), self._y.to(device)
        x, y = self._x[index], self._y[index]
        metrics = self._critic_steps(gen, x, y)
        b = self.cfg.batch_size
        loss, g_metrics = model(x[-b:], y[-b:], self.critic, self.base)
        metrics.update(g_metrics)
        metrics["lambda_gp"] = self.base.lambda_gp
        return StepOutput(loss=loss, metrics=metrics)

    def on_step_end(self, model: nn.Module, step: int) -> None:
        assert isinstance(model, DSPGenerator)
        recurrent = self.cfg.use_dsp and self.cfg.evolve_mode == "recurrent"
        if recurrent and model.netVOPE is not None and step % self._steps_per_epoch == 0:
            model.bank.evolve(model.netVOPE, "recurrent")

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        assert isinstance(model, DSPGenerator) and self.critic is not None
        full = DSPModel(model, self.critic)
        chosen, _ = evaluate_model(full, self.base, self.data, seed=len(self.best))
        key = "H" if self.cfg.gzsl else "Acc"
        score_key = {"val": f"val_{key}", "test": key, "last": None}[self.cfg.selection]
        score = chosen.get(score_key, 0.0) if score_key else math.inf
        if not self.best or score_key is None or score > self.best.get("score", -math.inf):
            self.best = {"score": score if score_key else 0.0, **chosen}
        out = {k: v for k, v in chosen.items()}
        out.update({f"best_{k}": v for k, v in self.best.items() if k != "score"})
        return out

    def state_dict(self) -> dict[str, Any]:
        assert self.critic is not None and self.critic_opt is not None
        return {
            "critic": self.critic.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "lambda_gp": self.base.lambda_gp,
            "best": dict(self.best),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.critic is not None and self.critic_opt is not None
        self.critic.load_state_dict(state["critic"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.base.lambda_gp = float(state["lambda_gp"])
        self.best = dict(state["best"])


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def _broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (no-op without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def _all_reduce_grads(module: nn.Module) -> None:
    """Average critic gradients over ranks (the critic is outside the trainer's DDP wrapper)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    world = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


@dataclass
class FitResult:
    """What :func:`fit_dsp` returns."""

    model: DSPModel
    base: BaseModels
    history: list[dict[str, Any]]
    final: dict[str, Any]
    run_dir: Path
    nothing_to_do: bool


def fit_dsp(cfg: DSPConfig, trainer_cfg: TrainerConfig, data: ZSLData | None = None) -> FitResult:
    """Train ``cfg`` with the shared trainer; writes ``dsp_checkpoint.pt`` in the run folder."""
    if data is None:
        data = load_xlsa17(
            cfg.data_root,
            cfg.dataset,
            class_embedding=cfg.class_embedding,
            preprocessing=cfg.preprocessing,
            validation=cfg.validation,
        )
    task = DSPTask(cfg, data, max_nonfinite=trainer_cfg.max_nonfinite)
    result = Trainer(task, trainer_cfg).fit()
    generator = result.model
    if result.nothing_to_do or task.critic is None:
        path = Path(result.run_dir) / "dsp_checkpoint.pt"
        model, base = load_dsp_checkpoint(path)
    else:
        assert isinstance(generator, DSPGenerator)
        model, base = DSPModel(generator, task.critic), task.base
        model.cpu()
        save_dsp_checkpoint(model, Path(result.run_dir) / "dsp_checkpoint.pt")
    return FitResult(
        model=model,
        base=base,
        history=result.history,
        final=result.final,
        run_dir=Path(result.run_dir),
        nothing_to_do=result.nothing_to_do,
    )


def save_dsp_checkpoint(model: DSPModel, path: str | Path) -> Path:
    """``{"netG": ..., "netD": ..., "netV2SM": ..., "netVOPE": ..., "A": ..., "Z": ..., ...}``
    plus the other base modules and ``config`` (a plain dict)."""
    out: dict[str, Any] = {}
    for side in (model.generator, model.critic):
        for name, module in side.named_children():
            if name != "bank" and module is not None:
                out[name] = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    bank = model.generator.bank
    out.update(
        A=bank.A.cpu(), Z=bank.Z.cpu(), seen=bank.seen.cpu(), unseen=bank.unseen.cpu(),
        config=model.cfg.to_dict(),
    )  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return path


def load_dsp_checkpoint(path: str | Path) -> tuple[DSPModel, BaseModels]:
    """Rebuild the model written by :func:`save_dsp_checkpoint` (tensors and plain data only)."""
    from papers_shared.checkpoint import read_checkpoint

    state = read_checkpoint(path)
    if not isinstance(state, dict) or "config" not in state or "A" not in state:
        raise ValueError(f"{path} is not a dsp-zsl checkpoint (no 'config' / 'A' entries)")
    cfg = DSPConfig.from_dict(dict(state["config"]))
    model, base = build_dsp_model(cfg, state["A"], state["seen"], state["unseen"])
    model.generator.bank.Z.copy_(state["Z"])
    for side in (model.generator, model.critic):
        for name, module in side.named_children():
            if name == "bank" or module is None:
                continue
            if name not in state:
                raise ValueError(f"{path} lacks the module {name!r} that base {cfg.base!r} needs")
            module.load_state_dict(state[name])
    return model, base
