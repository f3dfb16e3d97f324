"""topk selects each block's best with torch.topk and repairs ties at the cut: on scores with
only a few distinct values (ties everywhere, across block borders and at every cut) it must
still equal the prefix of a full stable sort, reference removed."""

from __future__ import annotations

import pytest
import torch

from cirlib.eval.ranking import topk


@pytest.mark.parametrize("seed", range(4))
def test_topk_equals_the_stable_sort_under_heavy_ties(seed):
    gen = torch.Generator().manual_seed(seed)
    n, m = 11, 37
    # one-hot gallery: score(i, j) = q[i, j], values in {0, 1, 2}
    q = torch.randint(0, 3, (n, m), generator=gen).double()
    g = torch.eye(m, dtype=torch.float64)
    exclude = torch.randint(0, m, (n,), generator=gen)
    for k in (1, 3, 8, 20, m - 1):
        for gallery_chunk in (5, 16, m):
            got = topk(q, g, k, exclude, query_chunk=4, gallery_chunk=gallery_chunk)[1]
            for i in range(n):
                order = torch.sort(q[i], descending=True, stable=True).indices.tolist()
                order = [j for j in order if j != int(exclude[i])]
                assert got[i].tolist() == order[:k], (k, gallery_chunk, i)
