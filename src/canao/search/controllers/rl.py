"""REINFORCE with an LSTM policy over the decisions, as in CANAO (arXiv 2009.06823, Sec. 3.4, after NASNet/MnasNet).

The policy reads the decision vector left to right: an LSTM cell whose
input at step i is the embedding of decision i-1 (a learned start token at
i = 0) and whose output goes through decision i's own linear head to the
logits over its values. A vector is sampled step by step; its log
probability is the sum over steps. After each reward r the policy takes one
Adam step on

    loss = -(r - b) * log p(decisions) - entropy_weight * H(policy at decisions)

with b an exponential moving average of past rewards (the baseline that
reduces the gradient's variance). Sampling uses a seeded torch generator,
so the same seed and the same rewards give the same vectors.

Example::

    controller = ReinforceController(space.choice_counts(), seed=0)
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from canao.search.controllers.base import Decisions


class Policy(nn.Module):
    def __init__(self, counts: Sequence[int], hidden: int) -> None:
        super().__init__()
        self.counts = tuple(int(c) for c in counts)
        self.start = nn.Parameter(torch.zeros(hidden))
        self.embed = nn.ModuleList(nn.Embedding(c, hidden) for c in self.counts)
        self.cell = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, c) for c in self.counts)

    def run(
        self, chosen: Optional[Sequence[int]], generator: Optional[torch.Generator] = None
    ) -> tuple[Decisions, torch.Tensor, torch.Tensor]:
        """Sample a vector (chosen None) or score a given one: (decisions, sum log p, sum entropy)."""
        x = self.start[None]
        state: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        picks: list[int] = []
        log_p, entropy = torch.zeros(()), torch.zeros(())
        for i, head in enumerate(self.heads):
            h, c = self.cell(x, state)
            state = (h, c)
            dist = torch.distributions.Categorical(logits=head(h)[0])
            if chosen is None:
                pick = int(torch.multinomial(dist.probs, 1, generator=generator))
            else:
                pick = int(chosen[i])
            picks.append(pick)
            log_p = log_p + dist.log_prob(torch.tensor(pick))
            entropy = entropy + dist.entropy()
            x = self.embed[i](torch.tensor([pick]))
        return tuple(picks), log_p, entropy


class ReinforceController:
    name = "rl"

    def __init__(
        self,
        counts: Sequence[int],
        seed: int = 0,
        *,
        hidden: int = 64,
        lr: float = 5e-3,
        baseline_decay: float = 0.9,
        entropy_weight: float = 1e-3,
    ) -> None:
        self.counts = tuple(int(c) for c in counts)
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # the policy's initial weights depend on the seed only
        self.policy = Policy(self.counts, hidden)
        torch.random.set_rng_state(torch_state)
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.baseline: Optional[float] = None
        self.baseline_decay, self.entropy_weight = baseline_decay, entropy_weight

    def ask(self) -> Decisions:
        with torch.no_grad():
            decisions, _, _ = self.policy.run(None, self.generator)
        return decisions

    def tell(self, decisions: Sequence[int], reward: float) -> None:
        reward = float(reward)
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        _, log_p, entropy = self.policy.run(decisions)
        loss = -advantage * log_p - self.entropy_weight * entropy
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward

    def probabilities(self) -> list[list[float]]:
        """The greedy path's per-decision probabilities (for reports: how sure the policy has become)."""
        with torch.no_grad():
            x, state, out = self.policy.start[None], None, []
            for i, head in enumerate(self.policy.heads):
                h, c = self.policy.cell(x, state)
                state = (h, c)
                probs = torch.softmax(head(h)[0], -1)
                out.append(probs.tolist())
                x = self.policy.embed[i](probs.argmax()[None])
        return out
