"""Check a downloaded CIR benchmark and install it where the loaders look for it.

    python data_scripts/prepare_data.py cirr ~/Downloads/cirr --images ~/Downloads/nlvr2
    python data_scripts/prepare_cirr.py ~/Downloads/cirr --images ~/Downloads/nlvr2   # same

One command per dataset (``cirr``, ``fashioniq``, ``fashion200k``, ``shoes``, ``circo``; the
``prepare_<dataset>.py`` scripts next to this one are thin wrappers). Each

1. looks for every file the loader needs in SOURCE (annotations) and ``--images`` (default
   SOURCE), and prints what is missing, where it was expected and where to get it;
2. builds ``$CIRLIB_DATA_DIR/<dataset>`` in a temporary folder beside it: annotation files are
   copied, images are symbolic links to your files (``--copy`` copies them, e.g. from a mounted
   Drive to the local disk of a Colab runtime);
3. loads every split of the temporary folder with the book's loader (so a malformed annotation
   file is reported now, naming file and entry, not in the middle of training), decodes every
   image the splits use once (a progress bar; a truncated or undecodable file is named), writes
   ``manifest.json`` last and renames the folder into place. An interrupted run leaves no
   half-prepared dataset behind.

``--check`` runs the same steps 1-3 in a temporary folder (links only) and installs nothing: a
dataset it calls complete is one the install accepts.

Exit status: 0 when the dataset is installed (or, with ``--check``, would be), 1 when a part is
missing or malformed or the destination is in the way, 2 for a wrong command line.

Missing images: CIRR, Fashion200k and Shoes must be complete (``--allow-missing-images`` accepts
gaps; the book then loads them with ``missing_images="skip"``). FashionIQ rarely is: its images
were Amazon URLs, many now dead, and the community mirrors differ, so missing ones are reported
as a count, never as an error, and the loader skips them. (The 77,683 entries of the split lists
name 74,381 distinct images: 3,302 are listed for both shirt and toptee.) ``--annotations-only`` installs the annotation files alone (enough to read
captions and run the loaders' annotation checks, not to train).

Layouts and protocols: ``shared/research/methods.md`` sections 8-10; the loaders' docstrings in
``cirlib/data/``. Introduced on the book page "Setup", section "Real datasets".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cirlib.data.circo import CIRCO_IMAGE_DIR, CIRCO_IMAGE_INFO, CIRCO_SPLITS, load_circo
from cirlib.data.cirr import load_cirr
from cirlib.data.fashion200k import (
    FASHION200K_CATEGORIES,
    FASHION200K_QUERIES_FILE,
    load_fashion200k,
    read_fashion200k_labels,
)
from cirlib.data.fashioniq import FASHIONIQ_CATEGORIES, load_fashioniq
from cirlib.data.image_check import undecodable_images
from cirlib.data.records import DatasetError, read_json
from cirlib.data.shoes import SHOES_CAPTIONS_FILE, SHOES_SPLIT_FILES, load_shoes, read_image_names
from cirlib.paths import data_root

DATASETS = ("cirr", "fashioniq", "fashion200k", "shoes", "circo")
MANIFEST = "manifest.json"

# Where each part comes from (methods.md sections 9-10 and the projects' READMEs).
SOURCES = {
    "cirr-annotations": (
        "the `cirr_dataset` branch of https://github.com/Cuberick-Orion/CIRR (folder `cirr/`: "
        "captions/ and image_splits/)"
    ),
    "cirr-images": (
        "the NLVR2 images (train/, dev/, test1/): request them through the form linked from "
        "https://github.com/lil-lab/nlvr/tree/master/nlvr2, or from the CIRR authors (see the "
        "CIRR README) when NLVR2 does not answer"
    ),
    "fashioniq-annotations": (
        "https://github.com/XiaoxiaoGuo/fashion-iq (folders captions/ and image_splits/)"
    ),
    "fashioniq-images": (
        "a community mirror of the ~74k still obtainable images (linked in "
        "https://github.com/XiaoxiaoGuo/fashion-iq/issues/18, or the Google Drive of the MGUR "
        "README, https://github.com/Monoxide-Chen/uncertainty_retrieval); the Amazon URLs of the "
        "release are largely dead"
    ),
    "fashion200k-labels": (
        "the Google Drive folder linked from https://github.com/xthan/fashion-200k (folder labels/)"
    ),
    "fashion200k-queries": (
        "the standard test queries linked from the README of https://github.com/google/tirg "
        "('Download the standard test_queries.txt')"
    ),
    "fashion200k-images": (
        "women.tar.gz from the Google Drive folder linked from https://github.com/xthan/fashion-200k "
        "(unpacks to women/<category>/...)"
    ),
    "shoes-annotations": (
        "the folder dataset/ of https://github.com/XiaoxiaoGuo/fashion-retrieval"
    ),
    "circo-annotations": (
        "the folder annotations/ of https://github.com/miccunifi/CIRCO (val.json, test.json)"
    ),
    "circo-image-info": (
        "COCO 2017's unlabeled image info (image_info_unlabeled2017.json, in "
        "image_info_unlabeled2017.zip from https://cocodataset.org/#download)"
    ),
    "circo-images": (
        "COCO 2017's unlabeled images (unlabeled2017.zip from https://cocodataset.org/#download, "
        "unpacked to unlabeled2017/)"
    ),
    "shoes-images": (
        "the Attribute Discovery shoe images (womens_*/...); the original link is dead, the MGUR "
        "README (https://github.com/Monoxide-Chen/uncertainty_retrieval) links a Google Drive copy"
    ),
}


class LayoutError(Exception):
    """The source is not usable as given; the message says what to do."""


@dataclass
class Missing:
    """One part the loader needs that the source lacks."""

    what: str
    expected: Path
    source_key: str

    def lines(self) -> list[str]:
        head = f"  MISSING {self.what}"
        return [
            head,
            f"    expected: {self.expected}",
            f"    get it from: {SOURCES[self.source_key]}",
        ]


@dataclass
class Plan:
    """What a dataset's check found and what installing it means."""

    dataset: str
    missing: list[Missing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    copies: dict[str, Path] = field(default_factory=dict)  # destination (relative) -> file
    links: dict[str, Path] = field(default_factory=dict)  # destination (relative) -> file/folder
    sources: dict[str, str] = field(default_factory=dict)
    verify: Callable[[Path], list[str]] | None = None  # loads the built folder, returns a summary
    # image files the loaded splits use (filled by verify), decoded once after it
    image_files: set[Path] = field(default_factory=set)


# ----------------------------------------------------------------------------- helpers


def _first_dir_with(candidates: Iterable[Path], marker: str) -> Path | None:
    return next((c for c in candidates if (c / marker).exists()), None)


def _index_files(folder: Path, suffixes: tuple[str, ...], key: Callable[[str], str]) -> dict:
    """``key(file name)`` -> path of every file under ``folder`` with one of ``suffixes``.

    The first file in sorted walk order wins when two share a key. Symbolic links to folders are
    followed (a mounted Drive often is one).
    """
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(suffixes):
                found.setdefault(key(name), Path(dirpath) / name)
    return found


def _split_summary(name: str, loaded) -> str:
    """One line per loaded split in the verification report."""
    return f"{name}: {len(loaded):,} queries, gallery {len(loaded.gallery):,} images"


def _record_images(plan: Plan, loaded) -> None:
    """Remember the image files a loaded split uses, for the decoding pass."""
    plan.image_files.update(p for p in loaded.image_paths.values() if os.path.lexists(p))


def _verify_splits(
    plan: Plan, load: Callable, splits, *, record: bool = True, **kwargs
) -> Callable[[Path], list[str]]:
    """A plan's ``verify``: load every split of the staged dataset with its real loader
    (``kwargs`` passed on) and report its size, plus the loader's warnings as notes; ``record``:
    remember the images the splits use, for the decoding pass."""

    def verify(root: Path) -> list[str]:
        lines = []
        for split in splits:
            loaded, notes = _quietly(load, root, split, **kwargs)
            if record:
                _record_images(plan, loaded)
            lines.append(_split_summary(split, loaded))
            lines += [f"  note: {n}" for n in notes]
        return lines

    return verify


def _quietly(fn: Callable, *args, **kwargs):
    """Call a loader, returning its result and the texts of the warnings it emitted."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [str(w.message) for w in caught]


def _missing_images_note(missing: list[str], total: int, where: Path) -> str:
    return (
        f"{len(missing):,} of {total:,} images have no file under {where} "
        f"(first: {', '.join(missing[:3])})"
    )


# ----------------------------------------------------------------------------- CIRR

CIRR_SPLITS = ("train", "val", "test1")


def plan_cirr(source: Path, images: Path | None, args) -> Plan:
    plan = Plan("cirr")
    # The release keeps the annotations in cirr/ (CLIP4Cir layout: cirr/ beside the images).
    ann = _first_dir_with([source, source / "cirr"], "captions") or source
    plan.sources["annotations"] = str(ann)
    split_files = {}
    for split in CIRR_SPLITS:
        for kind, name in (
            ("captions", f"cap.rc2.{split}.json"),
            ("image_splits", f"split.rc2.{split}.json"),
        ):
            path = ann / kind / name
            if path.is_file():
                plan.copies[f"{kind}/{name}"] = path
                if kind == "image_splits":
                    split_files[split] = path
            else:
                plan.missing.append(Missing(f"CIRR {kind}/{name}", path, "cirr-annotations"))
    for path in sorted((ann / "captions_ext").glob("cap.ext.rc2.*.json")):
        plan.copies[f"captions_ext/{path.name}"] = path  # auxiliary, unused by the methods
    if args.annotations_only:
        plan.notes.append("annotations only: no image was looked for or linked")
    else:
        image_root = images or source
        plan.sources["images"] = str(image_root)
        tops: set[str] = set()
        for split, path in split_files.items():
            files = read_json(path, "restore the original CIRR file")
            if not isinstance(files, dict):
                raise LayoutError(f"{path}: expected a JSON dict of image name -> relative path")
            absent = [n for n, rel in files.items() if not (image_root / rel).is_file()]
            tops.update(Path(rel).parts[0] for rel in files.values() if Path(rel).parts)
            if absent:
                example = image_root / files[absent[0]]
                if args.allow_missing_images:
                    plan.notes.append(
                        f"{split}: " + _missing_images_note(absent, len(files), image_root)
                    )
                else:
                    plan.missing.append(
                        Missing(
                            f"CIRR {split} images ({len(absent):,} of {len(files):,})",
                            example,
                            "cirr-images",
                        )
                    )
        for top in sorted(tops):
            if (image_root / top).is_dir():
                plan.links[top] = image_root / top

    plan.verify = _verify_splits(
        plan,
        load_cirr,
        CIRR_SPLITS,
        record=not args.annotations_only,
        check_images=not (args.annotations_only or args.allow_missing_images),
    )
    return plan


# ----------------------------------------------------------------------------- FashionIQ

FASHIONIQ_SPLITS = ("train", "val", "test")


def plan_fashioniq(source: Path, images: Path | None, args) -> Plan:
    plan = Plan("fashioniq")
    ann = (
        _first_dir_with([source, source / "fashion-iq", source / "fashioniq"], "captions") or source
    )
    plan.sources["annotations"] = str(ann)
    names: dict[str, None] = {}
    for category in FASHIONIQ_CATEGORIES:
        for split in FASHIONIQ_SPLITS:
            for kind, name in (
                ("captions", f"cap.{category}.{split}.json"),
                ("image_splits", f"split.{category}.{split}.json"),
            ):
                path = ann / kind / name
                if not path.is_file():
                    plan.missing.append(
                        Missing(f"FashionIQ {kind}/{name}", path, "fashioniq-annotations")
                    )
                    continue
                plan.copies[f"{kind}/{name}"] = path
                if kind == "image_splits":
                    listed = read_json(path, "restore the original FashionIQ file")
                    if not isinstance(listed, list):
                        raise LayoutError(f"{path}: expected a JSON list of image names")
                    names.update((str(n), None) for n in listed)
    if args.annotations_only:
        plan.notes.append("annotations only: no image was looked for or linked")
    else:
        image_root = images or source  # flat images/ or MGUR's image_data/<cat>/: both found
        plan.sources["images"] = str(image_root)
        found = (
            _index_files(image_root, (".jpg", ".jpeg", ".png"), key=lambda n: n.rsplit(".", 1)[0])
            if image_root.is_dir()
            else {}
        )
        present = [n for n in names if n in found]
        absent = [n for n in names if n not in found]
        if names and not present:
            plan.missing.append(
                Missing(
                    "FashionIQ images (none found)",
                    image_root / f"{next(iter(names))}.jpg",
                    "fashioniq-images",
                )
            )
        else:
            for n in present:
                suffix = found[n].suffix.lower()
                plan.links[f"images/{n}{'.png' if suffix == '.png' else '.jpg'}"] = found[n]
            if absent:
                # Not an error: no mirror is known to hold every image of the release.
                plan.notes.append(
                    _missing_images_note(absent, len(names), image_root)
                    + "; usual for FashionIQ (its Amazon image URLs are largely dead): reported, "
                    "not an error; the loader skips them with missing_images='skip'"
                )

    def verify(root: Path) -> list[str]:
        lines = []
        mode = "ignore" if args.annotations_only else "skip"
        for category in FASHIONIQ_CATEGORIES:
            for split in FASHIONIQ_SPLITS:
                full, _ = _quietly(load_fashioniq, root, category, split, missing_images="ignore")
                try:
                    loaded, _ = _quietly(load_fashioniq, root, category, split, missing_images=mode)
                except DatasetError:
                    # The annotations load (above), so every query needs a missing image: a
                    # count to report like the other gaps, not a broken install.
                    lines.append(
                        f"{category}/{split}: 0 queries ({len(full):,} of {len(full):,} dropped: "
                        f"image missing), nothing left to train or evaluate on"
                    )
                    continue
                if not args.annotations_only:
                    _record_images(plan, loaded)
                dropped = len(full) - len(loaded)
                lines.append(
                    f"{category}/{split}: {len(loaded):,} queries"
                    + (f" ({dropped:,} of {len(full):,} dropped: image missing)" if dropped else "")
                    + f", gallery {len(loaded.gallery):,} images"
                )
        return lines

    plan.verify = verify
    return plan


# ----------------------------------------------------------------------------- Fashion200k


def plan_fashion200k(source: Path, images: Path | None, args) -> Plan:
    plan = Plan("fashion200k")
    ann = (
        _first_dir_with([source, source / "Fashion200k", source / "fashion200k"], "labels")
        or source
    )
    plan.sources["annotations"] = str(ann)
    label_paths: list[str] = []
    for category in FASHION200K_CATEGORIES:
        for split in ("train", "test"):
            name = f"{category}_{split}_detect_all.txt"
            path = ann / "labels" / name
            if not path.is_file():
                plan.missing.append(
                    Missing(f"Fashion200k labels/{name}", path, "fashion200k-labels")
                )
                continue
            plan.copies[f"labels/{name}"] = path
            label_paths += [row[0] for row in read_fashion200k_labels(path)]
    queries = ann / FASHION200K_QUERIES_FILE
    if queries.is_file():
        plan.copies[FASHION200K_QUERIES_FILE] = queries
    else:
        plan.missing.append(
            Missing(f"Fashion200k {FASHION200K_QUERIES_FILE}", queries, "fashion200k-queries")
        )
    mode = _image_mode(args)
    if args.annotations_only:
        plan.notes.append("annotations only: no image was looked for or linked")
    elif label_paths:
        image_root = images or ann
        plan.sources["images"] = str(image_root)
        unique = list(dict.fromkeys(label_paths))
        absent = [p for p in unique if not (image_root / p).is_file()]
        tops = sorted({Path(p).parts[0] for p in unique})
        for top in tops:
            if (image_root / top).is_dir():
                plan.links[top] = image_root / top
        if absent and args.allow_missing_images:
            plan.notes.append(_missing_images_note(absent, len(unique), image_root))
        elif absent:
            plan.missing.append(
                Missing(
                    f"Fashion200k images ({len(absent):,} of {len(unique):,})",
                    image_root / absent[0],
                    "fashion200k-images",
                )
            )

    plan.verify = _verify_splits(plan, load_fashion200k, ("train", "test"), missing_images=mode)
    return plan


# ----------------------------------------------------------------------------- Shoes


def plan_shoes(source: Path, images: Path | None, args) -> Plan:
    plan = Plan("shoes")
    ann = _first_dir_with([source, source / "dataset"], SHOES_CAPTIONS_FILE) or source
    plan.sources["annotations"] = str(ann)
    names: list[str] = []
    for name in (SHOES_CAPTIONS_FILE, *SHOES_SPLIT_FILES.values()):
        path = ann / name
        if not path.is_file():
            plan.missing.append(Missing(f"Shoes {name}", path, "shoes-annotations"))
            continue
        plan.copies[name] = path
        if name != SHOES_CAPTIONS_FILE:
            names += read_image_names(path)
    if (ann / "captions_shoes.json").is_file():
        plan.copies["captions_shoes.json"] = ann / "captions_shoes.json"  # single-image captions
    mode = _image_mode(args)
    if args.annotations_only:
        plan.notes.append("annotations only: no image was looked for or linked")
    elif names:
        image_root = images or source
        plan.sources["images"] = str(image_root)
        # The Attribute Discovery tree is womens_<category>/<n>/img_womens_<category>_<k>.jpg;
        # any nesting is accepted, a file is found by its name.
        found = _index_files(image_root, (".jpg",), key=lambda n: n) if image_root.is_dir() else {}
        absent = [n for n in names if n not in found]
        for n in names:
            if n in found:
                plan.links[f"images/{n}"] = found[n]
        if absent and args.allow_missing_images:
            plan.notes.append(_missing_images_note(absent, len(names), image_root))
        elif absent:
            plan.missing.append(
                Missing(
                    f"Shoes images ({len(absent):,} of {len(names):,})",
                    image_root / "womens_<category>" / "<n>" / absent[0],
                    "shoes-images",
                )
            )

    plan.verify = _verify_splits(plan, load_shoes, SHOES_SPLIT_FILES, missing_images=mode)
    return plan


# ----------------------------------------------------------------------------- CIRCO


def plan_circo(source: Path, images: Path | None, args) -> Plan:
    """CIRCO: its annotations, COCO's unlabeled image list and the images it names (the release
    layout, annotations/ beside COCO2017_unlabeled/)."""
    plan = Plan("circo")
    ann = _first_dir_with([source, source / "CIRCO"], "annotations") or source
    plan.sources["annotations"] = str(ann)
    for split in CIRCO_SPLITS:
        path = ann / "annotations" / f"{split}.json"
        if path.is_file():
            plan.copies[f"annotations/{split}.json"] = path
        else:
            plan.missing.append(
                Missing(f"CIRCO annotations/{split}.json", path, "circo-annotations")
            )
    info = ann / CIRCO_IMAGE_INFO
    if info.is_file():
        plan.copies[str(CIRCO_IMAGE_INFO)] = info
    else:
        plan.missing.append(Missing(f"CIRCO {CIRCO_IMAGE_INFO}", info, "circo-image-info"))
    if args.annotations_only:
        plan.notes.append("annotations only: no image was looked for or linked")
    else:
        folder = images or ann / CIRCO_IMAGE_DIR
        plan.sources["images"] = str(folder)
        if info.is_file():
            from cirlib.data.circo import read_image_info

            files = read_image_info(info)
            absent = [f for f in files.values() if not (folder / f).is_file()]
            if absent and args.allow_missing_images:
                plan.notes.append(_missing_images_note(absent, len(files), folder))
            elif absent:
                plan.missing.append(
                    Missing(
                        f"CIRCO images ({len(absent):,} of {len(files):,})",
                        folder / absent[0],
                        "circo-images",
                    )
                )
            if folder.is_dir():
                plan.links[str(CIRCO_IMAGE_DIR)] = folder

    plan.verify = _verify_splits(
        plan,
        load_circo,
        CIRCO_SPLITS,
        record=not args.annotations_only,
        check_images=not (args.annotations_only or args.allow_missing_images),
    )
    return plan


def _image_mode(args) -> str:
    if args.annotations_only:
        return "ignore"
    return "skip" if args.allow_missing_images else "error"


PLANNERS = {
    "cirr": plan_cirr,
    "fashioniq": plan_fashioniq,
    "fashion200k": plan_fashion200k,
    "shoes": plan_shoes,
    "circo": plan_circo,
}


# ----------------------------------------------------------------------------- installing


def _stage(plan: Plan, tmp: Path, *, copy_images: bool) -> list[str]:
    """Build the dataset in ``tmp``, load it with the loader and decode its images.

    Returns the loader's summary lines; raises :class:`LayoutError` naming the user's files when
    the loader rejects them or an image does not decode.
    """
    for rel, src in plan.copies.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, tmp / rel)  # not copy2: a read-only source stays replaceable
    for rel, src in plan.links.items():
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not copy_images:
            # abspath, not resolve: one stat-free call per file (FashionIQ links ~74k).
            os.symlink(os.path.abspath(src), target)
        elif src.is_dir():
            shutil.copytree(src, target)
        else:
            shutil.copyfile(src, target)
    try:
        summary = plan.verify(tmp) if plan.verify else []
    except DatasetError as err:
        # Loader messages name the temporary copy: point at the user's file instead.
        message = str(err)
        for rel, src in plan.copies.items():
            message = message.replace(str(tmp / rel), str(src))
        raise LayoutError(f"the {plan.dataset} loader rejects the files: {message}") from None
    files = sorted(plan.image_files)
    bad = undecodable_images(files, desc=f"{plan.dataset}: decoding images")
    if bad:
        # name the user's files, not the links in the temporary folder
        shown = [
            f"{os.path.realpath(p)} ({reason.replace(str(p), 'the file')})"
            for p, reason in bad[:10]
        ]
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        fix = (
            "delete them (FashionIQ then counts them as missing, which it accepts)"
            if plan.dataset == "fashioniq"
            else "delete them and pass --allow-missing-images"
        )
        raise LayoutError(
            f"{len(bad):,} of {len(files):,} {plan.dataset} images do not decode: "
            + "; ".join(shown)
            + f"{more}. Download these files again (a truncated download is the usual cause), "
            f"or {fix}"
        )
    if files:
        summary.append(f"{len(files):,} images decoded")
    return summary


def check(plan: Plan, *, scratch: Path | None = None) -> list[str]:
    """Everything :func:`install` checks, in a temporary folder, installing nothing.

    Returns the loader's summary lines; raises :class:`LayoutError` as :func:`install` does.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{plan.dataset}.checking-", dir=scratch))
    try:
        return _stage(plan, tmp, copy_images=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install(plan: Plan, dest: Path, *, copy_images: bool, force: bool) -> list[str]:
    """Build ``dest`` in a temporary sibling folder, verify it with the loader, rename it in.

    Returns the loader's summary lines. Raises :class:`LayoutError` when ``dest`` is in the way,
    the loader rejects the files or an image does not decode; the temporary folder is removed in
    every case.
    """
    _check_destination(dest, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.preparing-", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the dataset folder need not be
    try:
        summary = _stage(plan, tmp, copy_images=copy_images)
        manifest = {
            "dataset": plan.dataset,
            "prepared_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
            "sources": plan.sources,
            "annotation_files": sorted(plan.copies),
            "images": "copied" if copy_images else "linked",
            "image_entries": len(plan.links),
            "notes": plan.notes,
            "splits": summary,
        }
        # Written last: a folder without it was not finished.
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        old = None
        if dest.exists():
            if any(dest.iterdir()):
                old = dest.with_name(f".{dest.name}.replaced-{os.getpid()}")
                dest.rename(old)
            else:
                dest.rmdir()  # the empty folder cirlib.paths.subdir creates on first use
        tmp.rename(dest)
        if old is not None:
            shutil.rmtree(old)  # removes our links and copies, never what they point to
        return summary
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _check_destination(dest: Path, force: bool) -> None:
    if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
        return
    if not dest.is_dir():
        raise LayoutError(f"{dest} exists and is not a folder; move it away")
    if force:
        return
    if (dest / MANIFEST).is_file():
        raise LayoutError(
            f"{dest} is already prepared (it has {MANIFEST}); pass --force to replace it"
        )
    raise LayoutError(
        f"{dest} exists and was not made by this script (no {MANIFEST}); move it away, or pass "
        f"--force to replace it"
    )


# ----------------------------------------------------------------------------- command line


def parse_args(argv=None, dataset: str | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog=f"prepare_{dataset}.py" if dataset else "prepare_data.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if dataset is None:
        ap.add_argument("dataset", choices=DATASETS)
    ap.add_argument("source", type=Path, help="the folder you downloaded (annotation files)")
    ap.add_argument(
        "--images", type=Path, help="where the images are, any nesting (default: SOURCE)"
    )
    ap.add_argument("--dest", type=Path, help="install here (default: $CIRLIB_DATA_DIR/<dataset>)")
    ap.add_argument("--check", action="store_true", help="only check and report; install nothing")
    ap.add_argument("--copy", action="store_true", help="copy images instead of linking them")
    ap.add_argument(
        "--annotations-only", action="store_true", help="install annotations, no images"
    )
    ap.add_argument(
        "--allow-missing-images",
        action="store_true",
        help="accept gaps in CIRR/Fashion200k/Shoes images (always accepted for FashionIQ)",
    )
    ap.add_argument("--force", action="store_true", help="replace an existing destination")
    args = ap.parse_args(argv)
    if dataset is not None:
        args.dataset = dataset
    return args


def main(argv=None, dataset: str | None = None) -> int:
    args = parse_args(argv, dataset)
    source = args.source.expanduser()
    images = args.images.expanduser() if args.images else None
    dest = (args.dest.expanduser() if args.dest else data_root() / args.dataset).absolute()
    print(f"{args.dataset}: checking {source}" + (f" (images: {images})" if images else ""))
    for what, given in (("source folder", source), ("image folder", images)):
        if given is None or given.is_dir():
            continue
        if given.is_file():
            print(
                f"error: the {what} {given} is a file, not a folder: if it is a downloaded "
                f"archive, extract it first (e.g. `mkdir -p DIR && tar -xf {given} -C DIR` or "
                f"`unzip {given} -d DIR`) and give the extracted folder",
                file=sys.stderr,
            )
        else:
            print(f"error: {what} {given} does not exist", file=sys.stderr)
        return 1
    for given in (source, images):
        # Installing replaces dest: links into it would dangle once the old copy is removed.
        if given is not None and given.resolve().is_relative_to(dest.resolve()):
            print(
                f"error: {given} is inside the destination {dest}; point at the folder you "
                f"downloaded, not at a prepared copy",
                file=sys.stderr,
            )
            return 1
    try:
        plan = PLANNERS[args.dataset](source, images, args)
    except (LayoutError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for note in plan.notes:
        print(f"  note: {note}")
    if plan.missing:
        for part in plan.missing:
            print("\n".join(part.lines()))
        print(
            f"error: {args.dataset} is incomplete ({len(plan.missing)} missing part(s) listed "
            f"above); nothing was installed",
            file=sys.stderr,
        )
        return 1
    print(f"  found {len(plan.copies)} annotation files and {len(plan.links):,} image entries")
    if args.check:
        try:
            summary = check(plan)
        except LayoutError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        for line in summary:
            print(f"  {line}")
        print(
            f"{args.dataset}: complete, and the loader accepts it; --check given, so nothing was "
            f"installed"
        )
        return 0
    try:
        summary = install(plan, dest, copy_images=args.copy, force=args.force)
    except LayoutError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for line in summary:
        print(f"  {line}")
    print(f"{args.dataset}: installed in {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
