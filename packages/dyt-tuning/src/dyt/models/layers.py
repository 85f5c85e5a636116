"""DyT building blocks: the bottleneck adapter, the MoE adapter and the token dispatcher."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Adapter",
    "MoEAdapter",
    "TokenDispatcher",
    "gumbel_sigmoid_mask",
    "sample_logistic_noise",
]


class Adapter(nn.Module):
    """AdaptFormer-style parallel bottleneck: ``s * up(dropout(relu(down(x))))`` (paper Eq. 4).

    Official key names: ``down_proj``, ``up_proj``. The up projection starts at zero, so the
    adapter outputs exactly 0 at initialisation. No residual inside: the block adds it.
    """

    def __init__(
        self,
        embed_dim: int,
        bottleneck: int,
        scale: float | str = 1.0,
        dropout: float = 0.1,
        layernorm: str = "none",
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.bottleneck = bottleneck
        self.dropout = dropout
        self.layernorm_option = layernorm
        # AdaptFormer keeps one LayerNorm under this name for both the "in" and "out" options.
        self.adapter_layer_norm_before: nn.Module = (
            nn.LayerNorm(embed_dim) if layernorm != "none" else nn.Identity()
        )
        self.down_proj = nn.Linear(embed_dim, bottleneck)
        self.up_proj = nn.Linear(bottleneck, embed_dim)
        if scale == "learnable":
            self.scale: nn.Parameter | float = nn.Parameter(torch.ones(1))
        else:
            self.scale = float(scale)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.down_proj.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down_proj.bias)
        nn.init.zeros_(self.up_proj.weight)
        nn.init.zeros_(self.up_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., C) -> (..., C)."""
        if self.layernorm_option == "in":
            x = self.adapter_layer_norm_before(x)
        h = F.relu(self.down_proj(x))
        h = F.dropout(h, p=self.dropout, training=self.training)
        out = self.up_proj(h) * self.scale
        if self.layernorm_option == "out":
            out = self.adapter_layer_norm_before(out)
        return out


class MoEAdapter(nn.Module):
    """Mixture of N adapter experts merged per image (paper section 3.4, Eq. 7).

    Paper-based; the authors released no reference code. Routing (our recommended choice):
    ``alpha = softmax(router(mean_tokens(x)))`` with a zero-initialised router (uniform mixture at
    start); the experts' weights *and* biases are merged with alpha, then one adapter runs with the
    merged weights, so the cost is about one adapter for any N. Because of the ReLU this is not the
    same as summing separately-run experts.
    """

    def __init__(
        self,
        embed_dim: int,
        bottleneck: int,
        num_experts: int = 4,
        scale: float | str = 1.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        self.embed_dim, self.bottleneck, self.num_experts = embed_dim, bottleneck, num_experts
        self.dropout = dropout
        self.down_weight = nn.Parameter(torch.empty(num_experts, bottleneck, embed_dim))
        self.down_bias = nn.Parameter(torch.zeros(num_experts, bottleneck))
        self.up_weight = nn.Parameter(torch.zeros(num_experts, embed_dim, bottleneck))
        self.up_bias = nn.Parameter(torch.zeros(num_experts, embed_dim))
        self.router = nn.Linear(embed_dim, num_experts)
        if scale == "learnable":
            self.scale: nn.Parameter | float = nn.Parameter(torch.ones(1))
        else:
            self.scale = float(scale)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for expert in range(self.num_experts):
            nn.init.kaiming_uniform_(self.down_weight[expert], a=math.sqrt(5))
        nn.init.zeros_(self.down_bias)
        nn.init.zeros_(self.up_weight)
        nn.init.zeros_(self.up_bias)
        nn.init.zeros_(self.router.weight)
        nn.init.zeros_(self.router.bias)

    def routing_weights(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> alpha: (B, N), a softmax over experts of the mean token."""
        return self.router(x.mean(dim=1)).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C)."""
        if x.dim() != 3:
            raise ValueError(f"MoEAdapter expects (B, T, C) input, got shape {tuple(x.shape)}")
        alpha = self.routing_weights(x).to(x.dtype)  # (B, N)
        down_w = torch.einsum("bn,ndc->bdc", alpha, self.down_weight.to(x.dtype))
        down_b = alpha @ self.down_bias.to(x.dtype)
        up_w = torch.einsum("bn,ncd->bcd", alpha, self.up_weight.to(x.dtype))
        up_b = alpha @ self.up_bias.to(x.dtype)
        h = torch.baddbmm(down_b.unsqueeze(1), x, down_w.transpose(1, 2)).relu()
        h = F.dropout(h, p=self.dropout, training=self.training)
        return torch.baddbmm(up_b.unsqueeze(1), h, up_w.transpose(1, 2)) * self.scale


def sample_logistic_noise(like: torch.Tensor) -> torch.Tensor:
    """G1 - G2 with G ~ Gumbel(0, 1) drawn as ``-log(Exp(1))``: Logistic(0, 1) noise, shaped like ``like``."""
    g1 = -torch.empty_like(like).exponential_().log()
    g2 = -torch.empty_like(like).exponential_().log()
    return g1 - g2


def gumbel_sigmoid_mask(
    logits: torch.Tensor, tau: float, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """Straight-through Gumbel-sigmoid (paper Eq. 2-3): hard {0,1} forward, soft gradient.

    ``s = sigmoid((l + G1 - G2) / tau)``, ``hard = 1[s > 0.5]``, ``mask = hard - s.detach() + s``.
    tau never changes which tokens are selected, only the surrogate gradient.
    """
    if noise is None:
        noise = sample_logistic_noise(logits)
    soft = torch.sigmoid((logits + noise) / tau)
    hard = (soft > 0.5).to(logits.dtype)
    return hard - soft.detach() + soft


class TokenDispatcher(nn.Module):
    """Token dispatcher (TD): one linear unit per token deciding whether it enters the MLP.

    Official key name ``mlp_head`` (Linear(C, 1)). Initialised like every ViT linear:
    trunc-normal std 0.02, bias 0.
    """

    def __init__(self, embed_dim: int, tau: float = 5.0) -> None:
        super().__init__()
        self.tau = tau
        self.mlp_head = nn.Linear(embed_dim, 1)
        nn.init.trunc_normal_(self.mlp_head.weight, std=0.02)
        nn.init.zeros_(self.mlp_head.bias)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens: (B, N, C) patch tokens -> (mask (B, N, 1), logits (B, N, 1)).

        Training: straight-through Gumbel mask. Eval: ``logits > 0`` (deterministic).
        """
        logits = self.mlp_head(tokens)
        if self.training:
            mask = gumbel_sigmoid_mask(logits, self.tau)
        else:
            mask = (logits > 0).to(logits.dtype)
        return mask, logits
