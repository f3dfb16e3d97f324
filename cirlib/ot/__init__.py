"""Optimal transport: a batched log-domain Sinkhorn solver (chapter on MAPNet)."""

from cirlib.ot.sinkhorn import plan_assignment, sinkhorn, sinkhorn_potentials

__all__ = ["plan_assignment", "sinkhorn", "sinkhorn_potentials"]
