"""On one process the recipes' losses are bit for bit what they were before they learned to
gather across ranks: the chapters' checkpoints and numbers depend on it.

Each ``_before_*`` closure is the recipe's ``loss_fn`` as it was before multi-process training
(the code of commit 009d493, with the default options), kept here as the reference. Dropout is
on (the chapters' setting), so the random streams must also be consumed in the same order.
"""

import pytest
import torch
import torch.nn.functional as F

from cirlib.data.features import SplitFeatures
from cirlib.losses import (
    additive_cala_loss,
    attribute_margin_loss,
    batch_classification_loss,
    blend_losses,
    convex_cala_loss,
    margin_ranking_loss,
    multi_schema_interaction_loss,
    pairwise_preference_loss,
    relaxed_proximity_loss,
    target_distribution_kl_loss,
    target_relative_distribution,
    uncertainty_regularisation_loss,
)
from cirlib.losses.cala_losses import cosine_logits
from cirlib.losses.relaxed_proximity import negative_confidence
from cirlib.methods import cala, mapnet, mgur
from cirlib.methods.combiner import combiner_loss
from cirlib.methods.dqe import DQESettings, build_model, dqe_loss, refresh_miner
from cirlib.miners import TargetRelativeMiner
from cirlib.models.augmenter import gaussian_feature_augment
from cirlib.models.combiner import Combiner
from cirlib.schedules import coarse_to_fine_weight
from cirlib.train import fit

N_IMG, Q, D, T, WI, L, WT = 20, 32, 8, 4, 6, 7, 5
FIT = dict(epochs=2, batch_size=16, lr=1e-2, seed=5)


def _features():
    g = torch.Generator().manual_seed(3)
    ref = torch.randint(0, N_IMG, (Q,), generator=g)
    tgt = (ref + 1 + torch.randint(0, N_IMG - 1, (Q,), generator=g)) % N_IMG
    images = torch.randn(N_IMG, D, generator=g)
    lengths = torch.randint(2, L, (Q,), generator=g)
    return SplitFeatures(
        images=images,
        texts=images[tgt] - images[ref] + 0.3 * torch.randn(Q, D, generator=g),
        reference_index=ref,
        target_index=tgt,
        image_tokens=torch.randn(N_IMG, T, WI, generator=g).half(),
        text_tokens=torch.randn(Q, L, WT, generator=g).half(),
        text_mask=torch.arange(L)[None, :] < lengths[:, None],
    )


def _before_combiner(f):
    ref, texts = f.images[f.reference_index], f.texts
    tgt = F.normalize(f.images[f.target_index], dim=-1)
    return lambda model, idx: batch_classification_loss(model(ref[idx], texts[idx]), tgt[idx], 100)


def _before_mgur(f, epochs):
    ref, texts = f.images[f.reference_index], f.texts
    tgt = F.normalize(f.images[f.target_index], dim=-1)
    norm, scale, calls = mgur.matched_feature_norm(D), mgur.LOGIT_SCALE, {"n": 0}

    def loss_fn(model, idx):
        w = coarse_to_fine_weight(min(calls["n"] // 2, epochs - 1), epochs, 1.0)
        calls["n"] += 1
        q, t = model(ref[idx], texts[idx]), tgt[idx]
        fine = batch_classification_loss(q, t, scale)
        if w == 0.0:
            return fine
        jittered = gaussian_feature_augment(norm * t, form="paper", noise_scale=1.0)
        coarse = uncertainty_regularisation_loss(q, jittered, scale / norm)
        return blend_losses(coarse, fine, w)

    return loss_fn


def _before_cala(f, combination):
    ref_idx, tgt_idx = f.reference_index, f.target_index
    ref, texts = f.images[ref_idx], f.texts
    tgt = F.normalize(f.images[tgt_idx], dim=-1)
    length = int(f.text_mask.any(dim=0).nonzero().max()) + 1
    txt_tok, txt_mask = f.text_tokens[:, :length], f.text_mask[:, :length]

    def loss_fn(model, idx):
        batch = {"reference": ref[idx], "text": texts[idx], "target": tgt[idx]}
        r_tok, t_tok = f.image_tokens[ref_idx[idx]].float(), f.image_tokens[tgt_idx[idx]].float()
        q = model(batch["reference"], batch["text"])
        qtm = cala.QTM_SCALE * q.float() @ batch["target"].float().T
        pseudo = model.hinge(r_tok, txt_tok[idx].float(), txt_mask[idx], t_tok)
        tbia = cosine_logits(pseudo, q, cala.AUX_SCALE)
        fused = model.compositor(r_tok, t_tok)
        ctr = cosine_logits(model.complementary_text(batch["text"]), fused, cala.AUX_SCALE)
        if combination == "additive":
            return additive_cala_loss(qtm, tbia, ctr, alpha=cala.ALPHA, beta=cala.BETA)
        return convex_cala_loss(
            qtm, tbia, ctr, tac_weight=cala.TAC_WEIGHT, hca_weight=cala.HCA_WEIGHT
        )

    return loss_fn


def _before_mapnet(f):
    length = int(f.text_mask.sum(dim=1).max())
    text_tokens, text_mask = f.text_tokens[:, :length], f.text_mask[:, :length]

    def loss_fn(model, idx):
        r, t = f.reference_index[idx], f.target_index[idx]
        e_q, f_q = model.encode_query(
            f.images[r], f.texts[idx], f.image_tokens[r].float(), text_tokens[idx].float(),
            text_mask[idx],
        )  # fmt: skip
        e_t, f_t = model.encode_target(f.images[t], f.image_tokens[t].float())
        loss = batch_classification_loss(e_q, e_t, mapnet.LOGIT_SCALE)
        loss = loss + multi_schema_interaction_loss(f_q, f_t, tau=0.1)
        weights = negative_confidence(f.images[t], 0.6)
        return loss + relaxed_proximity_loss(e_q, e_t, weights, 0.5)

    return loss_fn


def _before_dqe(f, miner, s, gates, batches_per_epoch):
    images, texts, ref, tgt = f.images.float(), f.texts.float(), f.reference_index, f.target_index
    frozen, calls = F.normalize(images, dim=-1), {"n": 0}

    def token_rows(rows):
        return f.image_tokens[rows].float()

    def loss_fn(model, idx):
        epoch = calls["n"] // batches_per_epoch
        calls["n"] += 1
        if miner.due(epoch):
            refresh_miner(model, miner, f, epoch)
        query = model(images[ref[idx]], texts[idx], token_rows(ref[idx]))
        target = model.embed_gallery(images[tgt[idx]], token_rows(tgt[idx]))
        jq, jt = model.joint_query(query), model.joint_gallery(target)
        loss = batch_classification_loss(jq, jt, s.scale)
        neg = miner.sample(idx.cpu(), s.n_negatives)
        b, k = neg.shape
        flat = neg.flatten()
        negative = model.embed_gallery(images[flat], token_rows(flat))
        jn = model.joint_gallery(negative).view(b, k, -1)
        pos = (jq * jt).sum(-1)
        negs = torch.einsum("be,bke->bk", jq, jn)
        loss = loss + s.pairwise_weight * pairwise_preference_loss(pos, negs, s.temperature)
        relevance = torch.einsum("bd,bkd->bk", frozen[tgt[idx]], frozen[neg])
        p = target_relative_distribution(relevance, s.relevance_temperature)
        loss = loss + s.kl_weight * target_distribution_kl_loss(pos, negs, p, s.temperature)
        loss = loss + s.ranking_weight * margin_ranking_loss(pos, negs, s.margin)
        neg_attr = negative.attributes.view(b, k, *negative.attributes.shape[1:])
        return loss + s.attribute_weight * attribute_margin_loss(
            query.attributes, target.attributes, neg_attr, s.attribute_margin, gates[idx]
        )

    return loss_fn


DQE = DQESettings(attribute_dim=3, attribute_hidden_dim=8, n_negatives=2, refresh_every=1)


def _miner(f):
    exclude = [[int(r)] for r in f.reference_index]
    return TargetRelativeMiner(f.target_index, exclude, 0.0, 0.5, 1, pool_size=6, seed=1)


def _pair(name):
    """(model factory, loss now, loss before) for one recipe with its default options."""
    f = _features()
    batches = Q // FIT["batch_size"]
    if name == "combiner":
        return lambda: Combiner(D), combiner_loss(f), _before_combiner(f)
    if name == "mgur":
        now = mgur.mgur_loss(f, epochs=FIT["epochs"], batches_per_epoch=batches)
        return lambda: Combiner(D), now, _before_mgur(f, FIT["epochs"])
    if name.startswith("cala"):
        combination = name.split("-")[1]
        model = lambda: cala.build_cala(f, branch_dim=8, compositor_layers=2)  # noqa: E731
        return model, cala.cala_loss(f, combination=combination), _before_cala(f, combination)
    if name == "mapnet":
        sizes = dict(n_schemas=3, schema_width=8, schema_dim=4, schema_layers=1, schema_heads=2)
        model = lambda: mapnet.build_mapnet(f, **sizes)  # noqa: E731
        return model, mapnet.mapnet_loss(f), _before_mapnet(f)
    gates = (torch.arange(2 * Q).view(Q, 2) % 3 == 0).float()
    now = dqe_loss(f, _miner(f), DQE, gates=gates, batches_per_epoch=batches)
    return lambda: build_model(f, DQE), now, _before_dqe(f, _miner(f), DQE, gates, batches)


NAMES = ["combiner", "mgur", "cala-additive", "cala-convex", "mapnet", "dqe"]


@pytest.mark.parametrize("name", NAMES)
def test_one_process_training_is_bit_identical_to_before(name):
    make, now, before = _pair(name)
    runs = []
    for loss_fn in (now, before):
        torch.manual_seed(0)
        runs.append(fit(make(), loss_fn, Q, **FIT))
    torch.manual_seed(0)
    (new, old), init = runs, make().state_dict()
    assert [h["loss"] for h in new.history] == [h["loss"] for h in old.history]
    for param, value in old.model.state_dict().items():
        assert torch.equal(new.model.state_dict()[param], value), param
    assert any(not torch.equal(v, init[k]) for k, v in old.model.state_dict().items())
