"""What a loss needs from a miner, and nothing more: when to rebuild, how to rebuild, how to
draw, and its state (so that one process can mine and send the result to the others).

A recipe that uses a :class:`Miner` never reads its internals (pools, caches, logs); any object
with these five methods can replace DQE-CIR's :class:`~cirlib.miners.TargetRelativeMiner`,
e.g. to compare mining rules with everything else fixed.

Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Miner(Protocol):
    """Negatives for training queries, rebuilt from the current model on a schedule.

    * ``due(epoch) -> bool``: rebuild before training epoch ``epoch`` (0-based)?
    * ``refresh(queries [Q, E], gallery [N, E], epoch)``: rebuild from the current model's
      embeddings of every training query and gallery image (score = dot product).
    * ``sample(idx [B], k, generator=None) -> [B, k]``: gallery rows to use as negatives of
      the queries ``idx``.
    * ``state_dict() -> dict`` and ``load_state_dict(state)``: everything ``sample`` and
      ``due`` read. Under several processes one rank refreshes and the others load its state,
      so every rank draws from the same negatives.
    """

    def due(self, epoch: int) -> bool: ...

    def refresh(self, queries: torch.Tensor, gallery: torch.Tensor, epoch: int) -> None: ...

    def sample(
        self, idx: torch.Tensor, k: int, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...
