"""MSI is labelled as a reading (per triplet, target schemas x query schemas), and the library
does what the label says, also for a plan that is not square."""

import json
from pathlib import Path

import torch

import cirlib.losses.multi_schema_interaction as msi

ROOT = Path(__file__).resolve().parents[3]


def test_the_plan_is_per_triplet_target_by_query_with_uniform_marginals_even_when_not_square():
    g = torch.Generator().manual_seed(0)
    B, n_t, n_q, D = 3, 4, 6, 5
    t, q = torch.randn(B, n_t, D, generator=g), torch.randn(B, n_q, D, generator=g)
    plan, assignment = msi.schema_assignment(t, q, tau=0.5, max_iters=2000, tol=1e-9)
    assert plan.shape == (B, n_t, n_q) and assignment.shape == (B, n_t)
    torch.testing.assert_close(plan.sum(2), torch.full((B, n_t), 1 / n_t), atol=1e-6, rtol=0)
    torch.testing.assert_close(plan.sum(1), torch.full((B, n_q), 1 / n_q), atol=1e-6, rtol=0)
    # one triplet's plan does not depend on the other triplets of the batch
    alone, _ = msi.schema_assignment(t[1:2], q[1:2], tau=0.5, max_iters=2000, tol=1e-9)
    torch.testing.assert_close(alone[0], plan[1])


def test_the_module_says_msi_is_a_reading_and_why():
    doc = " ".join(msi.__doc__.split())
    assert "reading of the loss, not a transcription" in doc
    assert "a summary of the paper" in doc and "N_B" in doc and "square plan" in doc
    assert "per triplet" in doc
    assert "seed" not in doc and "methods.md" not in doc
    assert "as the seed writes" not in msi.multi_schema_interaction_loss.__doc__


def test_chapter_6_lists_msi_as_a_reading_in_what_is_known():
    nb = json.loads((ROOT / "notebooks" / "06_mapnet.ipynb").read_text())
    (known,) = [
        "".join(c["source"])
        for c in nb["cells"]
        if c["cell_type"] == "markdown" and "## What is known" in "".join(c["source"])
    ]
    (msi_row,) = [line for line in known.splitlines() if line.startswith("| MSI")]
    assert "a reading" in msi_row and "per triplet" in msi_row and "| seed |" not in msi_row
    assert "N_B" in known and "square" in known
    assert '(the "seed")' not in known
