"""Typed configuration of a DSP run and the per-dataset presets of the baselines' scripts."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = [
    "BASES",
    "DATASET_ATT_DIMS",
    "DSPConfig",
    "ENHANCE_MODES",
    "EVOLVE_MODES",
    "SELECTION_MODES",
    "PRESETS",
    "get_preset",
]

BASES = ("clswgan", "tfvaegan", "free")
EVOLVE_MODES = ("direct", "recurrent")
ENHANCE_MODES = ("v2sm", "label", "oracle", "none")
SELECTION_MODES = ("val", "test", "last")
V2SM_KINDS = ("gated", "mlp")
DATASET_ATT_DIMS = {"CUB": 312, "SUN": 102, "AWA2": 85}


def _positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> None:
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        what = "an int" if integer else "a number"
        raise ValueError(f"{name} must be {what} {bound}, got {value!r}")


@dataclass
class DSPConfig:
    """One DSP (or plain base) run: the base generator, the DSP plug-in and the evaluation.

    Defaults are the paper's CUB setting for TF-VAEGAN (see :data:`PRESETS` for the others).
    """

    # ---------------------------------------------------------------- data
    dataset: str = "CUB"
    """Name of the xlsa17 folder under data_root (CUB, SUN, AWA2 or any folder in that layout)."""
    data_root: str = "data"
    """Folder holding <dataset>/res101.mat and <dataset>/att_splits.mat."""
    class_embedding: str = "att"
    """att (attributes, att_splits.mat) or sent (CUB sentence embeddings, sent_splits.mat)."""
    preprocessing: bool = True
    """MinMax-scale the features, fitted on the training features only."""
    validation: bool = False
    """Train on train_loc and test on val_loc (the xlsa17 validation classes) instead of test."""
    # ---------------------------------------------------------------- base generator
    base: str = "tfvaegan"
    """Base generative model: clswgan (f-CLSWGAN), tfvaegan (TF-VAEGAN) or free (FREE)."""
    feature_dim: int = 2048
    """Visual feature size (2048 for ResNet-101)."""
    att_dim: int = 312
    """Prototype size d_a (312 CUB attributes, 102 SUN, 85 AWA2, 1024 CUB sentences)."""
    hidden_dim: int = 4096
    """Hidden width of every generator, critic, encoder and decoder (ngh = ndh)."""
    noise_dim: int | None = None
    """Noise size nz; None = att_dim (the baselines' setting)."""
    batch_size: int = 64
    """Real seen features per critic / generator step."""
    lr: float = 1e-4
    """Adam learning rate of the generator, encoder and critic (beta = (beta1, 0.999))."""
    beta1: float = 0.5
    """Adam beta1 of every optimizer."""
    critic_iter: int = 5
    """Critic updates per generator update."""
    lambda_gp: float = 10.0
    """Gradient-penalty weight (initial value when adapt_gp)."""
    adapt_gp: bool = True
    """TF-VAEGAN: scale lambda_gp by 1.1 up/down after each critic block (tfvaegan/free only)."""
    gamma_d: float = 10.0
    """Weight of the critic's WGAN loss (gammaD)."""
    gamma_g: float = 10.0
    """Weight of the generator's WGAN loss (gammaG)."""
    cls_weight: float = 0.01
    """f-CLSWGAN: weight of the pre-trained seen classifier's loss on generated features."""
    recons_weight: float = 0.01
    """Weight of the semantic reconstruction (AttDec / FR) loss."""
    feedback_loop: int = 2
    """TF-VAEGAN: passes per generator step; 2 feeds F(AttDec hidden) back into G."""
    a1: float = 1.0
    """TF-VAEGAN: feedback weight during training."""
    a2: float = 1.0
    """TF-VAEGAN: feedback weight during feature synthesis."""
    feed_lr: float = 1e-5
    """TF-VAEGAN: learning rate of the feedback module F."""
    dec_lr: float = 1e-4
    """TF-VAEGAN: learning rate of the semantic decoder AttDec."""
    freeze_dec: bool = False
    """TF-VAEGAN: do not update AttDec (the AWA2 script's setting)."""
    encoded_noise: bool = True
    """Sample G's latent from the encoder E during training (tfvaegan/free)."""
    center_margin: float = 200.0
    """FREE: margin of the self-adaptive margin centre loss."""
    center_weight: float = 0.5
    """FREE: weight of the centre loss."""
    incenter_weight: float = 0.8
    """FREE: weight of the intra-class (pull) term inside the centre loss."""
    # ---------------------------------------------------------------- DSP
    use_dsp: bool = True
    """Plug DSP in (V2SM, VOPE, evolving prototypes); False trains the plain base."""
    v2sm: str = "gated"
    """V2SM architecture: gated (gated residual refine + 3-layer projection) or mlp (AttDec shape)."""
    vope_residual: bool = False
    """VOPE adds its output to its input before normalising (starts near the identity)."""
    evolve_mode: str = "direct"
    """direct: Z = VOPE(A_s) every step; recurrent: Z_(k+1) = VOPE(Z_k) once per epoch."""
    alpha: float = 0.5
    """Mixed unseen condition alpha * a_u + (1 - alpha) * VOPE(a_u)."""
    renorm_mix: bool = False
    """L2-normalise the mixed unseen condition."""
    lambda_v2s: float = 1.0
    """Weight of the V2SM loss on generated features (into G)."""
    lambda_vope: float = 1.0
    """Weight of the VOPE loss."""
    dsp_lr: float = 1e-4
    """Adam learning rate of V2SM and VOPE."""
    enhance: str = "v2sm"
    """Final-classifier features: v2sm ([x ; VOPE(V2SM(x))], label-free), label (train only
    [x ; VOPE(a_y)], test v2sm), oracle (test too, with the test label: leaks labels) or none."""
    allow_label_leak: bool = False
    """Needed for enhance='oracle', which reads test labels to build test features."""
    # ---------------------------------------------------------------- evaluation
    gzsl: bool = True
    """Report GZSL U/S/H (True) or CZSL Acc over the unseen classes (False)."""
    syn_num: int = 300
    """Synthesized features per unseen class for the final classifier."""
    classifier_lr: float = 1e-3
    """Adam learning rate of the final classifier."""
    classifier_epochs: int = 25
    """Epochs of the final classifier."""
    classifier_batch: int | None = None
    """Batch of the final classifier; None = syn_num (the baselines' setting)."""
    base_features: bool = True
    """Concatenate the base's semantic hidden features (TF-VAEGAN AttDec / FREE FR) to the
    classifier input, as the baselines do (no effect for clswgan)."""
    selection: str = "val"
    """Which epoch is reported: val (held-out split of the training data, never test),
    test (best test H: the baselines' protocol, optimistic) or last."""
    val_fraction: float = 0.2
    """Share of seen training features and of synthesized unseen features held out for val."""
    pretrain_cls_epochs: int = 50
    """f-CLSWGAN: epochs of the seen-class classifier trained before the GAN."""

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {self.base!r}")
        if self.class_embedding not in ("att", "sent"):
            raise ValueError(
                f"class_embedding must be 'att' or 'sent', got {self.class_embedding!r}"
            )
        for name in ("feature_dim", "att_dim", "hidden_dim", "batch_size", "critic_iter"):
            _positive(name, getattr(self, name), integer=True)
        for name in ("syn_num", "classifier_epochs", "feedback_loop", "pretrain_cls_epochs"):
            _positive(name, getattr(self, name), integer=True)
        if self.noise_dim is not None:
            _positive("noise_dim", self.noise_dim, integer=True)
            if self.base != "clswgan" and self.noise_dim != self.att_dim:
                raise ValueError(
                    f"{self.base} draws its latent from the encoder, so noise_dim must equal "
                    f"att_dim ({self.att_dim}), got {self.noise_dim}"
                )
        if self.classifier_batch is not None:
            _positive("classifier_batch", self.classifier_batch, integer=True)
        for name in ("lr", "feed_lr", "dec_lr", "dsp_lr", "classifier_lr"):
            _positive(name, getattr(self, name))
        for name in ("lambda_gp", "gamma_d", "gamma_g", "cls_weight", "recons_weight"):
            _positive(name, getattr(self, name), allow_zero=True)
        for name in ("a1", "a2", "center_margin", "center_weight", "incenter_weight"):
            _positive(name, getattr(self, name), allow_zero=True)
        for name in ("lambda_v2s", "lambda_vope"):
            _positive(name, getattr(self, name), allow_zero=True)
        if not 0.0 <= self.beta1 < 1.0:
            raise ValueError(f"beta1 must lie in [0, 1), got {self.beta1}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")
        if self.v2sm not in V2SM_KINDS:
            raise ValueError(f"v2sm must be one of {V2SM_KINDS}, got {self.v2sm!r}")
        if self.evolve_mode not in EVOLVE_MODES:
            raise ValueError(f"evolve_mode must be one of {EVOLVE_MODES}, got {self.evolve_mode!r}")
        if self.enhance not in ENHANCE_MODES:
            raise ValueError(f"enhance must be one of {ENHANCE_MODES}, got {self.enhance!r}")
        if self.selection not in SELECTION_MODES:
            raise ValueError(f"selection must be one of {SELECTION_MODES}, got {self.selection!r}")
        if self.enhance != "none" and not self.use_dsp:
            raise ValueError(
                f"enhance={self.enhance!r} needs the DSP modules (use_dsp=True); the plain base "
                "uses enhance='none'"
            )
        if self.enhance == "oracle" and not self.allow_label_leak:
            raise ValueError(
                "enhance='oracle' builds test features from the test labels (it leaks labels); "
                "pass allow_label_leak=True only to reproduce numbers obtained that way"
            )

    @property
    def nz(self) -> int:
        """The noise size actually used."""
        return self.att_dim if self.noise_dim is None else self.noise_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DSPConfig:
        """Build from a mapping; unknown keys raise ``ValueError`` listing the valid ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DSPConfig field(s) {unknown}; valid: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> DSPConfig:
        return replace(self, **changes)


# The baselines' released scripts (TF-VAEGAN, FREE; f-CLSWGAN's CUB/SUN scripts), per dataset.
# epochs are kept beside the config (the trainer owns them).
PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("tfvaegan", "CUB"): dict(
        att_dim=312,
        gamma_d=10.0,
        gamma_g=10.0,
        lr=1e-4,
        classifier_lr=1e-3,
        critic_iter=5,
        syn_num=300,
        recons_weight=0.01,
        a1=1.0,
        a2=1.0,
        feed_lr=1e-5,
        dec_lr=1e-4,
        epochs=300,
        seed=3483,
    ),
    ("tfvaegan", "SUN"): dict(
        att_dim=102,
        gamma_d=1.0,
        gamma_g=1.0,
        lr=1e-3,
        classifier_lr=5e-4,
        critic_iter=5,
        syn_num=400,
        recons_weight=0.01,
        a1=0.1,
        a2=0.01,
        feed_lr=1e-4,
        dec_lr=1e-4,
        epochs=400,
        seed=4115,
    ),
    ("tfvaegan", "AWA2"): dict(
        att_dim=85,
        gamma_d=10.0,
        gamma_g=10.0,
        lr=1e-5,
        classifier_lr=1e-3,
        critic_iter=5,
        syn_num=1800,
        recons_weight=0.1,
        a1=0.01,
        a2=0.01,
        feed_lr=1e-4,
        dec_lr=1e-4,
        freeze_dec=True,
        epochs=120,
        seed=9182,
    ),
    ("free", "CUB"): dict(
        att_dim=312,
        gamma_d=10.0,
        gamma_g=10.0,
        lr=1e-4,
        classifier_lr=1e-3,
        critic_iter=1,
        batch_size=64,
        syn_num=700,
        recons_weight=0.001,
        a1=1.0,
        a2=1.0,
        center_margin=200.0,
        center_weight=0.5,
        incenter_weight=0.8,
        epochs=501,
        seed=3483,
    ),
    ("free", "SUN"): dict(
        att_dim=102,
        gamma_d=1.0,
        gamma_g=1.0,
        lr=2e-4,
        classifier_lr=5e-4,
        critic_iter=1,
        batch_size=512,
        syn_num=300,
        recons_weight=0.1,
        a1=0.1,
        a2=0.01,
        center_margin=120.0,
        center_weight=0.5,
        incenter_weight=0.8,
        epochs=601,
        seed=4115,
    ),
    ("free", "AWA2"): dict(
        att_dim=85,
        gamma_d=10.0,
        gamma_g=10.0,
        lr=1e-5,
        classifier_lr=1e-3,
        critic_iter=1,
        batch_size=64,
        syn_num=4600,
        recons_weight=0.001,
        a1=0.01,
        a2=0.01,
        center_margin=50.0,
        center_weight=0.5,
        incenter_weight=0.5,
        epochs=401,
        seed=9182,
    ),
    # f-CLSWGAN (Xian et al. 2018) scripts: lr 1e-4, critic 5, lambda 10, cls_weight 0.01
    ("clswgan", "CUB"): dict(
        att_dim=312,
        lr=1e-4,
        classifier_lr=1e-3,
        critic_iter=5,
        cls_weight=0.01,
        syn_num=300,
        gamma_d=1.0,
        gamma_g=1.0,
        adapt_gp=False,
        epochs=56,
        seed=3483,
    ),
    ("clswgan", "SUN"): dict(
        att_dim=102,
        lr=2e-4,
        classifier_lr=1e-3,
        critic_iter=5,
        cls_weight=0.01,
        syn_num=100,
        gamma_d=1.0,
        gamma_g=1.0,
        adapt_gp=False,
        epochs=40,
        seed=4115,
    ),
    ("clswgan", "AWA2"): dict(
        att_dim=85,
        lr=1e-5,
        classifier_lr=1e-3,
        critic_iter=5,
        cls_weight=0.01,
        syn_num=1800,
        gamma_d=1.0,
        gamma_g=1.0,
        adapt_gp=False,
        epochs=30,
        seed=9182,
    ),
}


def get_preset(base: str, dataset: str, **overrides: Any) -> tuple[DSPConfig, dict[str, int]]:
    """``(config, {"epochs": ..., "seed": ...})`` for a base on CUB, SUN or AWA2."""
    key = (base, dataset.upper())
    if key not in PRESETS:
        valid = sorted(f"{b}/{d}" for b, d in PRESETS)
        raise ValueError(f"no preset for {base}/{dataset}; valid: {valid}")
    values = copy.deepcopy(PRESETS[key])
    run = {"epochs": values.pop("epochs"), "seed": values.pop("seed")}
    values.update(base=base, dataset=dataset.upper())
    values.update(overrides)
    return DSPConfig.from_dict(values), run
