"""The schema encoder (a small Q-Former): shapes, token widths read from the input, padding
masks that really mask, and the attention it reports."""

import torch

from cirlib.models.schemas import SchemaEncoder


def test_shapes_for_any_token_widths():
    enc = SchemaEncoder(12, 20, n_schemas=5, width=16, out_dim=7).eval()  # no attention dropout
    img, txt = torch.randn(3, 9, 12), torch.randn(3, 6, 20)
    assert enc(img).shape == (3, 5, 7)
    out, attention = enc(img, txt, torch.ones(3, 6, dtype=torch.bool), return_attention=True)
    assert out.shape == (3, 5, 7) and attention.shape == (3, 5, 15)
    torch.testing.assert_close(attention.sum(-1), torch.ones(3, 5))


def test_padding_tokens_are_ignored():
    torch.manual_seed(0)
    enc = SchemaEncoder(8, 8, n_schemas=4, width=16, out_dim=16, layers=2).eval()
    img, txt = torch.randn(2, 9, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    changed = txt.clone()
    changed[~mask] = 100.0  # garbage in the padding
    out, attention = enc(img, txt, mask, return_attention=True)
    torch.testing.assert_close(out, enc(img, changed, mask))
    assert (attention[:, :, 9:][~mask[:, None, :].expand(-1, 4, -1)] == 0).all()
    # and the text does matter where it is not padding
    assert not torch.allclose(out, enc(img, torch.randn(2, 5, 8), mask))


def test_samples_are_independent_and_image_only_path_ignores_text_weights():
    torch.manual_seed(1)
    enc = SchemaEncoder(8, 8, n_schemas=3, width=16, out_dim=16).eval()
    img = torch.randn(4, 9, 8)
    torch.testing.assert_close(enc(img)[1:3], enc(img[1:3]))
    before = enc(img)
    with torch.no_grad():
        enc.text_in[0].weight.normal_()  # the target side reads no text: nothing may change
    torch.testing.assert_close(enc(img), before)


def test_gradients_reach_queries_and_both_projections():
    enc = SchemaEncoder(8, 6, n_schemas=3, width=16, out_dim=16)
    out = enc(torch.randn(2, 9, 8), torch.randn(2, 4, 6), torch.ones(2, 4, dtype=torch.bool))
    out.pow(2).sum().backward()
    for p in (enc.queries, enc.image_in[0].weight, enc.text_in[0].weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_first_layer_on_shared_queries_equals_the_expanded_batch_in_training():
    """The encoder feeds its queries un-expanded to the first layer (self-attention computed
    once): same outputs and gradients as the layer on the expanded batch, dropout included."""
    torch.manual_seed(3)
    enc = SchemaEncoder(8, 6, n_schemas=4, width=16, out_dim=16, dropout=0.2).double().train()
    img = torch.randn(3, 9, 8, dtype=torch.float64)
    txt = torch.randn(3, 5, 6, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1] * 5, [1, 0, 0, 0, 0]], dtype=torch.bool)
    outs, grads = [], []
    for shared in (True, False):
        enc.zero_grad()
        torch.manual_seed(11)
        memory = torch.cat([enc.image_in(img), enc.text_in(txt)], dim=1)
        padding = torch.cat([torch.zeros(3, 9, dtype=torch.bool), ~mask], dim=1)
        x = enc.queries if shared else enc.queries.expand(3, -1, -1)
        out, _ = enc.layers[0](x, memory, padding)
        out.pow(2).sum().backward()
        outs.append(out)
        grads.append([p.grad for p in enc.parameters() if p.grad is not None])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-12, rtol=0)
    assert len(grads[0]) == len(grads[1]) > 0
    for ours, reference in zip(*grads):
        torch.testing.assert_close(ours, reference, atol=1e-12, rtol=0)
