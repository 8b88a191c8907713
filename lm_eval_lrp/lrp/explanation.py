"""The result of one contrastive LRP backward: :class:`Explanation` (relevance of the inputs and residual nodes)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass
class Explanation:
    """Result of one (contrastive) LRP backward. Relevance tensors are float32 on the CPU."""

    input_ids: list[int]
    position: int
    target_id: int
    contrast_id: int | None
    target_logit: float
    contrast_logit: float | None
    delta: float
    input_relevance: torch.Tensor  # [T]: summed over hidden dims
    node_names: list[str]  # "embed", "<l>.mid", "<l>.out"
    node_relevance: torch.Tensor  # [len(node_names), T]
    rule: str
    topk: list[tuple[int, float]] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)  # wall time: "forward" (under the rules), "backward"

    @property
    def finite(self) -> bool:
        return bool(torch.isfinite(self.input_relevance).all() and torch.isfinite(self.node_relevance).all())

    def prefix(self, n: int) -> "Explanation":
        """The same explanation restricted to the first ``n`` tokens (``n > position``: nothing after it is relevant)."""
        if not self.position < n <= len(self.input_ids):
            raise ValueError(f"prefix of {n} tokens must keep the explained position {self.position}")
        return replace(self, input_ids=self.input_ids[:n], input_relevance=self.input_relevance[:n],
                       node_relevance=self.node_relevance[:, :n])

    def node(self, name: str) -> torch.Tensor:
        return self.node_relevance[self.node_names.index(name)]

    @property
    def conservation(self) -> dict:
        """ΣR_input/Δℓ and, per block, relevance lost going back through attention and MLP (out − in)."""
        sums = self.node_relevance.double().sum(-1).tolist()  # one transfer, then plain floats
        total_in = float(self.input_relevance.double().sum())
        blocks = []
        n_layers = (len(self.node_names) - 1) // 2
        for layer in range(n_layers):
            s_in, s_mid, s_out = sums[2 * layer : 2 * layer + 3]
            blocks.append({"layer": layer, "attn_lost": s_mid - s_in, "mlp_lost": s_out - s_mid, "lost": s_out - s_in})
        head_in = float(sums[-1]) if len(sums) else float("nan")
        return {
            "sum_input": total_in,
            "delta": self.delta,
            "ratio": total_in / self.delta if self.delta else float("nan"),
            "head_lost": self.delta - head_in,
            "blocks": blocks,
        }
