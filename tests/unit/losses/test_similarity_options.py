"""The losses' similarity, scores and reduction options: the old call forms give the old numbers
bit for bit, the new forms match brute-force loops, and bad calls say what to give."""

import math

import pytest
import torch
import torch.nn.functional as F

from cirlib.losses import (
    batch_classification_loss,
    cosine_similarity,
    dot_similarity,
    negative_confidence,
    negative_squared_euclidean,
    relaxed_proximity_loss,
    uncertainty_regularisation_loss,
)


def _rows(b=5, d=4, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=dtype), torch.randn(b, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_old_call_forms_give_the_old_numbers_exactly(dtype):
    q, t = _rows(dtype=dtype)
    q, t = F.normalize(q, dim=-1), F.normalize(t, dim=-1)
    old_bbc = F.cross_entropy((100.0 * q @ t.T).float(), torch.arange(5))
    assert torch.equal(batch_classification_loss(q, t, 100.0), old_bbc)
    w = negative_confidence(t, 0.6)
    qq, tt = F.normalize(q.float(), dim=-1), F.normalize(t.float(), dim=-1)
    c = 0.5 * (1.0 + qq @ tt.T)
    old_rp = (w * c**2 + (0.5 - w).clamp(min=0.0) * (1.0 - c) ** 2).mean()
    assert torch.equal(relaxed_proximity_loss(q, t, w, 0.5), old_rp)


def test_similarities_match_loops():
    q, t = _rows()
    for i in range(5):
        for j in range(5):
            dot = float(sum(q[i, k] * t[j, k] for k in range(4)))
            assert float(dot_similarity(q, t)[i, j]) == pytest.approx(dot, abs=1e-5)
            cos = dot / float(q[i].norm() * t[j].norm())
            assert float(cosine_similarity(q, t)[i, j]) == pytest.approx(cos, abs=1e-5)
            dist = sum(float(q[i, k] - t[j, k]) ** 2 for k in range(4))
            assert float(negative_squared_euclidean(q, t)[i, j]) == pytest.approx(-dist, abs=1e-4)


def _bbc_loop(scores):
    terms = []
    for i in range(len(scores)):
        row = [float(v) for v in scores[i]]
        terms.append(-row[i] + math.log(sum(math.exp(v) for v in row)))
    return terms


def test_bbc_with_another_similarity_and_reductions_matches_a_loop():
    q, t = _rows()
    s = 2.0 * negative_squared_euclidean(q, t)
    terms = _bbc_loop(s)
    got = batch_classification_loss(q, t, 2.0, similarity=negative_squared_euclidean)
    assert float(got) == pytest.approx(sum(terms) / 5, rel=1e-5)
    each = batch_classification_loss(
        q, t, 2.0, similarity=negative_squared_euclidean, reduction="none"
    )
    assert each.tolist() == pytest.approx(terms, rel=1e-5)
    total = batch_classification_loss(
        q, t, 2.0, similarity=negative_squared_euclidean, reduction="sum"
    )
    assert float(total) == pytest.approx(sum(terms), rel=1e-5)


def test_bbc_from_scores_equals_bbc_from_rows():
    q, t = _rows()
    want = batch_classification_loss(q, t, 10.0, similarity=cosine_similarity)
    got = batch_classification_loss(scores=cosine_similarity(q, t), scale=10.0)
    assert torch.equal(got, want)
    # a scale of 1 on scores: the cross-entropy of the matrix itself
    s = torch.randn(4, 4)
    assert float(batch_classification_loss(scores=s, scale=1.0)) == pytest.approx(
        sum(_bbc_loop(s)) / 4, rel=1e-5
    )


def test_rp_from_scores_equals_rp_from_rows_and_reductions_add_up():
    q, t = _rows()
    w = negative_confidence(t, 0.6)
    want = relaxed_proximity_loss(q, t, w, 0.5)
    assert torch.equal(relaxed_proximity_loss(scores=cosine_similarity(q, t), weights=w), want)
    each = relaxed_proximity_loss(q, t, w, 0.5, reduction="none")
    assert each.shape == (5, 5)
    torch.testing.assert_close(each.mean(), want)
    torch.testing.assert_close(relaxed_proximity_loss(q, t, w, reduction="sum"), each.sum())


def test_mgur_coarse_term_passes_its_similarity_on():
    q, t = _rows()
    plain = uncertainty_regularisation_loss(q, t, 4.0)
    same = uncertainty_regularisation_loss(q, t, 4.0, similarity=dot_similarity)
    torch.testing.assert_close(plain, same)
    other = uncertainty_regularisation_loss(q, t, 4.0, similarity=cosine_similarity)
    assert not torch.allclose(plain, other)


def test_bad_calls_say_what_to_give():
    q, t = _rows()
    with pytest.raises(ValueError, match="queries and targets, or scores"):
        batch_classification_loss(q)
    with pytest.raises(ValueError, match="not both"):
        batch_classification_loss(q, t, scores=q @ t.T)
    with pytest.raises(ValueError, match="weights"):
        relaxed_proximity_loss(q, t)
    with pytest.raises(ValueError, match="reduction"):
        relaxed_proximity_loss(q, t, negative_confidence(t), reduction="max")
