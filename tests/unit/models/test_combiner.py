import torch
import torch.nn.functional as F

from cirlib.models.combiner import Combiner


def test_shapes_and_normalised_output():
    c = Combiner(16).eval()
    q, mix = c(torch.randn(5, 16), torch.randn(5, 16), return_mix=True)
    assert q.shape == (5, 16) and mix.shape == (5,)
    assert torch.allclose(q.norm(dim=-1), torch.ones(5), atol=1e-6)
    assert ((mix > 0) & (mix < 1)).all()
    assert c.text_projection.out_features == 64 and c.combine.out_features == 128  # P=4D, H=8D


def test_matches_the_formula_written_out():
    torch.manual_seed(0)
    c = Combiner(8, projection_dim=12, hidden_dim=20).eval()
    xi, xt = torch.randn(3, 8), torch.randn(3, 8)
    p_t = F.relu(xt @ c.text_projection.weight.T + c.text_projection.bias)
    p_i = F.relu(xi @ c.image_projection.weight.T + c.image_projection.bias)
    cat = torch.cat([p_t, p_i], -1)
    h = F.relu(c.combine(cat))
    lam = torch.sigmoid(c.mix_out(F.relu(c.mix_hidden(cat))))
    expected = F.normalize(c.output(h) + lam * xt + (1 - lam) * xi, dim=-1)
    assert torch.allclose(c(xi, xt), expected, atol=1e-6)


def test_residual_limit():
    """With the learned residual zeroed and the mix forced to 1 (or 0), the Combiner returns the
    normalised text (or image) feature: the two raw inputs are its limiting cases."""
    c = Combiner(4).eval()
    torch.nn.init.zeros_(c.output.weight)
    torch.nn.init.zeros_(c.output.bias)
    torch.nn.init.zeros_(c.mix_out.weight)
    xi, xt = torch.randn(2, 4), torch.randn(2, 4)
    for bias, expected in ((50.0, xt), (-50.0, xi)):
        torch.nn.init.constant_(c.mix_out.bias, bias)
        assert torch.allclose(c(xi, xt), F.normalize(expected, dim=-1), atol=1e-6)


def test_dropout_only_in_training_mode():
    c = Combiner(8)
    x, t = torch.randn(4, 8), torch.randn(4, 8)
    c.eval()
    assert torch.equal(c(x, t), c(x, t))
    c.train()
    torch.manual_seed(0)
    a = c(x, t)
    torch.manual_seed(1)
    assert not torch.equal(a, c(x, t))
