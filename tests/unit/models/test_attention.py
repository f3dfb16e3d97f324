"""cirlib.models.attention: the same function of an nn.MultiheadAttention's parameters as the
module itself (outputs, returned weights, gradients), with padding masks and dropout."""

import pytest
import torch
from torch import nn

from cirlib.models.attention import multi_head_attention, shared_self_attention


def _module(width, heads, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    module = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
    with torch.no_grad():  # the module starts with zero biases: make them matter
        module.in_proj_bias.normal_()
        module.out_proj.bias.normal_()
    return module.double()


@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("shared_key_value", [True, False])
def test_matches_the_module_with_and_without_padding(heads, shared_key_value):
    module = _module(16, heads).eval()
    gen = torch.Generator().manual_seed(1)
    query = torch.randn(3, 5, 16, generator=gen, dtype=torch.float64)
    key = torch.randn(3, 7, 16, generator=gen, dtype=torch.float64)
    value = key if shared_key_value else torch.randn(3, 7, 16, generator=gen, dtype=torch.float64)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[0, 5:] = True
    padding[2, 1] = True
    for mask in (None, padding):
        expected, expected_w = module(query, key, value, key_padding_mask=mask, need_weights=True)
        out, weights = multi_head_attention(
            module, query, key, value, key_padding_mask=mask, need_weights=True
        )
        torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
        torch.testing.assert_close(weights, expected_w, atol=1e-12, rtol=0)
    assert (weights[0, :, 5:] == 0).all() and (weights[2, :, 1] == 0).all()
    assert multi_head_attention(module, query, key, value)[1] is None


@pytest.mark.parametrize("heads", [1, 4])
def test_gradients_match_the_module(heads):
    """Self-attention (query is key is value) in training mode without dropout: the gradients
    of every parameter and of the input are the module's."""
    ours, ref = _module(12, heads).train(), _module(12, heads).train()
    x = torch.randn(4, 6, 12, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    target = torch.randn(4, 6, 12, dtype=torch.float64)
    ((multi_head_attention(ours, x, x, x)[0] - target) ** 2).sum().backward()
    ((ref(x_ref, x_ref, x_ref, need_weights=False)[0] - target) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-10, rtol=0)
    for (name, p), (_, p_ref) in zip(ours.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, atol=1e-10, rtol=0, msg=name)


def test_dropout_acts_on_the_weights_only_in_training():
    module = _module(16, 4, dropout=0.5)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    module.eval()
    clean, clean_w = multi_head_attention(module, x, x, x, need_weights=True)
    torch.testing.assert_close(clean, module(x, x, x)[0], atol=1e-12, rtol=0)
    module.train()
    torch.manual_seed(0)
    noisy, noisy_w = multi_head_attention(module, x, x, x, need_weights=True)
    # returned weights are taken before dropout (as the module returns them); outputs differ
    torch.testing.assert_close(noisy_w, clean_w, atol=1e-12, rtol=0)
    assert not torch.allclose(noisy, clean)
    torch.manual_seed(0)
    torch.testing.assert_close(multi_head_attention(module, x, x, x)[0], noisy, atol=0, rtol=0)


def test_refuses_modules_it_does_not_cover():
    x = torch.randn(2, 3, 8)
    for module in (
        nn.MultiheadAttention(8, 2),  # sequence-first
        nn.MultiheadAttention(8, 2, batch_first=True, kdim=4, vdim=4),
        nn.MultiheadAttention(8, 2, batch_first=True, add_bias_kv=True),
        nn.MultiheadAttention(8, 2, batch_first=True, bias=False),
    ):
        with pytest.raises(ValueError, match="multi_head_attention expects"):
            multi_head_attention(module, x, x, x)


@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("training", [False, True])
def test_shared_self_attention_is_the_attention_of_the_expanded_batch(heads, training):
    """Same outputs and gradients as multi_head_attention on x expanded over the batch; in
    training the per-row dropout masks are the same draws (same seed, same shape)."""
    module = _module(16, heads, dropout=0.3).train(training)
    x = torch.randn(5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grad = torch.randn(3, 5, 16, dtype=torch.float64)
    outputs, grads = [], []
    for shared in (True, False):
        module.zero_grad()
        leaf = x.clone().requires_grad_()
        torch.manual_seed(7)
        if shared:
            out = shared_self_attention(module, leaf, 3)
        else:
            expanded = leaf.expand(3, -1, -1)
            out = multi_head_attention(module, expanded, expanded, expanded)[0]
        out.backward(grad)
        outputs.append(out)
        grads.append([leaf.grad] + [p.grad for p in module.parameters()])
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-12, rtol=0)
    for ours, reference in zip(*grads):
        torch.testing.assert_close(ours, reference, atol=1e-12, rtol=0)
    rows_differ = not torch.equal(outputs[0][0], outputs[0][1])
    assert rows_differ == training  # per-row dropout masks in training, one output in eval
