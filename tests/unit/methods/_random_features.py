"""Random cached features for a toy split: the shapes every method reads (global image and text
features, image and text tokens with a padding mask), filled from one seeded generator. Shared
by the registry and contract tests."""

import torch

from cirlib.data.features import SplitFeatures


def random_features(split, dim=8, n_tokens=4, width=6, length=7, text_width=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, q = len(split.gallery), len(split.triplets)
    lengths = torch.randint(2, length + 1, (q,), generator=g)
    return SplitFeatures(
        images=torch.randn(n, dim, generator=g),
        texts=torch.randn(q, dim, generator=g),
        reference_index=torch.tensor([split.index_of(t.reference) for t in split.triplets]),
        target_index=torch.tensor([split.index_of(t.target) for t in split.triplets]),
        image_tokens=torch.randn(n, n_tokens, width, generator=g).half(),
        text_tokens=torch.randn(q, length + 3, text_width, generator=g).half(),
        text_mask=torch.arange(length + 3)[None, :] < lengths[:, None],
    )
