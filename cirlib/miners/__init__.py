"""Miners decide which gallery images a loss treats as negatives; losses decide what to do with
them (the split pytorch-metric-learning uses). One miner per file; every miner follows the
:class:`Miner` protocol."""

from cirlib.miners.protocol import Miner
from cirlib.miners.target_relative import (
    TargetRelativeMiner,
    delta_scores,
    exclusion_mask,
    mid_zone,
    zone_bounds,
)

__all__ = [
    "Miner",
    "TargetRelativeMiner",
    "delta_scores",
    "exclusion_mask",
    "mid_zone",
    "zone_bounds",
]
