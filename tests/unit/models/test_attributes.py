"""The attribute-weighted query head: shapes, the formulas written out, limiting cases."""

import torch
import torch.nn.functional as F

from cirlib.models.attributes import (
    AttributeSubQuery,
    AttributeWeightedCombiner,
    AttributeWeights,
)

D, T, W = 8, 4, 6  # deliberately not the toy encoder's 128 / 9 / 128


def _inputs(b=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, D, generator=g),
        torch.randn(b, D, generator=g),
        torch.randn(b, T, W, generator=g),
    )


def test_shapes_norms_and_equal_initial_weights():
    torch.manual_seed(0)
    head = AttributeWeightedCombiner(D, W, T, attribute_dim=3).eval()
    x, y, z = _inputs()
    q = head(x, y, z)
    g = head.embed_gallery(x, z)
    assert q.base.shape == (5, D) and q.attributes.shape == (5, 2, T * 3)
    assert q.weights.shape == (5, 3) and g.attributes.shape == (5, 2, T * 3)
    for v in (q.base, q.attributes, g.base, g.attributes):
        torch.testing.assert_close(v.norm(dim=-1), torch.ones(v.shape[:-1]))
    # the weight head's output layer starts at zero: equal weights before training
    torch.testing.assert_close(q.weights, torch.full((5, 3), 1 / 3))
    assert head.joint_query(q).shape == (5, D + 2 * T * 3)
    torch.testing.assert_close(head.joint_gallery(g).norm(dim=-1), torch.full((5,), 3**0.5))


def test_joint_score_equals_weighted_sum_of_cosines():
    torch.manual_seed(1)
    head = AttributeWeightedCombiner(D, W, T, attribute_dim=3).eval()
    with torch.no_grad():  # non-uniform weights, so the test can tell the weights apart
        head.weights.out.weight.normal_()
    x, y, z = _inputs()
    xg, _, zg = _inputs(7, seed=2)
    q, g = head(x, y, z), head.embed_gallery(xg, zg)
    got = head.joint_query(q) @ head.joint_gallery(g).T
    for i in range(5):
        for j in range(7):
            want = q.weights[i, 0] * (q.base[i] @ g.base[j])
            for a in range(2):
                want = want + q.weights[i, 1 + a] * (q.attributes[i, a] @ g.attributes[j, a])
            torch.testing.assert_close(got[i, j], want)


def test_sub_query_matches_the_formula_written_out():
    torch.manual_seed(3)
    sq = AttributeSubQuery(D, W, T, attribute_dim=3, hidden_dim=7).eval()
    _, y, z = _inputs()
    h = F.relu(z @ sq.token_in.weight.T + sq.token_in.bias + sq.text_in(y)[:, None] + sq.position)
    gate = torch.sigmoid(h @ sq.gate.weight.T + sq.gate.bias)
    xi = z @ sq.project.weight.T + sq.project.bias
    expected = F.normalize(((1 - gate) * xi + gate * sq.value(h)).flatten(1), dim=-1)
    torch.testing.assert_close(sq(z, y), expected)
    torch.testing.assert_close(sq.embed(z), F.normalize(xi.flatten(1), dim=-1))


def test_sub_query_gate_limits():
    """Gate shut: the sub-query is the reference's own attribute map (no edit). Gate open: it is
    the text-predicted value everywhere."""
    torch.manual_seed(4)
    sq = AttributeSubQuery(D, W, T, attribute_dim=3).eval()
    _, y, z = _inputs()
    torch.nn.init.zeros_(sq.gate.weight)
    torch.nn.init.constant_(sq.gate.bias, -60.0)
    torch.testing.assert_close(sq(z, y), sq.embed(z))
    torch.nn.init.constant_(sq.gate.bias, 60.0)
    h = F.relu(sq.token_in(z) + sq.text_in(y)[:, None] + sq.position)
    torch.testing.assert_close(sq(z, y), F.normalize(sq.value(h).flatten(1), dim=-1))


def test_weights_follow_the_text_only():
    torch.manual_seed(5)
    w = AttributeWeights(D, 2).eval()
    torch.nn.init.normal_(w.out.weight)
    y = torch.randn(4, D)
    expected = torch.softmax(w.out(F.relu(w.hidden(y))), dim=-1)
    torch.testing.assert_close(w(y), expected)
    torch.testing.assert_close(w(y).sum(-1), torch.ones(4))


def test_without_attributes_the_head_is_the_combiner():
    torch.manual_seed(6)
    head = AttributeWeightedCombiner(D, W, T, attributes=()).eval()
    x, y, z = _inputs()
    q = head(x, y, z)
    torch.testing.assert_close(head.joint_query(q), head.combiner(x, y))
    torch.testing.assert_close(head.joint_gallery(head.embed_gallery(x, z)), F.normalize(x, dim=-1))
    assert sum(p.numel() for p in head.sub_queries.parameters()) == 0


def test_dropout_only_in_training_mode():
    head = AttributeWeightedCombiner(D, W, T)
    x, y, z = _inputs()
    head.eval()
    assert torch.equal(head.joint_query(head(x, y, z)), head.joint_query(head(x, y, z)))
    head.train()
    torch.manual_seed(0)
    a = head.joint_query(head(x, y, z))
    torch.manual_seed(1)
    assert not torch.equal(a, head.joint_query(head(x, y, z)))


def test_gradients_reach_every_piece():
    torch.manual_seed(7)
    head = AttributeWeightedCombiner(D, W, T, attribute_dim=3, dropout=0.0)
    with torch.no_grad():
        head.weights.out.weight.normal_()  # the zero-initialised layer blocks nothing after this
    x, y, z = _inputs()
    score = head.joint_query(head(x, y, z)) @ head.joint_gallery(head.embed_gallery(x, z)).T
    score.sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
