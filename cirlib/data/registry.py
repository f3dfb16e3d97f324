"""The splits a run profile trains and evaluates on.

``load_splits(cfg)`` returns ``{"train", "val", "test"}`` splits for the profile's dataset:

* ``toy`` — the generated world (every split has targets and valid-target lists);
* ``cirr`` — the real CIRR under ``$CIRLIB_DATA_DIR/cirr`` (annotations + NLVR2 images in the
  CLIP4Cir layout). CIRR's test1 targets are private, so ``"test"`` is the val split, as in
  every CIRR paper's ablations; test-server files are written from test1 separately.

Chapters call this instead of naming a dataset, so the same chapter runs on either.
"""

from __future__ import annotations

from cirlib.data.cirr import load_cirr
from cirlib.data.records import CIRSplit, DatasetError
from cirlib.data.toy import load_toy, prepare_toyworld
from cirlib.paths import subdir

DATASETS = ("toy", "cirr")


def load_splits(cfg) -> dict[str, CIRSplit]:
    if cfg.dataset == "toy":
        world = prepare_toyworld(cfg)
        return {s: load_toy(world, s) for s in ("train", "val", "test")}
    if cfg.dataset == "cirr":
        root = subdir("cirr")
        if not (root / "captions").is_dir():
            raise DatasetError(
                f"CIRR is not prepared under {root}: put the annotation folders (captions/, "
                "image_splits/) and the NLVR2 image folders there, as described in book/setup.md "
                '("Real datasets"), or run the toy profile'
            )
        val = load_cirr(root, "val", check_images=True)
        return {"train": load_cirr(root, "train", check_images=True), "val": val, "test": val}
    raise DatasetError(
        f"profile dataset {cfg.dataset!r} has no split loader yet; known: {DATASETS}. FashionIQ "
        "is evaluated per category (cirlib.data.fashioniq.load_fashioniq)"
    )
