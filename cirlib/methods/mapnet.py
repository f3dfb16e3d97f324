r"""MAPNet (Shi et al., ICCV 2025) as a recipe on cached features: schemas, optimal-transport
schema matching (MSI) and the relaxed proximity loss (RP).

MAPNet has no public code. What comes from a summary of the paper (as
transcribed from that summary, not checked against the paper): the MSI loss (entropic OT
with cost :math:`-\log C`, uniform marginals, row-argmax assignment, a distance to stop-gradient
target schemas) and the RP loss formula; by the README: :math:`\tau = 0.1`, :math:`\gamma = 0.5`,
:math:`\sigma = 0.6`, 32 queries, learning rates and batch sizes. Everything else here is the
book's reconstruction, each choice named where it is made:

* **Model.** The CLIP4Cir Combiner on the frozen global features (the book's baseline) plus a
  small Q-Former (:class:`cirlib.models.schemas.SchemaEncoder`) shared by both sides: query
  schemas :math:`F^q` read [reference tokens; text tokens], target schemas :math:`F^t` read the
  target tokens. Sharing the module (and its learned queries) follows BLIP-2/SPRC, where one
  Q-Former embeds both sides.
* **Retrieval embedding.** Query :math:`e_q = [\,q_{comb};\ \bar f^q\,]/\sqrt2`, gallery
  :math:`e_t = [\,\hat x_t;\ \bar f^t\,]/\sqrt2`, with :math:`\bar f =
  \mathrm{normalize}(\tfrac{1}{N_s}\sum_k \hat F_k)` the mean of the normalised schemas. So the
  score is the average of the Combiner's cosine and a schema-level cosine,
  :math:`e_q^\top e_t = \tfrac12(q_{comb}^\top \hat x_t + \bar f^{q\top} \bar f^t)`, one vector
  per gallery image (the gallery side needs the trained schema module:
  :func:`mapnet_gallery`).
* **Objective.** :math:`\mathcal{L} = \mathcal{L}_{BBC}(e_q, e_t) + w_{MSI}
  \mathcal{L}_{MSI}(F^q, F^t) + w_{RP}\mathcal{L}_{RP}(e_q, e_t; W)`, with
  :math:`W` from the frozen target features. The weights are unpublished; both default to 1.
  The README's squared-MMD alignment loss is left out: no source gives its formula.

Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cirlib.distributed import call_in_forward, gather, gather_with_grad, is_wrapped
from cirlib.losses.batch_classification import batch_classification_loss
from cirlib.losses.multi_schema_interaction import multi_schema_interaction_loss
from cirlib.losses.relaxed_proximity import negative_confidence, relaxed_proximity_loss
from cirlib.methods.spec import MethodSpec
from cirlib.models.combiner import Combiner
from cirlib.models.schemas import SchemaEncoder
from cirlib.train import TrainingRun

LOGIT_SCALE = 100.0  # the Combiner's fixed scale (Baldrati et al., 2023); MAPNet's is unpublished

# The book's toy-world defaults. 8 schemas: a toy scene holds 2-5 objects on 9 cells and an
# edit names one object, so 8 slots can give every object (and the edit) its own schema while
# keeping the 8x8 transport problems and the Q-Former cheap on a CPU. Width 64 and one layer
# keep a training step within a small factor of the Combiner's (the chapter measures it).
TOY_SETTINGS = dict(
    n_schemas=8,
    schema_width=64,
    schema_dim=64,
    schema_layers=1,
    schema_heads=4,
    tau=0.1,
    gamma=0.5,
    sigma=0.6,
    msi_weight=1.0,
    rp_weight=1.0,
)

# MAPNet README settings (Shi et al., 2025, repository README). UNVERIFIED: the repository has no code, so none of
# these is confirmed by a training script. The Q-Former width, depth and schema width are the
# book's choice (SPRC's retrieval width is 256), not the README's.
PAPER_SETTINGS = dict(
    n_schemas=32,
    tau=0.1,
    gamma=0.5,
    sigma=0.6,
    lr={"cirr": 1e-5, "fashioniq": 2e-5, "lasco": 1e-5},
    batch_size={"cirr": 32, "fashioniq": 32, "lasco": 16},
    epochs=50,
    schema_width=256,
    schema_dim=256,
    schema_layers=2,
    schema_heads=8,
)

MODEL_OPTIONS = (
    "n_schemas",
    "schema_width",
    "schema_dim",
    "schema_layers",
    "schema_heads",
)


def pooled_schemas(schemas: torch.Tensor) -> torch.Tensor:
    r"""One unit vector per sample: :math:`\bar f = \mathrm{normalize}(\frac1{N_s}\sum_k \hat F_k)`.

    Shapes: ``[B, N_s, D_s]`` → ``[B, D_s]``. Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
    """
    return F.normalize(F.normalize(schemas, dim=-1).mean(dim=1), dim=-1)


def schema_self_similarity(schemas: torch.Tensor) -> torch.Tensor:
    r"""Mean cosine between two different schemas of the same sample,
    :math:`\frac{1}{N_s(N_s-1)}\sum_{k\ne l}\cos(F_k, F_l)`: 1 when every schema is the same vector
    (the schemas have collapsed into one), near 0 when they point in unrelated directions.

    Shapes: ``[B, N_s, D_s]`` → ``[B]``. Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
    """
    f = F.normalize(schemas.float(), dim=-1)
    n = f.shape[1]
    gram = f @ f.transpose(1, 2)
    return (gram.sum(dim=(1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(-1)) / (n * (n - 1))


class MAPNet(nn.Module):
    r"""Combiner + shared schema encoder; retrieval embeddings on both sides (module docstring).

    Parameters
    ----------
    dim : width :math:`D` of the frozen global features.
    image_token_dim, text_token_dim : widths of the frozen token features.
    n_schemas, schema_width, schema_dim, schema_layers, schema_heads : the Q-Former's sizes.
    dropout : the Combiner's dropout (CLIP4Cir: 0.5).

    ``encode_query(ref_global [B, D], text_global [B, D], ref_tokens [B, T, W_I],
    text_tokens [B, L, W_T], text_mask [B, L])`` and ``encode_target(target_global [B, D],
    target_tokens [B, T, W_I])`` return ``(embedding [B, D + D_s], schemas [B, N_s, D_s])``,
    the embedding L2-normalised.

    Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
    """

    def __init__(
        self,
        dim: int,
        image_token_dim: int,
        text_token_dim: int,
        n_schemas: int = 8,
        schema_width: int = 64,
        schema_dim: int = 64,
        schema_layers: int = 1,
        schema_heads: int = 4,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.combiner = Combiner(dim, dropout=dropout)
        self.schemas = SchemaEncoder(
            image_token_dim,
            text_token_dim,
            n_schemas=n_schemas,
            width=schema_width,
            out_dim=schema_dim,
            layers=schema_layers,
            heads=schema_heads,
        )

    @staticmethod
    def _join(global_part: torch.Tensor, schemas: torch.Tensor) -> torch.Tensor:
        # both halves are unit vectors, so dividing by sqrt(2) keeps the embedding unit-norm
        return torch.cat([global_part, pooled_schemas(schemas)], dim=-1) / math.sqrt(2.0)

    def encode_query(self, ref_global, text_global, ref_tokens, text_tokens, text_mask):
        schemas = self.schemas(ref_tokens, text_tokens, text_mask)
        return self._join(self.combiner(ref_global, text_global), schemas), schemas

    def encode_target(self, target_global, target_tokens):
        schemas = self.schemas(target_tokens)
        return self._join(F.normalize(target_global, dim=-1), schemas), schemas


def _text_length(features) -> int:
    """Longest caption of the split in tokens: positions past it are padding everywhere, so
    cutting them changes nothing but the cost of attention."""
    return int(features.text_mask.sum(dim=1).max())


def _check_tokens(features) -> None:
    if features.image_tokens is None or features.text_tokens is None:
        raise ValueError(
            "MAPNet reads token features: build the split's features with "
            "cached_features(..., tokens=True)"
        )


def build_mapnet(features, **options) -> MAPNet:
    """A :class:`MAPNet` sized for ``features`` (global and token widths read from the data)."""
    _check_tokens(features)
    sizes = {k: options[k] for k in MODEL_OPTIONS if k in options}
    return MAPNet(
        features.images.shape[1],
        features.image_tokens.shape[-1],
        features.text_tokens.shape[-1],
        dropout=options.get("dropout", 0.5),
        **sizes,
    )


def mapnet_loss(
    features,
    *,
    tau: float = 0.1,
    gamma: float = 0.5,
    sigma: float = 0.6,
    msi_weight: float = 1.0,
    rp_weight: float = 1.0,
    scale: float = LOGIT_SCALE,
    device="cpu",
    record: dict | None = None,
):
    r"""``loss_fn(model, idx)`` for :func:`cirlib.train.fit`:

    .. math::

        \mathcal{L} = \mathcal{L}_{BBC}(e_q, e_t)
            + w_{MSI}\,\mathcal{L}_{MSI}(F^q, F^t; \tau)
            + w_{RP}\,\mathcal{L}_{RP}(e_q, e_t; W_\sigma, \gamma)

    :math:`W_\sigma` comes from the frozen, normalised global target features (a fixed label of
    how alike two targets are, untouched by training). A weight of 0 skips its term (and its
    Sinkhorn solve). ``record``, when given, collects each term's per-batch value under
    ``"bbc"``, ``"msi"``, ``"rp"`` (for plots).

    Under ``fit(distributed=True)`` (``model`` wrapped in DDP) each rank encodes its rows and
    gathers all ranks' embeddings, schemas and frozen target features: the in-batch negatives,
    the kernel :math:`W_\sigma` over all :math:`B` targets and the Sinkhorn solve (whose stopping
    test is over the whole batch) are then the one-process ones, and every rank computes the
    one-process loss of the whole batch.

    Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
    """
    _check_tokens(features)
    length = _text_length(features)
    images = features.images.to(device)
    texts = features.texts.to(device)
    image_tokens = features.image_tokens.to(device)  # float16; cast per batch (half the memory)
    text_tokens = features.text_tokens[:, :length].to(device)
    text_mask = features.text_mask[:, :length].to(device)
    ref_index = features.reference_index.to(device)
    tgt_index = features.target_index.to(device)

    def encode(module, r, t, idx):
        e_q, f_q = module.encode_query(
            images[r], texts[idx], image_tokens[r].float(), text_tokens[idx].float(), text_mask[idx]
        )
        e_t, f_t = module.encode_target(images[t], image_tokens[t].float())
        return e_q, f_q, e_t, f_t

    def loss_fn(model, idx):
        idx = idx.to(device)
        r, t = ref_index[idx], tgt_index[idx]
        # both sides in one DDP forward pass (cirlib.distributed.call_in_forward)
        e_q, f_q, e_t, f_t = call_in_forward(model, encode, r, t, idx)
        target_features = images[t]
        if is_wrapped(model):  # fit(distributed=True): the global batch on every rank
            e_q, f_q, e_t = (gather_with_grad(x) for x in (e_q, f_q, e_t))
            # MSI reads the target schemas through a stop-gradient, the kernel is frozen
            f_t, target_features = gather(f_t), gather(target_features)
        loss = batch_classification_loss(e_q, e_t, scale)
        parts = {"bbc": loss}
        if msi_weight:
            parts["msi"] = multi_schema_interaction_loss(f_q, f_t, tau=tau)
            loss = loss + msi_weight * parts["msi"]
        if rp_weight:
            weights = negative_confidence(target_features, sigma)
            parts["rp"] = relaxed_proximity_loss(e_q, e_t, weights, gamma)
            loss = loss + rp_weight * parts["rp"]
        if record is not None:
            for name, value in parts.items():
                record.setdefault(name, []).append(value.detach().item())
        return loss

    return loss_fn


@torch.no_grad()
def mapnet_queries(model: MAPNet, features, batch_size: int = 1024) -> torch.Tensor:
    """Normalised query embeddings ``[Q, D + D_s]`` for every triplet of a split (eval mode)."""
    _check_tokens(features)
    model.eval()
    device = next(model.parameters()).device
    length = _text_length(features)
    out = []
    for s in range(0, len(features.texts), batch_size):
        rows = slice(s, s + batch_size)
        r = features.reference_index[rows]
        e_q, _ = model.encode_query(
            features.images[r].to(device),
            features.texts[rows].to(device),
            features.image_tokens[r].float().to(device),
            features.text_tokens[rows, :length].float().to(device),
            features.text_mask[rows, :length].to(device),
        )
        out.append(e_q.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def mapnet_gallery(model: MAPNet, features, batch_size: int = 1024) -> torch.Tensor:
    """Gallery embeddings ``[N, D + D_s]`` (rows follow the gallery), for
    ``evaluate(..., gallery=mapnet_gallery(model, features))``."""
    _check_tokens(features)
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(features.images), batch_size):
        e_t, _ = model.encode_target(
            features.images[s : s + batch_size].to(device),
            features.image_tokens[s : s + batch_size].float().to(device),
        )
        out.append(e_t.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def mapnet_schemas(model: MAPNet, features, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Query and target schemas of the triplets ``rows``, with the target side's last-layer
    cross-attention over the image tokens (for the chapter's heatmaps).

    Returns ``{"query": [n, N_s, D_s], "target": [n, N_s, D_s],
    "target_attention": [n, N_s, T]}``.
    """
    model.eval()
    device = next(model.parameters()).device
    length = _text_length(features)
    r, t = features.reference_index[rows], features.target_index[rows]
    f_q = model.schemas(
        features.image_tokens[r].float().to(device),
        features.text_tokens[rows, :length].float().to(device),
        features.text_mask[rows, :length].to(device),
    )
    f_t, attention = model.schemas(
        features.image_tokens[t].float().to(device), return_attention=True
    )
    return {"query": f_q.cpu(), "target": f_t.cpu(), "target_attention": attention.cpu()}


def in_batch_false_negatives(split, features, idx: torch.Tensor) -> torch.Tensor:
    """``[B, B]`` bool: True where the target of triplet ``j`` is a valid target of query ``i``
    (``j != i``), i.e. an in-batch "negative" that in fact satisfies the query.

    Needs ``Triplet.valid_targets`` (the toy world lists every valid target); raises otherwise.
    Introduced in chapter "MAPNet: multi-schema interaction and relaxed proximity".
    """
    triplets = [split.triplets[i] for i in idx.tolist()]
    if any(t.valid_targets is None for t in triplets):
        raise ValueError(
            f"split {split.name!r} does not list valid targets (only the toy world does), so "
            "in-batch false negatives cannot be counted"
        )
    valid = [{split.index_of(n) for n in t.valid_targets} for t in triplets]
    targets = features.target_index[idx].tolist()
    b = len(triplets)
    mask = torch.tensor([[targets[j] in valid[i] for j in range(b)] for i in range(b)])
    mask.fill_diagonal_(False)
    return mask


@dataclass(frozen=True)
class Settings:
    """MAPNet's settings: the Q-Former's sizes, MSI's temperature ``tau``, RP's ``gamma`` and
    ``sigma``, the two terms' weights (defaults: :data:`TOY_SETTINGS`) and the Combiner's
    dropout."""

    n_schemas: int = TOY_SETTINGS["n_schemas"]
    schema_width: int = TOY_SETTINGS["schema_width"]
    schema_dim: int = TOY_SETTINGS["schema_dim"]
    schema_layers: int = TOY_SETTINGS["schema_layers"]
    schema_heads: int = TOY_SETTINGS["schema_heads"]
    tau: float = TOY_SETTINGS["tau"]
    gamma: float = TOY_SETTINGS["gamma"]
    sigma: float = TOY_SETTINGS["sigma"]
    msi_weight: float = TOY_SETTINGS["msi_weight"]
    rp_weight: float = TOY_SETTINGS["rp_weight"]
    dropout: float = 0.5


def fingerprint(settings: Settings) -> dict:
    """The checkpoint record: the scale and every :data:`TOY_SETTINGS` key, plus the dropout
    when it is not the Combiner's 0.5 (the record MAPNet's checkpoints have always had)."""
    record = {"method": "mapnet", "scale": LOGIT_SCALE}
    record.update({k: getattr(settings, k) for k in TOY_SETTINGS})
    if settings.dropout != 0.5:
        record["dropout"] = settings.dropout
    return record


def build(features, settings: Settings) -> MAPNet:
    """:func:`build_mapnet` with the settings' sizes and dropout."""
    return build_mapnet(features, **dataclasses.asdict(settings))


def loss(features, settings: Settings, run: TrainingRun):
    """The spec's loss: :func:`mapnet_loss`; the run option ``record`` collects each term."""
    return mapnet_loss(
        features,
        tau=settings.tau,
        gamma=settings.gamma,
        sigma=settings.sigma,
        msi_weight=settings.msi_weight,
        rp_weight=settings.rp_weight,
        device=run.device,
        record=run.options.get("record"),
    )


def chapter_options(cfg) -> dict:
    """Off the toy world the chapter uses the README's 32 schemas and the book's Q-Former
    sizes for them (:data:`PAPER_SETTINGS`); a CPU rehearsal of the paper profile
    (:mod:`cirlib.rehearsal`) keeps the toy sizes, as chapter 6 does."""
    if cfg.dataset == "toy" or getattr(cfg, "rehearsal", False):
        return {}
    return {k: PAPER_SETTINGS[k] for k in MODEL_OPTIONS}


def budget(cfg):
    """Off the toy world, MAPNet's README learning rate, batch size and epochs
    (:data:`PAPER_SETTINGS`); the profile's own budget on the toy world. A rehearsal takes only
    the README's learning rate: its batch and epochs are sizes, shrunk for a CPU."""
    if cfg.dataset == "toy":
        return cfg
    if getattr(cfg, "rehearsal", False):
        return dataclasses.replace(cfg, lr=PAPER_SETTINGS["lr"][cfg.dataset])
    return dataclasses.replace(
        cfg,
        lr=PAPER_SETTINGS["lr"][cfg.dataset],
        batch_size=PAPER_SETTINGS["batch_size"][cfg.dataset],
        epochs=PAPER_SETTINGS["epochs"],
    )


SPEC = MethodSpec(
    name="mapnet",
    title="MAPNet",
    chapter="notebooks/06_mapnet",
    settings=Settings,
    build=build,
    loss=loss,
    queries=mapnet_queries,
    gallery=mapnet_gallery,
    needs_tokens=True,
    run_options=("record",),
    chapter_options=chapter_options,
    budget=budget,
    fingerprint=fingerprint,
)

# The chapter's name for the trainer (:func:`cirlib.train.train_method` of this spec):
# ``train_mapnet(features, cfg, seed=..., epochs=..., record=..., **settings)``.
train_mapnet = SPEC.fit
