"""CIRCO test-server files for the zero-shot methods, as chapter 8 writes them.

CIRCO's test targets are not released (Baldrati, Agnolucci, Bertini and Del Bimbo, 2023): test
numbers come only from the benchmark's server, which takes one JSON file holding each test
query's first 50 images (:mod:`cirlib.eval.circo_submission`). The test split ranks the same
gallery as the validation split, so :func:`circo_test_submission` reuses the validation split's
image features and encodes only the test captions, builds the method's queries and writes the
file under ``$CIRLIB_DATA_DIR/submissions/``. For the toy world's CIRCO export (the paper
profile's rehearsal), :func:`cirlib.circo_test_server.score_circo_submission` plays the server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from cirlib.data.circo import load_circo
from cirlib.data.features import SplitFeatures
from cirlib.data.records import CIRSplit, DatasetError
from cirlib.eval.circo_submission import circo_submission_from_scores
from cirlib.models import backbone
from cirlib.paths import subdir

__all__ = ["CIRCO_SERVER", "circo_test_features", "circo_test_submission", "circo_upload_note"]

CIRCO_SERVER = "https://circo.micc.unifi.it/"  # named in the benchmark's README


@torch.no_grad()
def circo_test_features(
    test: CIRSplit,
    val: CIRSplit,
    val_features: SplitFeatures,
    model,
    tokenizer,
    *,
    batch_size: int = 512,
    device: str = "cpu",
) -> SplitFeatures:
    """Features of CIRCO's test split: the validation split's image rows (one gallery) and the
    test captions encoded by ``model``; every target index is -1 (private)."""
    if test.gallery != val.gallery:
        raise DatasetError(
            f"{test.name} and {val.name} rank different galleries; install both from one CIRCO "
            "release with `python data_scripts/prepare_data.py circo <folder>`"
        )
    model.to(device).eval()
    captions = [t.caption for t in test.triplets]
    texts = [
        backbone.encode_texts(model, tokenizer(captions[i : i + batch_size]).to(device))
        .float()
        .cpu()
        for i in range(0, len(captions), batch_size)
    ]
    return SplitFeatures(
        images=val_features.images,
        texts=torch.cat(texts),
        reference_index=torch.tensor([test.index_of(t.reference) for t in test.triplets]),
        target_index=torch.full((len(test.triplets),), -1, dtype=torch.long),
    )


def circo_test_submission(
    cfg,
    method: str,
    make_queries: Callable[[SplitFeatures, CIRSplit], torch.Tensor],
    val: CIRSplit,
    val_features: SplitFeatures,
    model,
    tokenizer,
    encoder: str,
    *,
    seed: int | None = None,
) -> Path | None:
    """Write ``<method>-<profile>-<encoder>-s<seed>_circo_test.json`` for the installed CIRCO
    test split and return its path; None (nothing written) when the profile's dataset is not
    CIRCO.

    ``make_queries(features, split)`` maps the test split's features to ``[Q, D]`` normalised
    queries (the method's own); ``val``/``val_features`` are the validation split the chapter
    evaluated and its features, whose gallery the test split shares.
    """
    if cfg.dataset != "circo":
        return None
    test = load_circo(subdir("circo"), "test")
    feats = circo_test_features(
        test, val, val_features, model, tokenizer, batch_size=cfg.feature_batch, device=cfg.device
    )
    with torch.no_grad():
        queries = make_queries(feats, test)
    seed = cfg.seeds[0] if seed is None else seed
    stem = f"{method}-{cfg.name}-{encoder.replace(':', '-')}-s{seed}"
    path = subdir("submissions") / f"{stem}_circo_test.json"
    return circo_submission_from_scores(queries, feats.images, test, path)


def circo_upload_note(path: Path | None, rehearsal: bool = False) -> str:
    """What chapter 8 prints after :func:`circo_test_submission`: where the file is and how to
    upload it (or how a rehearsal scores it locally)."""
    if path is None:
        return "Not CIRCO: no CIRCO test-server file."
    text = f"CIRCO test file:\n  {path}\n"
    if rehearsal:
        return text + (
            "Rehearsal: the toy world's private CIRCO test targets score it locally "
            "(cirlib.circo_test_server; data_scripts/rehearse_paper.py does it)."
        )
    return text + f"Upload it at {CIRCO_SERVER}; the server returns mAP@5/10/25/50 (test split)."
