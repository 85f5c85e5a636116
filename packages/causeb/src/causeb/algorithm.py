"""``CauseEB``: the DomainBed algorithm (early-branching network, RDS, HSIC independence).

Per step (B = all training minibatches concatenated, M training domains)::

    h = base(x); h~ = RDS(h)
    z_c, z~_c = T_c(h), T_c(h~);  z_d, z~_d = T_d(h), T_d(h~)
    L_main = CE(f_c(z_c), y) + CE(f_c(z~_c), y) + CE(f_d(z_d), d)
    L_indp = sum HSIC(n(z_c^i), sg(n(z_d^j)))        (clean/augmented pairs, domain side detached)
    L_cons = MSE(z_c, P(z~_c)) + MSE(z~_c, P(z_c)) + G(z_d, P(z~_d)) + G(z~_d, P(z_d))
    L = L_main + beta * L_cons + alpha * L_indp

Inference is ``f_c(T_c(base(x)))``: a plain network of the backbone's shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from causeb.augment import random_domain_sampling
from causeb.config import CausEBConfig, causeb_hparams
from causeb.losses import consistency_loss, hsic, independence_loss
from causeb.models import (
    BackbonePart,
    DigitsCNNPart,
    DomainMLP,
    build_branches,
    build_projector,
    freeze_batchnorm2d,
)
from papers_shared.dg.algorithms import Algorithm, Minibatches, make_adam, register_algorithm
from papers_shared.dg.hparams import HParam
from papers_shared.dg.networks import DigitsCNN

__all__ = ["CauseEB", "CausEB", "causeb_hparams", "hsic_of_features"]


@register_algorithm
class CauseEB(Algorithm):
    """Causal early-branching network with random domain sampling (official class name).

    Submodule names follow the official code (``base``, ``featurizer_class``,
    ``featurizer_domains``, ``classifier_class``, ``classifier_domains``, ``cdpl``) so its
    ``model_dict`` loads with ``strict=True``. ``rds_generator`` (None: the global RNG) seeds RDS.
    """

    hparam_help = "alpha (HSIC), beta (consistency), split_after, train_projector"

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        num_domains: int,
        hparams: Mapping[str, Any],
    ) -> None:
        super().__init__(input_shape, num_classes, num_domains, hparams)
        self.config = CausEBConfig.from_hparams(self.hparams)  # validates the values
        hp = self.hparams
        self.base, self.featurizer_class, self.featurizer_domains = build_branches(
            self.input_shape, hp
        )
        dim = self.featurizer_class.num_features
        if dim is None:  # build_branches always returns trunks with a feature width
            raise ValueError("the causal trunk has no feature width")
        self.classifier_class = nn.Linear(dim, num_classes)
        cfg = self.config
        self.classifier_domains = DomainMLP(
            dim, num_domains, cfg.mlp_width, cfg.mlp_depth, cfg.mlp_dropout
        )
        self.cdpl = build_projector(dim)
        self.rds_generator: torch.Generator | None = None
        self.optimizer = make_adam(self.optimized_parameters(), hp)

    @classmethod
    def extra_hparams(cls, dataset: str) -> dict[str, HParam]:
        return causeb_hparams(dataset)

    def optimized_parameters(self) -> list[nn.Parameter]:
        """Stem, both trunks, both heads; the projector only with ``train_projector``."""
        modules = [
            self.base,
            self.featurizer_class,
            self.featurizer_domains,
            self.classifier_class,
            self.classifier_domains,
        ]
        if self.config.train_projector:
            modules.append(self.cdpl)
        return [p for m in modules for p in m.parameters()]

    def train(self, mode: bool = True) -> CauseEB:
        super().train(mode)
        freeze_batchnorm2d(self)  # the projector's BatchNorm1d still trains
        return self

    def ddp_modules(self) -> list[str]:
        """One DDP wrapper per part ``update`` runs (each called once or twice per step, no
        unused parameters, so no ``find_unused_parameters``). The projector is wrapped only when
        it is optimised: by default it stays at its initial weights on every rank. Its
        BatchNorm1d running statistics (never used by ``predict``) are per rank, as DDP's buffer
        broadcast is off (see ``Algorithm.distribute``)."""
        names = [
            "base",
            "featurizer_class",
            "featurizer_domains",
            "classifier_class",
            "classifier_domains",
        ]
        return [*names, "cdpl"] if self.config.train_projector else names

    def rds(self, h: torch.Tensor) -> torch.Tensor:
        """RDS in full precision (also under autocast); output in ``h``'s dtype."""
        return random_domain_sampling(
            h.float(),
            num_draws=self.config.rds_draws,
            generator=self.rds_generator,
            use_abs_sigma=self.config.use_abs_sigma,
        ).to(h.dtype)

    def features(
        self, x: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """x: (B, C, H, W) -> ((z_c, z~_c), (z_d, z~_d)), each (B, D); one stem pass, RDS view.

        Each trunk runs once on the clean and augmented maps stacked (2B): identical to two
        passes since BatchNorm2d is frozen (GroupNorm is per sample); dropout masks differ per row.
        """
        h = self.parallel("base")(x)
        both = torch.cat([h, self.rds(h)])
        zc, zc_aug = self.parallel("featurizer_class")(both).chunk(2)
        zd, zd_aug = self.parallel("featurizer_domains")(both).chunk(2)
        return (zc, zc_aug), (zd, zd_aug)

    def losses(self, x: torch.Tensor, y: torch.Tensor, d: torch.Tensor) -> dict[str, torch.Tensor]:
        """All loss terms for images ``x: (B, C, H, W)``, labels ``y: (B,)``, domains ``d: (B,)``.

        Under data-parallel training the batch-level terms (RDS's batch Gaussian, HSIC, the
        projector's BatchNorm1d, G's max) see each rank's rows only. Under autocast only the
        backbone parts run in low precision; heads and losses run in float32.
        """
        with self.autocast():
            causal_low, domain_low = self.features(x)
        zc, zc_aug = (z.float() for z in causal_low)
        zd, zd_aug = (z.float() for z in domain_low)
        causal, domain = (zc, zc_aug), (zd, zd_aug)
        head_class, head_domains = (
            self.parallel("classifier_class"),
            self.parallel("classifier_domains"),
        )
        main = (
            F.cross_entropy(head_class(zc), y)
            + F.cross_entropy(head_class(zc_aug), y)
            + F.cross_entropy(head_domains(zd), d)
        )
        indp = independence_loss(causal, domain)
        cons = consistency_loss(
            causal,
            domain,
            self.parallel("cdpl"),
            self.config.dissimilarity_margin,
            self.config.projector_passes,
        )
        total = main + self.config.beta * cons + self.config.alpha * indp
        return {
            "loss": total,
            "loss_main": main,
            "loss_cons": cons,
            "loss_indp": indp,
            "hsic": hsic(causal[0].detach(), domain[0].detach()),
        }

    def update(
        self, minibatches: Minibatches, unlabeled: Sequence[torch.Tensor] | None = None
    ) -> dict[str, float]:
        x = torch.cat([x for x, _ in minibatches])
        y = torch.cat([y for _, y in minibatches])
        d = torch.cat([torch.full_like(yi, i) for i, (_, yi) in enumerate(minibatches)])
        terms = self.losses(x, y, d)
        self.backward_step(terms["loss"], self.optimizer)
        return {name: value.item() for name, value in terms.items()}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> class logits (B, K): stem + causal trunk + class head."""
        return self.classifier_class(self.featurizer_class(self.base(x)))

    def export(self) -> nn.Module:
        """A plain inference model computing :meth:`predict` (use it in eval mode).

        ResNet backbone: a torchvision ``ResNet`` (fc = class head); small images: a
        ``Sequential(DigitsCNN, Linear)``, i.e. ERM's network. The domain branch, domain head and
        projector are dropped; a late-branching projection is folded into the head.
        """
        stem, trunk = self.base, self.featurizer_class
        weight, bias = self.classifier_class.weight.detach(), self.classifier_class.bias.detach()
        if hasattr(trunk, "projection"):  # W (P z + b_P) + b = (W P) z + (W b_P + b)
            projection = trunk.projection
            bias = weight @ projection.bias.detach() + bias
            weight = weight @ projection.weight.detach()
        head = nn.Linear(weight.shape[1], weight.shape[0])
        head.load_state_dict({"weight": weight.clone(), "bias": bias.clone()})
        body_state = {**stem.network.state_dict(), **trunk.network.state_dict()}
        if isinstance(stem, DigitsCNNPart):
            cnn = DigitsCNN(self.input_shape, width=int(self.hparams.get("cnn_width", 64)))
            cnn.load_state_dict(body_state)
            return nn.Sequential(cnn, head).eval()
        return _export_resnet(stem, body_state, head, self.input_shape)


def _export_resnet(
    stem: BackbonePart,
    body_state: dict[str, torch.Tensor],
    head: nn.Linear,
    input_shape: tuple[int, ...],
) -> nn.Module:
    import torchvision

    arch = "resnet18" if head.in_features == 512 else "resnet50"
    model = getattr(torchvision.models, arch)(weights=None, num_classes=head.out_features)
    if input_shape[0] != 3:
        model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.fc = head
    missing = model.load_state_dict(body_state, strict=False)
    if missing.unexpected_keys or [k for k in missing.missing_keys if not k.startswith("fc.")]:
        raise ValueError(
            f"cannot export to torchvision {arch}: missing {missing.missing_keys}, "
            f"unexpected {missing.unexpected_keys}"
        )
    return model.eval()


@register_algorithm
class CausEB(CauseEB):
    """The same algorithm under the repository's spelling (the class name changed upstream)."""


def hsic_of_features(algorithm: CauseEB, x: torch.Tensor) -> float:
    """HSIC(n(z_c), n(z_d)) of clean features on ``x: (B, C, H, W)``, eval mode, no grad."""
    was_training = algorithm.training
    algorithm.eval()
    with torch.no_grad():
        h = algorithm.base(x)
        value = hsic(algorithm.featurizer_class(h), algorithm.featurizer_domains(h))
    algorithm.train(was_training)
    return float(value)
