"""The splits a run profile trains and evaluates on.

``load_splits(cfg)`` returns ``{"train", "val", "test"}`` splits for the profile's dataset:

* ``toy`` — the generated world (every split has targets and valid-target lists);
* ``cirr`` — the real CIRR under ``$CIRLIB_DATA_DIR/cirr`` (annotations + NLVR2 images in the
  CLIP4Cir layout). CIRR's test1 targets are private, so ``"test"`` is the val split, as in
  every CIRR paper's ablations; test-server files are written from test1 separately.
* ``fashioniq`` — under ``$CIRLIB_DATA_DIR/fashioniq``: one training split of the three
  categories and a validation split (also ``"test"``) where each category keeps its own gallery
  and CLIP4Cir's protocol (reference kept in the ranking), see
  :mod:`cirlib.data.fashioniq_splits`.
* ``fashion200k`` and ``shoes`` — under ``$CIRLIB_DATA_DIR/<dataset>``. Neither has a
  validation split: papers select and report on the test split (MGUR's "best epoch on the
  evaluated split"), so ``"val"`` and ``"test"`` are the same split, which chapters must say.
  Images without a file are skipped with one warning (``missing_images="skip"``).
* ``circo`` — under ``$CIRLIB_DATA_DIR/circo``, zero-shot only (``zero_shot=True``, chapter
  "Zero-shot CIR"): CIRCO has no training triplets. ``"val"`` and ``"test"`` are its
  validation split (every valid target listed; its test targets are private, scored by a
  server from :mod:`cirlib.eval.circo_submission`), ``"train"`` the unlabeled gallery images no
  query names (:mod:`cirlib.data.circo_training_images`: a transductive choice). Any other
  caller is refused with an error that names the zero-shot chapter.

Each real dataset is installed by ``python data_scripts/prepare_<dataset>.py <downloaded folder>``.

Chapters call this instead of naming a dataset, so the same chapter runs on either.
"""

from __future__ import annotations

from cirlib.data.circo import load_circo
from cirlib.data.circo_training_images import circo_training_split
from cirlib.data.cirr import load_cirr
from cirlib.data.fashion200k import load_fashion200k
from cirlib.data.fashioniq_splits import load_fashioniq_splits
from cirlib.data.records import CIRSplit, DatasetError
from cirlib.data.shoes import load_shoes
from cirlib.data.toy import load_toy, prepare_toyworld
from cirlib.paths import subdir

DATASETS = ("toy", "cirr", "fashioniq", "fashion200k", "shoes", "circo")
# the only chapter that runs without training triplets (CIRCO)
ZERO_SHOT_CHAPTER = "chapter 8, notebooks/08_zero_shot.ipynb (zero-shot CIR)"


def _not_prepared(name: str, root, what: str) -> DatasetError:
    return DatasetError(
        f"{name} is not prepared under {root}: run `python data_scripts/prepare_"
        f"{name.lower()}.py <folder with {what}>`, as described in book/setup.md "
        '("Real datasets"), or run the toy profile'
    )


def _load_circo_splits(zero_shot: bool) -> dict[str, CIRSplit]:
    if not zero_shot:
        raise DatasetError(
            "CIRCO has no training triplets (a validation and a test split of queries, no "
            "training split), so only the zero-shot chapter runs on it: "
            f"{ZERO_SHOT_CHAPTER}. Run this chapter with DATASET set to 'cirr' or "
            "'fashioniq' (or leave it empty), or call load_splits(cfg, zero_shot=True) for a "
            "method that trains on images alone"
        )
    root = subdir("circo")
    if not (root / "annotations" / "val.json").is_file():
        raise DatasetError(
            f"CIRCO is not prepared under {root}: run `python data_scripts/prepare_data.py "
            "circo <folder with annotations/ and COCO2017_unlabeled/>`, as described in "
            'book/setup.md ("Real datasets")'
        )
    val = load_circo(root, "val", check_images=True)
    train = circo_training_split(val, load_circo(root, "test"))
    return {"train": train, "val": val, "test": val}


def load_splits(cfg, *, zero_shot: bool = False) -> dict[str, CIRSplit]:
    """The profile's ``{"train", "val", "test"}`` splits (module docstring).

    ``zero_shot=True`` declares a caller that trains on images alone; it is what CIRCO, which
    has no training triplets, requires (any other caller gets a :class:`DatasetError` naming
    the zero-shot chapter). On the other datasets it changes nothing.
    """
    if cfg.dataset == "circo":
        return _load_circo_splits(zero_shot)
    if cfg.dataset == "toy":
        world = prepare_toyworld(cfg)
        return {s: load_toy(world, s) for s in ("train", "val", "test")}
    if cfg.dataset == "cirr":
        root = subdir("cirr")
        if not (root / "captions").is_dir():
            raise _not_prepared("CIRR", root, "the CIRR annotations and the NLVR2 images")
        val = load_cirr(root, "val", check_images=True)
        return {"train": load_cirr(root, "train", check_images=True), "val": val, "test": val}
    if cfg.dataset == "fashioniq":
        root = subdir("fashioniq")
        if not (root / "captions").is_dir():
            raise _not_prepared("FashionIQ", root, "captions/, image_splits/ and images/")
        return load_fashioniq_splits(root, protocol="clip4cir")
    if cfg.dataset == "fashion200k":
        root = subdir("fashion200k")
        if not (root / "labels").is_dir():
            raise _not_prepared("Fashion200k", root, "labels/, test_queries.txt and women/")
        # The training queries are part of the dataset, not of a run: one fixed seed.
        test = load_fashion200k(root, "test", missing_images="skip")
        train = load_fashion200k(root, "train", missing_images="skip", seed=0)
        return {"train": train, "val": test, "test": test}
    if cfg.dataset == "shoes":
        root = subdir("shoes")
        if not (root / "relative_captions_shoes.json").is_file():
            raise _not_prepared("Shoes", root, "the Shoes annotation files and images")
        test = load_shoes(root, "test", missing_images="skip")
        return {
            "train": load_shoes(root, "train", missing_images="skip"),
            "val": test,
            "test": test,
        }
    raise DatasetError(f"profile dataset {cfg.dataset!r} has no split loader; known: {DATASETS}")
