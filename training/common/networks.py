"""The paper's PointNet actor-critic (REFERENCE section 3).

PointNet: 1x1 conv (no bias) -> LayerNorm -> ReLU, 6 -> 64 -> 128 -> 512, global max-pool.
Its feature is concatenated with the state and fed to two MLP heads (256-256): the actor's
output is a tanh-squashed mean scaled to the action bounds (state-independent log-std), the
critic's a value. Output layers start near zero (weights x0.01, zero bias).
The PointNet is shared: both losses back-propagate into it, and the critic's optimiser steps it
while the actor's does not (see `actor_parameters`), as in ManiSkill2-Learn.
Without points (`points=False`: a learned teacher on the simulator's state) the same heads read the state alone.
With `normalize_state` (state policies only: `RunConfig` refuses it for point-cloud runs, whose ONNX runtime would
not standardise) the heads read the state standardised by running statistics the model keeps (its buffers, so
checkpoints carry them); PPO updates them once per iteration (`update_state_normalization`).
"""
from typing import Iterator, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from training.common.running_stats import combine_moments


class PointNet(nn.Module):
    """Per-point shared MLP with LayerNorm, then max-pool over points: (B, N, C) -> (B, 512).

    When gradients are needed, only the points that win some feature's max receive one (~15-30 % of a
    cloud), so `forward` first finds them without autograd, then runs the gradient pass on them alone:
    the same pooled values and gradients (the MLP treats every point on its own), ~1.5x faster
    updates (`benchmarks/bc_update_speed.py`).
    """

    def __init__(self, in_channels: int = 6, channels: Sequence[int] = (64, 128, 512)) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        for width in channels:
            layers += [nn.Linear(in_channels, width, bias=False), nn.LayerNorm(width), nn.ReLU()]
            in_channels = width
        self.mlp = nn.Sequential(*layers)
        self.out_features = in_channels

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        gradient_pass = torch.is_grad_enabled() and self.mlp[0].weight.requires_grad
        if torch.jit.is_tracing() or not gradient_pass:  # ONNX export traces the plain max-pool
            return self.mlp(points).max(dim=1).values
        return self.mlp(winning_points(self.mlp, points)).max(dim=1).values


def winning_points(mlp: nn.Module, points: torch.Tensor) -> torch.Tensor:
    """The points of each cloud (B, N, C) that win at least one feature's max over `mlp(points)`, as
    (B, K, C) with K the most winners of any cloud; clouds with fewer are filled up with other points
    of their own (which do not change the max)."""
    with torch.no_grad():
        winners = mlp(points).argmax(dim=1)  # (B, F): the point holding each feature's max
        won = torch.zeros(points.shape[:2], dtype=torch.bool, device=points.device).scatter_(1, winners, True)
        order = torch.argsort((~won).to(torch.uint8), dim=1, stable=True)[:, :int(won.sum(dim=1).max())]
    return points.gather(1, order.unsqueeze(-1).expand(-1, -1, points.shape[-1]))


def mlp_head(in_features: int, out_features: int, hidden: Sequence[int] = (256, 256)) -> nn.Sequential:
    """MLP with ReLU hidden layers and a near-zero-initialised output layer."""
    layers: List[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    out = nn.Linear(in_features, out_features)
    with torch.no_grad():
        out.weight.mul_(0.01)
        out.bias.zero_()
    return nn.Sequential(*layers, out)


class ActorCritic(nn.Module):
    """Shared PointNet + state -> Gaussian policy (tanh-scaled mean) and value. `points=False`: no PointNet, the
    heads read the state alone (its `inputs` are then (B, 0) arrays: nothing besides the state).
    `normalize_state`: the state is standardised (running mean and variance, clipped to +-`STATE_CLIP`) first."""

    STATE_CLIP = 10.0

    def __init__(self, state_size: int, action_size: int, action_low: Sequence[float],
                 action_high: Sequence[float], log_std_init: float = -1.0, points: bool = True,
                 normalize_state: bool = False) -> None:
        super().__init__()
        self.normalize_state = normalize_state
        if normalize_state:  # identity until the first update
            self.register_buffer("state_mean", torch.zeros(state_size))
            self.register_buffer("state_var", torch.ones(state_size))
            self.register_buffer("state_count", torch.zeros(()))
        self.pointnet = PointNet() if points else None
        features = (self.pointnet.out_features if points else 0) + state_size
        self.actor = mlp_head(features, action_size)
        self.critic = mlp_head(features, 1)
        self.log_std = nn.Parameter(torch.full((action_size,), log_std_init))
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        self.register_buffer("action_center", (high + low) / 2)
        self.register_buffer("action_scale", (high - low) / 2)

    def features(self, inputs: torch.Tensor, state: torch.Tensor, pointnet_grad: bool = True) -> torch.Tensor:
        """PointNet feature and state, concatenated. `inputs`: points (B, N, 6), or (B, F) features the
        PointNet already pooled (a frozen encoder's, `EnvWorkers.set_encoder`), used as they are; (B, 0) without points.
        `pointnet_grad=False`: the PointNet is a fixed feature extractor, no gradient and no backward cost."""
        if self.normalize_state:
            state = ((state - self.state_mean) / torch.sqrt(self.state_var + 1e-8)).clamp(-self.STATE_CLIP,
                                                                                         self.STATE_CLIP)
        if inputs.dim() == 2:
            return torch.cat([inputs, state], dim=-1)
        with torch.set_grad_enabled(pointnet_grad and torch.is_grad_enabled()):
            pooled = self.pointnet(inputs)
        return torch.cat([pooled, state], dim=-1)

    def update_state_normalization(self, states: np.ndarray) -> None:
        """Fold a batch of states (N, state_size) into the running mean and variance (parallel-variance update)."""
        batch = np.asarray(states, dtype=np.float64).reshape(-1, self.state_mean.numel())
        if len(batch) == 0:
            return
        mean, var, count = combine_moments(self.state_mean.double().numpy(), self.state_var.double().numpy(),
                                           self.state_count.item(), batch.mean(0), batch.var(0), len(batch))
        self.state_mean.copy_(torch.from_numpy(mean))
        self.state_var.copy_(torch.from_numpy(var))
        self.state_count.fill_(count)

    def mean_action(self, features: torch.Tensor) -> torch.Tensor:
        return self.action_center + self.action_scale * torch.tanh(self.actor(features))

    def forward(self, inputs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Deterministic action (the exported path); `inputs` as in `features`."""
        return self.mean_action(self.features(inputs, state))

    def distribution_and_value(self, inputs: torch.Tensor, state: torch.Tensor, pointnet_grad: bool = True
                               ) -> Tuple[torch.distributions.Normal, torch.Tensor]:
        """Action distribution and value estimate from one shared PointNet pass (see `features`)."""
        features = self.features(inputs, state, pointnet_grad)
        mean = self.mean_action(features)
        return torch.distributions.Normal(mean, self.log_std.exp()), self.critic(features).squeeze(-1)

    def actor_parameters(self) -> Iterator[nn.Parameter]:
        """What the actor's optimiser updates: its head and log-std, not the shared PointNet."""
        yield from self.actor.parameters()
        yield self.log_std

    def critic_parameters(self, with_pointnet: bool = True) -> Iterator[nn.Parameter]:
        """What the critic's optimiser updates: its head and (unless frozen) the shared PointNet."""
        yield from self.critic.parameters()
        if with_pointnet and self.pointnet is not None:
            yield from self.pointnet.parameters()
