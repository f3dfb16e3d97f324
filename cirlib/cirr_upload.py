"""CIRR test1 upload files for a trained method, as chapters 3 and 8 write them.

CIRR's test1 targets are not released (Liu et al., 2021): test numbers come only from the
evaluation server, which takes two JSON files, the top 50 of the gallery without the reference
and the top 3 of the other ``img_set`` members. :func:`cirr_test1_submission` loads the installed
test1 split, encodes it through the same feature cache as the other splits, builds the method's
queries and writes both files (:func:`cirlib.eval.submission.cirr_submission_from_scores`) under
``$CIRLIB_DATA_DIR/submissions/``. For the toy world's CIRR export (the paper profile's
rehearsal) ``data_scripts/score_cirr_submission.py --world`` plays the server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from cirlib.data.cirr import load_cirr
from cirlib.data.features import SplitFeatures, cached_features
from cirlib.eval.submission import cirr_submission_from_scores
from cirlib.paths import subdir

SERVER = "http://cirr.cecs.anu.edu.au/"  # the dataset's Test-split_server.md


def cirr_test1_submission(
    cfg,
    method: str,
    make_queries: Callable[[SplitFeatures], torch.Tensor],
    model,
    preprocess,
    tokenizer,
    encoder: str,
    *,
    make_gallery: Callable[[SplitFeatures], torch.Tensor] | None = None,
    tokens: bool = False,
    seed: int | None = None,
) -> tuple[Path, Path] | None:
    """Write ``<method>-<profile>-<encoder>-s<seed>_recall.json`` and ``..._recall_subset.json``
    for the installed CIRR test1 split and return their paths; None (nothing written) when the
    profile's dataset is not CIRR.

    ``make_queries`` maps test1 features to ``[Q, D]`` normalised queries (the method's own);
    ``make_gallery`` replaces the frozen image features for methods with a gallery module.
    """
    if cfg.dataset != "cirr":
        return None
    test1 = load_cirr(subdir("cirr"), "test1", check_images=True)
    feats = cached_features(
        test1,
        model,
        preprocess,
        tokenizer,
        encoder=encoder,
        cache_dir=subdir("features"),
        tokens=tokens,
        batch_size=cfg.feature_batch,
        device=cfg.device,
    )
    with torch.no_grad():
        queries = make_queries(feats)
        gallery = make_gallery(feats) if make_gallery is not None else feats.images
    seed = cfg.seeds[0] if seed is None else seed
    stem = f"{method}-{cfg.name}-{encoder.replace(':', '-')}-s{seed}"
    return cirr_submission_from_scores(queries, gallery, test1, subdir("submissions"), stem)


def upload_note(paths: tuple[Path, Path] | None, rehearsal: bool = False) -> str:
    """What a chapter prints after :func:`cirr_test1_submission`: where the files are and how
    to upload them (or how a rehearsal scores them locally)."""
    if paths is None:
        return "Not CIRR: no test-server files (CIRR test1 is the only hidden-target split)."
    recall, subset = paths
    text = f"CIRR test1 upload files:\n  {recall}\n  {subset}\n"
    if rehearsal:
        return text + (
            "Rehearsal: the toy world's private test1 targets score them locally, "
            "`python data_scripts/score_cirr_submission.py --world <toy world> "
            f"{recall} {subset}` (data_scripts/rehearse_paper.py does it)."
        )
    return text + (
        f"Upload both at {SERVER} (an account is needed); the server returns R@1/5/10/50, "
        "Rs@1/2/3 and Avg for the test split."
    )


def method_submissions(methods, cfg, features, splits, model, preprocess, tokenizer, encoder):
    """:func:`cirr_test1_submission` for each method's first-seed run (the checkpoint its
    chapter trained, loaded through :func:`cirlib.harness.run_checkpoint`; trained when
    missing). ``{method name: (recall file, subset file)}``; empty when the dataset is not CIRR.
    Chapter 8 calls it with every method of the comparison."""
    from cirlib.harness import _spec, run_checkpoint

    if cfg.dataset != "cirr":
        return {}
    seed = cfg.seeds[0]
    out = {}
    for method in methods:
        spec = _spec(method)
        head = spec.train(
            features["train"],
            cfg,
            seed=seed,
            split=splits["train"],
            checkpoint=run_checkpoint(spec, cfg, seed),
        )
        out[spec.name] = cirr_test1_submission(
            cfg,
            spec.name,
            lambda f, head=head, spec=spec: spec.queries(head, f),
            model,
            preprocess,
            tokenizer,
            encoder,
            make_gallery=(lambda f, head=head, spec=spec: spec.gallery(head, f))
            if spec.gallery is not None
            else None,
            tokens=spec.needs_tokens,
            seed=seed,
        )
    return out
