r"""DQE-CIR as a recipe on cached features: attribute-weighted queries + mid-zone negatives.

The objective for a batch :math:`\mathcal{B}` (scores :math:`\mathrm{sim}(q, c)` from
:class:`~cirlib.models.attributes.AttributeWeightedCombiner`, negatives :math:`n_{ik}` from
:class:`~cirlib.miners.TargetRelativeMiner`):

.. math::

    \mathcal{L} = \mathcal{L}_{BBC}
        + w_{pair}\,\mathcal{L}_{pair} + w_{KL}\,\mathcal{L}_{KL}
        + w_{rank}\,\mathcal{L}_{rank} + w_{attr}\,\mathcal{L}_{attr}

(Park, Park and Lee, 2026; the weights and the BBC term are ours). DQE-CIR has no public code;
:data:`SETTING_SOURCES` says where each setting comes from (only the abstract is the paper's own
word) and which are ours. Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cirlib.distributed import (
    broadcast,
    broadcast_object,
    call_in_forward,
    gather,
    gather_with_grad,
    is_wrapped,
    rank_slice,
    unwrap,
)
from cirlib.losses import (
    attribute_margin_loss,
    batch_classification_loss,
    margin_ranking_loss,
    pairwise_preference_loss,
    target_distribution_kl_loss,
    target_relative_distribution,
)
from cirlib.methods.spec import MethodSpec
from cirlib.miners import Miner, TargetRelativeMiner
from cirlib.models.attributes import ATTRIBUTES, AttributeWeightedCombiner
from cirlib.train import TrainingRun


@dataclass(frozen=True)
class DQESettings:
    """Every DQE-CIR setting of the book; all values are reconstructions (see
    :data:`SETTING_SOURCES`). ``zone`` = (lower, upper) quantiles of the Δ-distribution;
    ``refresh_every`` = R epochs (0 = mine once); ``n_negatives`` = K per query and step."""

    attributes: tuple[str, ...] = ATTRIBUTES
    attribute_dim: int = 16
    attribute_hidden_dim: int = 64
    zone: tuple[float, float] = (0.002, 0.05)
    refresh_every: int = 5
    n_negatives: int = 1
    pool_size: int = 64
    candidates: int | None = 4096
    exclude_listed_targets: bool = True
    temperature: float = 0.05
    relevance_temperature: float = 0.05
    margin: float = 0.1
    attribute_margin: float = 0.1
    pairwise_weight: float = 1.0
    kl_weight: float = 1.0
    ranking_weight: float = 1.0
    attribute_weight: float = 1.0
    scale: float = 100.0
    dropout: float = 0.5


# (what, DQE-CIR per the source, this book, source tag). Tags: ABS = the paper's abstract;
# SUM = a summary of the paper, as transcribed from it, not checked against the paper; 2ND = other
# third-party summaries; INF = the book's reconstruction; ours = the book's choice.
SETTING_SOURCES = [
    ("backbone", "BLIP-2 (Q-Former composed query)", "frozen encoder + Combiner", "ABS / ours"),
    ("attribute sub-queries", "colour and shape", "colour and shape", "ABS, SUM"),
    ("attribute weights", "learned, conditioned on the text", "softmax(MLP(text))", "ABS / ours"),
    ("attribute sub-query design", "unpublished", "per-token map, text-gated edit", "INF"),
    ("negatives", "mid-zone of a target-relative Δ-distribution", "same", "ABS"),
    ("Δ definition", "unpublished", "sim(q,t) − sim(q,c), current model", "INF"),
    ("mid-zone bounds", "hand-tuned, unpublished", "zone", "2ND / INF"),
    ("negatives per query", "one, from the zone", "n_negatives", "SUM"),
    ("refresh", "every fixed interval", "every refresh_every epochs", "SUM, 2ND / INF"),
    ("objective terms", "pairwise + KL, margin ranking, attribute margin", "same", "SUM, 2ND"),
    ("KL target distribution", "unpublished", "soft labels from cos(t, n)", "INF"),
    ("τ, margins, loss weights", "unpublished", "temperature, margin, *_weight", "INF"),
    ("in-batch BBC term", "unpublished", "kept, scale 100", "INF"),
    ("optimiser, lr, batch, epochs", "unpublished", "the profile's (CLIP4Cir Combiner)", "INF"),
    ("FashionIQ avg R@10 / R@50", "54.60 / 75.94", "—", "SUM"),
    ("CIRR R@10", "up to 91.58", "—", "2ND"),
]


def listed_positives(split, features, include_valid: bool = True) -> list[list[int]]:
    """Gallery rows a query may never get as a negative: its target, its reference, and (when
    ``include_valid`` and the split lists them, as the toy world does) every valid target.

    Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """
    out = []
    for i, t in enumerate(split.triplets):
        rows = {int(features.target_index[i]), int(features.reference_index[i])}
        if include_valid and t.valid_targets:
            rows.update(split.index_of(n) for n in t.valid_targets)
        out.append(sorted(rows))
    return out


def attribute_gates(split, attributes=ATTRIBUTES) -> torch.Tensor | None:
    """``[Q, A]``: 1 where the query's text asks to change attribute ``a`` (its edit type), else
    0; None when the split carries no edit types (then every gate is open).

    The toy world stores the edit type in ``meta["edit_type"]``; it is a function of the text
    alone (the grammar's templates name it), as a caption keyword tagger would give on real data.
    Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """
    types = [t.meta.get("edit_type") for t in split.triplets]
    if any(e is None for e in types):
        return None
    return torch.tensor([[float(e == a) for a in attributes] for e in types])


def build_miner(train_features, split, settings: DQESettings, seed: int) -> TargetRelativeMiner:
    """The miner of a training run (see :class:`~cirlib.miners.TargetRelativeMiner`).

    Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """
    lower, upper = settings.zone
    return TargetRelativeMiner(
        target_index=train_features.target_index,
        exclude=listed_positives(split, train_features, settings.exclude_listed_targets),
        lower=lower,
        upper=upper,
        refresh_every=settings.refresh_every,
        pool_size=settings.pool_size,
        candidates=settings.candidates,
        seed=seed,
    )


def build_model(features, settings: DQESettings) -> AttributeWeightedCombiner:
    """A fresh head sized from the features (global width, token count and width).

    Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """
    _, n_tokens, width = features.image_tokens.shape
    return AttributeWeightedCombiner(
        features.images.shape[1],
        width,
        n_tokens,
        attributes=settings.attributes,
        attribute_dim=settings.attribute_dim,
        attribute_hidden_dim=settings.attribute_hidden_dim,
        dropout=settings.dropout,
    )


@torch.no_grad()
def dqe_queries(model: AttributeWeightedCombiner, features, batch_size: int = 2048):
    """L2-normalised joint query embeddings ``[Q, D + A·E]`` (eval mode).

    Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(features.texts), batch_size):
        ref = features.reference_index[s : s + batch_size]
        parts = model(
            features.images[ref].to(device),
            features.texts[s : s + batch_size].to(device),
            features.image_tokens[ref].to(device).float(),
        )
        out.append(F.normalize(model.joint_query(parts).float(), dim=-1).cpu())
    return torch.cat(out)


@torch.no_grad()
def dqe_gallery(model: AttributeWeightedCombiner, features, batch_size: int = 4096):
    """Joint gallery embeddings ``[N, D + A·E]`` (pass as ``evaluate(..., gallery=...)``).

    Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(features.images), batch_size):
        parts = model.embed_gallery(
            features.images[s : s + batch_size].to(device),
            features.image_tokens[s : s + batch_size].to(device).float(),
        )
        out.append(model.joint_gallery(parts).float().cpu())
    return torch.cat(out)


def refresh_miner(model, miner: Miner, features, epoch: int) -> None:
    """Re-encode the training queries and gallery with the current model and re-mine.

    Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """
    was_training = model.training
    device = next(model.parameters()).device
    try:
        with torch.autocast(device.type, enabled=False):
            queries = dqe_queries(model, features)
            gallery = dqe_gallery(model, features)
        miner.refresh(queries.to(device), gallery.to(device), epoch)
    finally:
        model.train(was_training)


def _refresh(model, miner: Miner, features, epoch: int) -> None:
    """:func:`refresh_miner`; under DDP on rank 0 only, its state then loaded by every rank.

    Every rank holds the same weights, so one encoding of the training set suffices, and the
    ranks cannot disagree about the negatives even where two GPUs would round differently.
    """
    if not is_wrapped(model):
        refresh_miner(model, miner, features, epoch)
        return
    rank = torch.distributed.get_rank()
    if rank == 0:
        refresh_miner(unwrap(model), miner, features, epoch)
    state = broadcast_object(miner.state_dict() if rank == 0 else None)
    if rank != 0:
        miner.load_state_dict(state)


def _sample_negatives(miner: Miner, idx: torch.Tensor, k: int, wrapped: bool):
    """``[b, k]`` negatives of this rank's queries ``idx``; under DDP drawn once for the global
    batch.

    Rank 0 draws the negatives of all ``B`` queries from its random stream (the one-process
    stream: ``fit`` re-seeds only the other ranks) and sends them; each rank keeps its rows. With
    dropout off these are the one-process draws exactly; with dropout on, rank 0's dropout moves
    its stream by a different amount than one process's, so they are equal in distribution.
    """
    if not wrapped:
        return miner.sample(idx.cpu(), k)
    everyone = gather(idx)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if rank == 0:
        neg = miner.sample(everyone.cpu(), k)
    else:
        neg = torch.empty(len(everyone), k, dtype=torch.long)
    return rank_slice(broadcast(neg), rank, world)


def dqe_loss(
    features,
    miner: Miner | None,
    settings: DQESettings,
    *,
    gates: torch.Tensor | None = None,
    batches_per_epoch: int,
    start_epoch: int = 0,
    device="cpu",
):
    """``loss_fn(model, idx)`` for :func:`cirlib.train.fit`.

    The closure counts its calls to know the epoch (``fit`` runs ``batches_per_epoch`` batches
    per epoch) and, before the first batch of every epoch the miner says is due, re-encodes and
    re-mines. ``start_epoch`` is the epoch a resumed run starts at. With ``miner=None`` (or all
    mined-negative weights 0) it is the batch-based classification loss on the joint scores.

    Under ``fit(distributed=True)`` (``model`` wrapped in DDP) rank 0 re-mines and sends the
    pools to every rank (:func:`_refresh`) and draws the negatives of the whole batch
    (:func:`_sample_negatives`); each rank embeds its queries, targets and negatives, and all
    of them, with the frozen relevances and the attribute gates, are gathered before any term is
    formed. The in-batch negatives of the BBC term and the attribute term's normalisation by the
    batch's open gates are then the global batch's, and every rank computes the one-process
    loss of the whole batch.

    Introduced in chapter "DQE-CIR: attribute-weighted queries and target-relative negatives".
    """
    images = features.images.float().to(device)
    # tokens stay where they are, in float16: a batch's rows are gathered, moved and cast per
    # step (CIRR's RN50x4 train-gallery tokens alone are several GB)
    tokens = features.image_tokens
    texts = features.texts.float().to(device)
    ref = features.reference_index.to(device)
    tgt = features.target_index.to(device)

    def token_rows(rows):
        return tokens[rows.to(tokens.device)].to(device).float()

    frozen = F.normalize(images, dim=-1)
    gates = gates.to(device) if gates is not None else None
    s = settings
    uses_negatives = miner is not None and any(
        w > 0 for w in (s.pairwise_weight, s.kl_weight, s.ranking_weight, s.attribute_weight)
    )
    calls = {"n": 0}

    def loss_fn(model, idx):
        epoch = start_epoch + calls["n"] // batches_per_epoch
        calls["n"] += 1
        if uses_negatives and miner.due(epoch):
            _refresh(model, miner, features, epoch)
        idx = idx.to(device)
        wrapped = is_wrapped(model)

        def encode(module):
            query = module(images[ref[idx]], texts[idx], token_rows(ref[idx]))
            target = module.embed_gallery(images[tgt[idx]], token_rows(tgt[idx]))
            if not uses_negatives:
                return query, target, None, None
            neg = _sample_negatives(miner, idx, s.n_negatives, wrapped).to(device)  # [b, K]
            flat = neg.flatten()
            return query, target, neg, module.embed_gallery(images[flat], token_rows(flat))

        # every embedding of the step in one DDP forward pass (cirlib.distributed)
        query, target, neg, negative = call_in_forward(model, encode)
        head = unwrap(model)
        jq, jt = head.joint_query(query), head.joint_gallery(target)
        if wrapped:  # fit(distributed=True): the global batch on every rank
            jq, jt = gather_with_grad(jq), gather_with_grad(jt)
        loss = batch_classification_loss(jq, jt, s.scale)
        if not uses_negatives:
            return loss
        b, k = neg.shape
        jn = head.joint_gallery(negative).view(b, k, -1)
        if wrapped:
            jn = gather_with_grad(jn)
        pos = (jq * jt).sum(-1)
        negs = torch.einsum("be,bke->bk", jq, jn)
        if s.pairwise_weight:
            loss = loss + s.pairwise_weight * pairwise_preference_loss(pos, negs, s.temperature)
        if s.kl_weight:
            relevance = torch.einsum("bd,bkd->bk", frozen[tgt[idx]], frozen[neg])
            if wrapped:
                relevance = gather(relevance)
            p = target_relative_distribution(relevance, s.relevance_temperature)
            loss = loss + s.kl_weight * target_distribution_kl_loss(pos, negs, p, s.temperature)
        if s.ranking_weight:
            loss = loss + s.ranking_weight * margin_ranking_loss(pos, negs, s.margin)
        if s.attribute_weight and query.attributes.numel():
            q_attr, t_attr = query.attributes, target.attributes
            neg_attr = negative.attributes.view(b, k, *negative.attributes.shape[1:])
            g = gates[idx] if gates is not None else None
            if wrapped:  # the loss is normalised by the open gates of the whole batch
                q_attr, t_attr, neg_attr = map(gather_with_grad, (q_attr, t_attr, neg_attr))
                g = gather(g) if g is not None else None
            loss = loss + s.attribute_weight * attribute_margin_loss(
                q_attr, t_attr, neg_attr, s.attribute_margin, g
            )
        return loss

    return loss_fn


Settings = DQESettings


def check_tokens(features) -> None:
    if features.image_tokens is None:
        raise ValueError(
            "DQE-CIR needs image tokens: load the features with cached_features(..., tokens=True)"
        )


def build(features, settings: DQESettings) -> AttributeWeightedCombiner:
    """:func:`build_model`, after checking the features carry image tokens."""
    check_tokens(features)
    return build_model(features, settings)


def loss(features, settings: DQESettings, run: TrainingRun):
    """The spec's loss: :func:`dqe_loss` with the run's miner (the run option ``miner``, to
    inspect its pools afterwards, else :func:`build_miner` on the training split) and the
    split's attribute gates."""
    miner = run.options.get("miner")
    if miner is None:
        miner = build_miner(features, run.split, settings, run.seed)
    gates = attribute_gates(run.split, settings.attributes) if settings.attributes else None
    return dqe_loss(
        features,
        miner,
        settings,
        gates=gates,
        batches_per_epoch=run.batches_per_epoch,
        start_epoch=run.start_epoch,
        device=run.device,
    )


def unused_attribute_head(model: AttributeWeightedCombiner, settings: DQESettings) -> list:
    """With ``attributes=()`` the attribute-weight head gets no gradient (frozen under DDP)."""
    return [] if settings.attributes else [model.weights]


def _unit_gallery(model, features) -> torch.Tensor:
    """The joint gallery rows, L2-normalised (:func:`dqe_gallery` returns the concatenation of
    unit parts; ``evaluate`` normalises either way, so rankings are the same)."""
    return F.normalize(dqe_gallery(model, features), dim=-1)


SPEC = MethodSpec(
    name="dqe",
    title="DQE-CIR",
    chapter="notebooks/07_dqe",
    settings=DQESettings,
    build=build,
    loss=loss,
    queries=dqe_queries,
    gallery=_unit_gallery,
    needs_tokens=True,
    # the miner never offers a listed valid target as a negative, the gates read each
    # query's edit type: both come from the training split
    needs_split=True,
    tagged_main_run=True,
    run_options=("miner",),
    frozen_for_ddp=unused_attribute_head,
)

# The chapter's name for the trainer (:func:`cirlib.train.train_method` of this spec):
# ``train_dqe(features, cfg, seed=..., split=..., settings=..., miner=..., **overrides)``.
train_dqe = SPEC.fit
