"""Base conditional feature generators (f-CLSWGAN, TF-VAEGAN, FREE) and their registry.

Every module keeps the attribute names of the baselines' released code (``fc1``, ``fc3``,
``linear_means``, ...) so their state dicts load unchanged. A *base* (:class:`BaseModels`
subclass) builds two groups of modules and says how they are trained:

* ``generator`` side (trained by the generator optimizer): ``netG`` and, where the base has them,
  ``netE`` (encoder) and ``netF`` (feedback);
* ``critic`` side (trained in the critic steps): ``netD`` and ``netDec`` (TF-VAEGAN semantic
  decoder), ``netFR`` (FREE feature refinement) or ``netCls`` (f-CLSWGAN's frozen classifier).

Shapes: x (B, feature_dim) visual features, c (B, att_dim) conditions, y (B,) seen-class rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dsp_zsl import losses

__all__ = [
    "BASE_REGISTRY",
    "AttDec",
    "BaseModels",
    "ClswganBase",
    "ClswganGenerator",
    "Critic",
    "Encoder",
    "Feedback",
    "FeatureRefinement",
    "FreeBase",
    "Generator",
    "LinearLogSoftmax",
    "TfvaeganBase",
    "create_base",
    "frozen",
    "init_linear",
    "list_bases",
    "register_base",
]


def _num(t: torch.Tensor) -> float:
    return float(t.detach())


def init_linear(module: nn.Module) -> None:
    """The baselines' ``weights_init``: Linear weight N(0, 0.02), bias 0."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` stop requiring grad inside the block (then are restored)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


# --------------------------------------------------------------------------- modules
class ClswganGenerator(nn.Module):
    """f-CLSWGAN's MLP_G: [noise ; c] -> LReLU(fc1) -> ReLU(fc2). (B, nz), (B, d_a) -> (B, F)."""

    def __init__(self, feature_dim: int, att_dim: int, noise_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(att_dim + noise_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, feature_dim)
        self.apply(init_linear)

    def forward(self, noise: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.fc1(torch.cat([noise, c], dim=1)), 0.2)
        return F.relu(self.fc2(h))


class Generator(nn.Module):
    """TF-VAEGAN / FREE generator: [z ; c] -> LReLU(fc1) (+ a * feedback) -> sigmoid(fc3)."""

    def __init__(self, feature_dim: int, att_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2 * att_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, feature_dim)
        self.apply(init_linear)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        feedback: torch.Tensor | None = None,
        weight: float = 0.0,
    ) -> torch.Tensor:
        h = F.leaky_relu(self.fc1(torch.cat([z, c], dim=1)), 0.2)
        if feedback is not None:
            h = h + weight * feedback
        return torch.sigmoid(self.fc3(h))


class Critic(nn.Module):
    """WGAN critic (f-CLSWGAN MLP_CRITIC / TF-VAEGAN Discriminator_D1): [x ; c] -> 1."""

    def __init__(self, feature_dim: int, att_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(feature_dim + att_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, 1)
        self.apply(init_linear)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.leaky_relu(self.fc1(torch.cat([x, c], dim=1)), 0.2))


class Encoder(nn.Module):
    """TF-VAEGAN encoder: [x ; c] -> (mean, log_var), each (B, d_a)."""

    def __init__(self, feature_dim: int, att_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(feature_dim + att_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, 2 * att_dim)
        self.linear_means = nn.Linear(2 * att_dim, att_dim)
        self.linear_log_var = nn.Linear(2 * att_dim, att_dim)
        self.apply(init_linear)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.leaky_relu(self.fc1(torch.cat([x, c], dim=1)), 0.2)
        h = F.leaky_relu(self.fc3(h), 0.2)
        return self.linear_means(h), self.linear_log_var(h)


class Feedback(nn.Module):
    """TF-VAEGAN feedback module: AttDec hidden (B, H) -> (B, H)."""

    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.apply(init_linear)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.fc2(F.leaky_relu(self.fc1(h), 0.2)), 0.2)


class AttDec(nn.Module):
    """TF-VAEGAN semantic decoder: x (B, F) -> L2-normalised (B, d_a); ``hidden`` (B, H)."""

    def __init__(self, feature_dim: int, att_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(feature_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, att_dim)
        self.apply(init_linear)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.fc1(x), 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc3(self.hidden(x)), dim=-1)


class FeatureRefinement(nn.Module):
    """FREE's feature refinement: x -> hidden -> (mu, sigma = sigmoid); heads on the sample.

    forward returns (mu, sigma, encoded, dis_out, log_probs, hidden): mu/sigma/encoded (B, d_a),
    dis_out (B, 1), log_probs (B, S), hidden (B, H).
    """

    def __init__(self, feature_dim: int, att_dim: int, hidden_dim: int, num_seen: int) -> None:
        super().__init__()
        self.att_dim = att_dim
        self.fc1 = nn.Linear(feature_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, 2 * att_dim)
        self.discriminator = nn.Linear(att_dim, 1)
        self.classifier = nn.Linear(att_dim, num_seen)
        self.apply(init_linear)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.fc1(x), 0.2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.hidden(x)
        out = self.fc3(h)
        mu, sigma = out[:, : self.att_dim], torch.sigmoid(out[:, self.att_dim :])
        encoded = mu + sigma * torch.randn_like(sigma) if self.training else mu
        return (
            mu,
            sigma,
            encoded,
            self.discriminator(encoded),
            F.log_softmax(self.classifier(encoded), dim=1),
            h,
        )


class LinearLogSoftmax(nn.Module):
    """Linear + LogSoftmax classifier (the baselines' LINEAR_LOGSOFTMAX): (B, D) -> (B, K)."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.fc(x), dim=1)


# --------------------------------------------------------------------------- bases
class BaseModels:
    """How one base generator is built, trained and sampled (no weights itself).

    Subclasses set ``name`` and implement the four methods; ``cfg`` is a
    :class:`dsp_zsl.config.DSPConfig`. ``gen`` / ``critic`` are the containers of
    :mod:`dsp_zsl.train` whose ``net*`` attributes are set at build time (typed ``Any``).
    """

    name = "base"
    generator_lr_keys: dict[str, str] = {}
    """generator-side module -> config field holding its learning rate (default ``lr``)."""
    critic_lr_keys: dict[str, str] = {}

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def build_generator(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def build_critic(self, num_seen: int) -> dict[str, nn.Module]:
        raise NotImplementedError

    def critic_loss(
        self, gen: Any, critic: Any, x: torch.Tensor, c: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one critic step (fakes are generated without gradient)."""
        raise NotImplementedError

    def generator_loss(
        self, gen: Any, critic: Any, x: torch.Tensor, c: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """(loss, generated features (B, F) with gradient, metrics) of one generator step; the
        critic side is frozen."""
        raise NotImplementedError

    def synthesize(self, gen: Any, critic: Any, c: torch.Tensor) -> torch.Tensor:
        """Features (B, F) for conditions c (B, d_a), eval mode, no gradient."""
        raise NotImplementedError

    def classifier_features(self, critic: Any, x: torch.Tensor) -> torch.Tensor | None:
        """Extra features the base feeds its final classifier (None: plain x)."""
        return None

    # shared pieces -------------------------------------------------------------
    def _wgan_critic(
        self, critic: Any, x: torch.Tensor, fake: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, float, float]:
        cfg = self.cfg
        d_real = critic.netD(x, c).mean()
        d_fake = critic.netD(fake, c).mean()
        gp = losses.gradient_penalty(critic.netD, x, fake, c)
        gamma = cfg.gamma_d
        loss = gamma * (d_fake - d_real) + gamma * self.lambda_gp * gp
        return loss, _num(d_real - d_fake), _num(gp)

    @property
    def lambda_gp(self) -> float:
        return getattr(self, "_lambda_gp", self.cfg.lambda_gp)

    @lambda_gp.setter
    def lambda_gp(self, value: float) -> None:
        self._lambda_gp = value


BASE_REGISTRY: dict[str, type[BaseModels]] = {}


def register_base(name: str) -> Callable[[type[BaseModels]], type[BaseModels]]:
    """Class decorator adding a base to :data:`BASE_REGISTRY` under ``name``."""

    def decorator(cls: type[BaseModels]) -> type[BaseModels]:
        if name in BASE_REGISTRY:
            raise ValueError(f"base {name!r} is already registered")
        cls.name = name
        BASE_REGISTRY[name] = cls
        return cls

    return decorator


def list_bases() -> list[str]:
    return sorted(BASE_REGISTRY)


def create_base(name: str, cfg: Any) -> BaseModels:
    """The registered base ``name`` for config ``cfg``; unknown names list the valid ones."""
    if name not in BASE_REGISTRY:
        raise ValueError(f"unknown base {name!r}; valid: {list_bases()}")
    return BASE_REGISTRY[name](cfg)


@register_base("clswgan")
class ClswganBase(BaseModels):
    """f-CLSWGAN (Xian et al., CVPR 2018): WGAN-GP + a frozen seen-class classifier loss."""

    def build_generator(self) -> dict[str, nn.Module]:
        cfg = self.cfg
        return {"netG": ClswganGenerator(cfg.feature_dim, cfg.att_dim, cfg.nz, cfg.hidden_dim)}

    def build_critic(self, num_seen: int) -> dict[str, nn.Module]:
        cfg = self.cfg
        cls = LinearLogSoftmax(cfg.feature_dim, num_seen)
        cls.requires_grad_(False)  # pre-trained on real seen features, then frozen
        return {"netD": Critic(cfg.feature_dim, cfg.att_dim, cfg.hidden_dim), "netCls": cls}

    def _noise(self, c: torch.Tensor) -> torch.Tensor:
        return torch.randn(c.shape[0], self.cfg.nz, device=c.device, dtype=c.dtype)

    def critic_loss(self, gen, critic, x, c, y):
        with torch.no_grad():
            fake = gen.netG(self._noise(c), c)
        loss, wd, gp = self._wgan_critic(critic, x, fake, c)
        return loss, {"wasserstein": wd, "gp": gp}

    def generator_loss(self, gen, critic, x, c, y):
        fake = gen.netG(self._noise(c), c)
        adv = -critic.netD(fake, c).mean()
        cls = F.nll_loss(critic.netCls(fake), y)
        loss = self.cfg.gamma_g * adv + self.cfg.cls_weight * cls
        return loss, fake, {"g_adv": _num(adv), "g_cls": _num(cls)}

    def synthesize(self, gen, critic, c):
        return gen.netG(self._noise(c), c)


@register_base("tfvaegan")
class TfvaeganBase(BaseModels):
    """TF-VAEGAN (Narayan et al., ECCV 2020): VAE-GAN + semantic decoder + feedback."""

    generator_lr_keys = {"netF": "feed_lr"}
    critic_lr_keys = {"netDec": "dec_lr"}

    def build_generator(self) -> dict[str, nn.Module]:
        cfg = self.cfg
        modules: dict[str, nn.Module] = {
            "netG": Generator(cfg.feature_dim, cfg.att_dim, cfg.hidden_dim),
            "netE": Encoder(cfg.feature_dim, cfg.att_dim, cfg.hidden_dim),
        }
        if cfg.feedback_loop > 1:
            modules["netF"] = Feedback(cfg.hidden_dim)
        return modules

    def build_critic(self, num_seen: int) -> dict[str, nn.Module]:
        cfg = self.cfg
        dec = AttDec(cfg.feature_dim, cfg.att_dim, cfg.hidden_dim)
        if cfg.freeze_dec:
            dec.requires_grad_(False)
        return {"netD": Critic(cfg.feature_dim, cfg.att_dim, cfg.hidden_dim), "netDec": dec}

    def _latent(self, gen, x, c):
        if self.cfg.encoded_noise:
            mean, log_var = gen.netE(x, c)
            z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
            return z, mean, log_var
        return torch.randn_like(c), None, None

    def critic_loss(self, gen, critic, x, c, y):
        cfg = self.cfg
        metrics: dict[str, float] = {}
        loss = x.new_zeros(())
        if cfg.recons_weight > 0 and not cfg.freeze_dec:
            rec = cfg.recons_weight * losses.weighted_l1(critic.netDec(x), c)
            loss = loss + rec
            metrics["dec_real"] = _num(rec)
        with torch.no_grad():
            z, _, _ = self._latent(gen, x, c)
            fake = gen.netG(z, c)
        d_loss, wd, gp = self._wgan_critic(critic, x, fake, c)
        metrics.update(wasserstein=wd, gp=gp)
        return loss + d_loss, metrics

    def _generate(self, gen, critic, z, c, weight: float, feedback: bool) -> torch.Tensor:
        fake = gen.netG(z, c)
        if feedback and hasattr(gen, "netF"):
            hidden = critic.netDec.hidden(fake).detach()
            fake = gen.netG(z, c, gen.netF(hidden), weight)
        return fake

    def generator_loss(self, gen, critic, x, c, y):
        cfg = self.cfg
        total = x.new_zeros(())
        fake = x
        metrics: dict[str, float] = {}
        for loop in range(cfg.feedback_loop):
            z, mean, log_var = self._latent(gen, x, c)
            fake = self._generate(gen, critic, z, c, cfg.a1, feedback=loop == 1)
            loss = x.new_zeros(())
            if mean is not None and log_var is not None:
                loss = loss + losses.vae_loss(fake, x, mean, log_var)
            adv_fake = fake if cfg.encoded_noise else gen.netG(torch.randn_like(c), c)
            adv = -critic.netD(adv_fake, c).mean()
            loss = loss + cfg.gamma_g * adv
            if cfg.recons_weight > 0:
                loss = loss + cfg.recons_weight * losses.weighted_l1(critic.netDec(fake), c)
            total = total + loss
            metrics["g_adv"] = _num(adv)
        return total, fake, metrics

    def synthesize(self, gen, critic, c):
        z = torch.randn_like(c)
        return self._generate(gen, critic, z, c, self.cfg.a2, feedback=True)

    def classifier_features(self, critic, x):
        return critic.netDec.hidden(x) if self.cfg.base_features else None


@register_base("free")
class FreeBase(BaseModels):
    """FREE (Chen et al., ICCV 2021): TF-VAEGAN's G/D/E plus feature refinement (FR) trained
    with a self-adaptive margin centre loss, a seen-class loss and semantic reconstruction."""

    def build_generator(self) -> dict[str, nn.Module]:
        cfg = self.cfg
        return {
            "netG": Generator(cfg.feature_dim, cfg.att_dim, cfg.hidden_dim),
            "netE": Encoder(cfg.feature_dim, cfg.att_dim, cfg.hidden_dim),
        }

    def build_critic(self, num_seen: int) -> dict[str, nn.Module]:
        cfg = self.cfg
        return {
            "netD": Critic(cfg.feature_dim, cfg.att_dim, cfg.hidden_dim),
            "netFR": FeatureRefinement(cfg.feature_dim, cfg.att_dim, cfg.hidden_dim, num_seen),
            "centers": losses.CenterLoss(num_seen, cfg.att_dim),
        }

    def _fr_loss(self, critic, feats, c, y) -> torch.Tensor:
        cfg = self.cfg
        mu, _, _, _, log_probs, _ = critic.netFR(feats)
        loss = F.nll_loss(log_probs, y)
        loss = loss + cfg.center_weight * critic.centers(
            mu, y, margin=cfg.center_margin, incenter_weight=cfg.incenter_weight
        )
        if cfg.recons_weight > 0:
            loss = loss + cfg.recons_weight * losses.weighted_l1(F.normalize(mu, dim=-1), c)
        return loss

    def critic_loss(self, gen, critic, x, c, y):
        with torch.no_grad():
            mean, log_var = gen.netE(x, c)
            z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
            fake = gen.netG(z, c)
        d_loss, wd, gp = self._wgan_critic(critic, x, fake, c)
        fr = self._fr_loss(critic, x, c, y)
        return d_loss + fr, {"wasserstein": wd, "gp": gp, "fr_real": _num(fr)}

    def generator_loss(self, gen, critic, x, c, y):
        cfg = self.cfg
        mean, log_var = gen.netE(x, c)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        fake = gen.netG(z, c)
        adv = -critic.netD(fake, c).mean()
        fr = self._fr_loss(critic, fake, c, y)
        loss = losses.vae_loss(fake, x, mean, log_var) + cfg.gamma_g * adv + fr
        return loss, fake, {"g_adv": _num(adv), "fr_fake": _num(fr)}

    def synthesize(self, gen, critic, c):
        return gen.netG(torch.randn_like(c), c)

    def classifier_features(self, critic, x):
        return critic.netFR.hidden(x) if self.cfg.base_features else None
