"""DSP's own modules: the visual-to-semantic mapper V2SM, the prototype evolver VOPE and the
prototype bank holding the fixed prototypes A and the dynamic seen prototypes Z."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dsp_zsl.models.bases import init_linear

__all__ = ["V2SM", "V2SMMLP", "VOPE", "PrototypeBank", "create_v2sm"]


class V2SM(nn.Module):
    """Visual -> semantic mapper, gated-residual variant.

    x' = x + sigmoid(W3 ReLU(W2 ReLU(W1 x))); out = normalize(fc3 ReLU(fc2 ReLU(fc1 x'))).
    x: (B, feature_dim) -> (B, att_dim), unit rows (the sphere the prototypes live on).
    """

    def __init__(self, feature_dim: int, att_dim: int, hidden_dim: int = 4096) -> None:
        super().__init__()
        self.linear1 = nn.Linear(feature_dim, hidden_dim)
        self.linear2 = nn.Linear(hidden_dim, hidden_dim)
        self.linear3 = nn.Linear(hidden_dim, feature_dim)
        self.fc1 = nn.Linear(feature_dim, 1024 if hidden_dim >= 1024 else hidden_dim)
        mid = self.fc1.out_features
        self.fc2 = nn.Linear(mid, mid)
        self.fc3 = nn.Linear(mid, att_dim)
        self.apply(init_linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.linear3(F.relu(self.linear2(F.relu(self.linear1(x))))))
        h = x + gate
        h = self.fc3(F.relu(self.fc2(F.relu(self.fc1(h)))))
        return F.normalize(h, dim=-1)


class V2SMMLP(nn.Module):
    """Visual -> semantic mapper, plain 2-layer MLP in TF-VAEGAN's AttDec shape.
    x: (B, feature_dim) -> (B, att_dim), unit rows."""

    def __init__(self, feature_dim: int, att_dim: int, hidden_dim: int = 4096) -> None:
        super().__init__()
        self.fc1 = nn.Linear(feature_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, att_dim)
        self.apply(init_linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc3(F.leaky_relu(self.fc1(x), 0.2)), dim=-1)


def create_v2sm(kind: str, feature_dim: int, att_dim: int, hidden_dim: int) -> nn.Module:
    """``"gated"`` -> :class:`V2SM`, ``"mlp"`` -> :class:`V2SMMLP`."""
    if kind == "gated":
        return V2SM(feature_dim, att_dim, hidden_dim)
    if kind == "mlp":
        return V2SMMLP(feature_dim, att_dim, hidden_dim)
    raise ValueError(f"unknown V2SM kind {kind!r}; valid: ['gated', 'mlp']")


class VOPE(nn.Module):
    """Visual-oriented prototype evolver, row-wise on a prototype matrix.

    h = W_b ReLU(W_a z) (d_a -> 4 d_a -> d_a); g = sigmoid(W_d ReLU(W_c z)) (d_a -> d_a//4 -> d_a);
    out = normalize(h * g), or normalize(z + h * g) with ``residual`` (starts near the identity,
    so the prototypes evolve from the given ones). z: (K, att_dim) -> (K, att_dim).
    """

    def __init__(self, att_dim: int, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        if att_dim < 4:
            raise ValueError(f"VOPE needs att_dim >= 4 (gate width att_dim // 4), got {att_dim}")
        self.linear1 = nn.Linear(att_dim, 4 * att_dim)  # W_a
        self.linear2 = nn.Linear(4 * att_dim, att_dim)  # W_b
        self.fc1 = nn.Linear(att_dim, att_dim // 4)  # W_c
        self.fc2 = nn.Linear(att_dim // 4, att_dim)  # W_d
        self.apply(init_linear)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.linear2(F.relu(self.linear1(z)))
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(z))))
        return F.normalize(z + h * g if self.residual else h * g, dim=-1)


class PrototypeBank(nn.Module):
    """A (C, d_a) fixed prototypes and Z (S, d_a) dynamic seen prototypes (buffers).

    ``seen``: (S,) global indices of the seen classes; Z row i belongs to class ``seen[i]``.
    """

    A: torch.Tensor
    Z: torch.Tensor
    seen: torch.Tensor
    unseen: torch.Tensor

    def __init__(self, prototypes: torch.Tensor, seen: torch.Tensor, unseen: torch.Tensor) -> None:
        super().__init__()
        if prototypes.dim() != 2:
            raise ValueError(f"prototypes must be (C, d_a), got shape {tuple(prototypes.shape)}")
        self.register_buffer("A", prototypes.detach().clone().float())
        self.register_buffer("seen", seen.detach().clone().long())
        self.register_buffer("unseen", unseen.detach().clone().long())
        self.register_buffer("Z", self.A[self.seen].clone())

    @property
    def num_classes(self) -> int:
        return self.A.shape[0]

    def seen_row(self) -> torch.Tensor:
        """(C,) map from a global class index to its row in Z (-1 for unseen classes)."""
        row = torch.full((self.num_classes,), -1, dtype=torch.long, device=self.A.device)
        row[self.seen] = torch.arange(len(self.seen), device=self.A.device)
        return row

    def evolve(self, vope: nn.Module, mode: str) -> torch.Tensor:
        """New Z without gradient: VOPE(A_s) (direct) or VOPE(Z) (recurrent); stored and returned."""
        with torch.no_grad():
            source = self.A[self.seen] if mode == "direct" else self.Z
            new = vope(source)
            self.Z.copy_(new)
        return self.Z

    def mixed_unseen(
        self, vope: nn.Module | None, alpha: float, renorm: bool = False
    ) -> torch.Tensor:
        """Conditions of the unseen classes: alpha * a_u + (1 - alpha) * VOPE(a_u); (U, d_a)."""
        a_u = self.A[self.unseen]
        if vope is None:
            return a_u
        mixed = alpha * a_u + (1.0 - alpha) * vope(a_u)
        return F.normalize(mixed, dim=-1) if renorm else mixed
