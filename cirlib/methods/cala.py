"""CaLa as a recipe on cached features: the Combiner's query–target matching plus two
training-only branches on token features (text-bridged image alignment, complementary text
reasoning).

Inference is the Combiner's (:func:`cala_queries` runs ``model.combiner`` and nothing else).
The branches reach the inference model through the tensors they compare with: TBIA's
pseudo-target is scored against the composed query (as in CaLa's BLIP-2 variant), CTR's fused
image pair against the Combiner's text projection (the trainable text representation of this
frozen-encoder set-up; CaLa itself fine-tunes the text encoder).

Introduced in chapter "CaLa: complementary association learning".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cirlib.distributed import call_in_forward, gather_with_grad, is_wrapped
from cirlib.losses.cala_losses import additive_cala_loss, convex_cala_loss, cosine_logits
from cirlib.methods.combiner import combiner_queries
from cirlib.methods.spec import MethodSpec
from cirlib.models.cala import CaLa
from cirlib.train import TrainingRun

QTM_SCALE = 100.0  # CaLa's main term, as CLIP4Cir (Jiang et al., 2024, released code)
AUX_SCALE = 10.0  # CaLa's auxiliary terms (released code)
BRANCHES = ("tbia", "ctr")
COMBINATIONS = ("additive", "convex")
# Paper form: alpha, beta are not in our sources (Jiang et al., 2024); 0.5 each is a round middle
# value, not tuned. Code form: the README's --tac-weight / --hca-weight.
ALPHA, BETA = 0.5, 0.5
TAC_WEIGHT, HCA_WEIGHT = 0.45, 0.1


def _check_options(branches: Sequence[str], combination: str) -> tuple[str, ...]:
    unknown = sorted(set(branches) - set(BRANCHES))
    if unknown:
        raise ValueError(f"unknown CaLa branch(es) {unknown}; choose from {BRANCHES}")
    if combination not in COMBINATIONS:
        raise ValueError(f"unknown combination {combination!r}; choose from {COMBINATIONS}")
    return tuple(b for b in BRANCHES if b in branches)


def build_cala(features, **options) -> CaLa:
    """A :class:`CaLa` head sized from a split's features (global and token widths)."""
    if features.image_tokens is None or features.text_tokens is None:
        raise ValueError(
            "CaLa needs token features: compute them with cached_features(..., tokens=True)"
        )
    return CaLa(
        features.images.shape[1],
        features.image_tokens.shape[-1],
        features.text_tokens.shape[-1],
        **options,
    )


def cala_queries(model: CaLa, features, batch_size: int = 4096) -> torch.Tensor:
    """Normalised query embeddings ``[Q, D]``: the Combiner's, the branches are never run."""
    return combiner_queries(model.combiner, features, batch_size=batch_size)


def cala_embeddings(model: CaLa, batch: dict, branches: Sequence[str] = BRANCHES) -> dict:
    """The per-triplet vectors of one batch that :func:`cala_logits` compares, ``[B, ·]`` each.

    ``query`` (composed, unit) and ``target`` (the batch's unit targets) for QTM; for TBIA
    ``pseudo`` (the hinge's pseudo-target); for CTR ``text`` (the complementary text side) and
    ``pair`` (the fused reference–target pair). A branch not asked for gives ``None``. Every row
    depends on its own triplet only, so a rank can compute its rows and gather them
    (:func:`cala_loss` under DDP).
    """
    out = {"query": model(batch["reference"], batch["text"]), "target": batch["target"]}
    out["pseudo"] = out["text"] = out["pair"] = None
    if "tbia" in branches:
        out["pseudo"] = model.hinge(
            batch["reference_tokens"], batch["text_tokens"], batch["text_mask"],
            batch["target_tokens"],
        )  # fmt: skip
    if "ctr" in branches:
        out["pair"] = model.compositor(batch["reference_tokens"], batch["target_tokens"])
        out["text"] = model.complementary_text(batch["text"])
    return out


def logits_of(embeddings: dict) -> dict:
    """The ``[B, B]`` logit matrices from :func:`cala_embeddings` (diagonal = matching pairs):
    ``qtm`` (query × target), ``tbia`` (pseudo-target × query), ``ctr`` (text × pair), ``None``
    for a branch that was not computed."""
    q = embeddings["query"]
    qtm = QTM_SCALE * q.float() @ embeddings["target"].float().T
    out = {"qtm": qtm, "tbia": None, "ctr": None}
    if embeddings["pseudo"] is not None:
        out["tbia"] = cosine_logits(embeddings["pseudo"], q, AUX_SCALE)
    if embeddings["pair"] is not None:
        out["ctr"] = cosine_logits(embeddings["text"], embeddings["pair"], AUX_SCALE)
    return out


def cala_logits(model: CaLa, batch: dict, branches: Sequence[str] = BRANCHES) -> dict:
    """The ``[B, B]`` logit matrices of one batch (diagonal = matching pairs).

    ``batch`` holds ``reference`` / ``text`` ``[B, D]`` global features, ``target`` ``[B, D]``
    L2-normalised, and for the branches ``reference_tokens`` / ``target_tokens`` ``[B, N, W_I]``,
    ``text_tokens`` ``[B, L, W_T]`` and ``text_mask`` ``[B, L]``. Returns ``qtm`` and, when
    asked for, ``tbia`` and ``ctr`` (``None`` otherwise): :func:`logits_of` of
    :func:`cala_embeddings`.
    """
    return logits_of(cala_embeddings(model, batch, branches))


def cala_loss(
    features,
    *,
    branches: Sequence[str] = BRANCHES,
    combination: str = "additive",
    alpha: float = ALPHA,
    beta: float = BETA,
    tac_weight: float = TAC_WEIGHT,
    hca_weight: float = HCA_WEIGHT,
    device="cpu",
):
    """``loss_fn(model, idx)`` for :func:`cirlib.train.fit`.

    ``branches`` picks TBIA and/or CTR (a branch left out is not computed and its weight counts
    as 0, so ``branches=()`` is exactly the Combiner's loss); ``combination`` is ``"additive"``
    (paper, weights ``alpha``, ``beta``) or ``"convex"`` (released code, weights
    ``tac_weight``, ``hca_weight``). Features move to ``device`` once; token features stay
    float16 there and are cast per batch.

    Under ``fit(distributed=True)`` (``model`` wrapped in DDP) each rank computes the vectors
    of its rows (:func:`cala_embeddings`) and gathers all ranks' before any logit is formed, so
    all three ``[B, B]`` matrices, hence both branch losses and the convex mixture, are those of
    the global batch: every rank computes the one-process loss of the whole batch.
    """
    branches = _check_options(branches, combination)
    ref_idx, tgt_idx = features.reference_index.to(device), features.target_index.to(device)
    ref = features.images[features.reference_index].to(device)
    tgt = F.normalize(features.images[features.target_index], dim=-1).to(device)
    texts = features.texts.to(device)
    if branches:
        if features.image_tokens is None:
            raise ValueError("CaLa's branches need cached_features(..., tokens=True)")
        img_tok = features.image_tokens.to(device)
        # positions past the longest text are padding in every row: masked anyway, so dropping
        # them changes no number and saves the hinge most of its work (toy texts: 12 of 32)
        length = int(features.text_mask.any(dim=0).nonzero().max()) + 1
        txt_tok = features.text_tokens[:, :length].to(device)
        txt_mask = features.text_mask[:, :length].to(device)
    tbia_on, ctr_on = "tbia" in branches, "ctr" in branches

    def loss_fn(model, idx):
        idx = idx.to(device)
        batch = {"reference": ref[idx], "text": texts[idx], "target": tgt[idx]}
        if branches:
            batch["reference_tokens"] = img_tok[ref_idx[idx]].float()
            batch["target_tokens"] = img_tok[tgt_idx[idx]].float()
            batch["text_tokens"] = txt_tok[idx].float()
            batch["text_mask"] = txt_mask[idx]
        # one DDP forward pass for the Combiner and both branches (cirlib.distributed)
        e = call_in_forward(model, cala_embeddings, batch, branches)
        if is_wrapped(model):  # fit(distributed=True): the global batch on every rank
            e = {k: None if v is None else gather_with_grad(v) for k, v in e.items()}
        s = logits_of(e)
        if combination == "additive":
            return additive_cala_loss(
                s["qtm"], s["tbia"], s["ctr"],
                alpha=alpha if tbia_on else 0.0, beta=beta if ctr_on else 0.0,
            )  # fmt: skip
        return convex_cala_loss(
            s["qtm"], s["tbia"], s["ctr"],
            tac_weight=tac_weight if ctr_on else 0.0, hca_weight=hca_weight if tbia_on else 0.0,
        )  # fmt: skip

    return loss_fn


# The model's sizes (:class:`~cirlib.models.cala.CaLa`): the checkpoint records those that
# differ from these defaults, as it always has.
MODEL_DEFAULTS = {
    "combiner_dropout": 0.5,
    "hinge_dropout": 0.1,
    "compositor_layers": 4,
    "branch_dim": None,
}
# CaLa's chapter shrinks the branches on the toy world (width 64, 2 compositor layers) and uses
# the model's own sizes in the paper profile.
TOY_BRANCHES = {"branch_dim": 64, "compositor_layers": 2}


@dataclass(frozen=True)
class Settings:
    """CaLa's settings: which branches train, how the terms combine (see :func:`cala_loss`),
    and the model's sizes (:class:`~cirlib.models.cala.CaLa`)."""

    branches: tuple[str, ...] = BRANCHES
    combination: str = "additive"
    alpha: float = ALPHA
    beta: float = BETA
    tac_weight: float = TAC_WEIGHT
    hca_weight: float = HCA_WEIGHT
    combiner_dropout: float = MODEL_DEFAULTS["combiner_dropout"]
    hinge_dropout: float = MODEL_DEFAULTS["hinge_dropout"]
    compositor_layers: int = MODEL_DEFAULTS["compositor_layers"]
    branch_dim: int | None = MODEL_DEFAULTS["branch_dim"]

    def __post_init__(self):
        object.__setattr__(self, "branches", _check_options(self.branches, self.combination))


def _model_options(settings: Settings) -> dict:
    return {k: getattr(settings, k) for k in MODEL_DEFAULTS}


def fingerprint(settings: Settings) -> dict:
    """The checkpoint record: branches, combination, that combination's two weights, the
    scales, and the model sizes that differ from the model's defaults."""
    weights = (
        {"alpha": settings.alpha, "beta": settings.beta}
        if settings.combination == "additive"
        else {"tac_weight": settings.tac_weight, "hca_weight": settings.hca_weight}
    )
    sizes = {k: v for k, v in _model_options(settings).items() if v != MODEL_DEFAULTS[k]}
    return {
        "method": "cala",
        "branches": list(settings.branches),
        "combination": settings.combination,
        **weights,
        "qtm_scale": QTM_SCALE,
        "aux_scale": AUX_SCALE,
        **sizes,
    }


def build(features, settings: Settings) -> CaLa:
    """:func:`build_cala` with the settings' sizes."""
    return build_cala(features, **_model_options(settings))


def idle_branches(model: CaLa, settings: Settings) -> list:
    """The modules of a branch that is off or weighted 0 (no gradient reaches them; under DDP
    they are frozen, since DDP needs a gradient for every parameter it tracks)."""
    tbia_weight, ctr_weight = (
        (settings.alpha, settings.beta)
        if settings.combination == "additive"
        else (settings.hca_weight, settings.tac_weight)
    )
    idle = []
    if "tbia" not in settings.branches or tbia_weight == 0:
        idle.append(model.hinge)
    if "ctr" not in settings.branches or ctr_weight == 0:
        idle += [model.compositor, model.text_head]
    return idle


def loss(features, settings: Settings, run: TrainingRun):
    """The spec's loss: :func:`cala_loss` with the settings' branches and weights."""
    return cala_loss(
        features,
        branches=settings.branches,
        combination=settings.combination,
        alpha=settings.alpha,
        beta=settings.beta,
        tac_weight=settings.tac_weight,
        hca_weight=settings.hca_weight,
        device=run.device,
    )


def chapter_options(cfg) -> dict:
    """The chapter's toy-world branch sizes; the model's own sizes in the paper profile."""
    return {} if cfg.name == "paper" else dict(TOY_BRANCHES)


SPEC = MethodSpec(
    name="cala",
    title="CaLa",
    chapter="notebooks/05_cala",
    settings=Settings,
    build=build,
    loss=loss,
    queries=cala_queries,
    needs_tokens=True,
    chapter_options=chapter_options,
    fingerprint=fingerprint,
    frozen_for_ddp=idle_branches,
)

# The chapter's name for the trainer (:func:`cirlib.train.train_method` of this spec). One Adam
# learning rate for every module (the released code gives the branches twice the encoder's).
train_cala = SPEC.fit


@torch.no_grad()
def pair_and_text_embeddings(
    model: CaLa, features, batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """CTR's two sides for every triplet of a split, L2-normalised: the fused (reference,
    target) pairs ``[Q, d]`` and the texts ``[Q, d]`` (eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    ref_tok = features.image_tokens[features.reference_index]
    tgt_tok = features.image_tokens[features.target_index]
    pairs, texts = [], []
    for s in range(0, len(ref_tok), batch_size):
        r = ref_tok[s : s + batch_size].to(device).float()
        t = tgt_tok[s : s + batch_size].to(device).float()
        pairs.append(model.compositor(r, t).float().cpu())
        texts.append(model.complementary_text(features.texts[s : s + batch_size].to(device)).cpu())
    return F.normalize(torch.cat(pairs), dim=-1), F.normalize(torch.cat(texts).float(), dim=-1)


def pair_to_text_ranks(
    pair_embeddings: torch.Tensor, text_embeddings: torch.Tensor, captions: Sequence[str]
) -> torch.Tensor:
    """0-based rank of the right text for each (reference, target) pair among all texts.

    Pair ``i`` is answered by every text whose caption string equals caption ``i`` (copies of
    one caption are indistinguishable), so its rank is the number of texts with *another*
    caption that score above the best right one. ``[Q, d]`` inputs, L2-normalised; ``[Q]`` out.

    Introduced in chapter "CaLa: complementary association learning".
    """
    ids = {c: k for k, c in enumerate(dict.fromkeys(captions))}
    cap = torch.tensor([ids[c] for c in captions])
    scores = pair_embeddings.float() @ text_embeddings.float().T
    same = cap[:, None] == cap[None, :]
    best_right = scores.masked_fill(~same, float("-inf")).amax(dim=1, keepdim=True)
    return ((scores > best_right) & ~same).sum(dim=1)
