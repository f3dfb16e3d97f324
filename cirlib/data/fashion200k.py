r"""Loader for Fashion200k in the TIRG protocol (the one MGUR and CoSMo inherit).

On-disk layout (the xthan/fashion-200k release plus TIRG's ``test_queries.txt``)::

    <root>/
      labels/<category>_<split>_detect_all.txt   one image per line, tab-separated:
                                                 image_path \t detection_score \t caption
      test_queries.txt                           one query per line: source_path target_path
      women/<category>/<caption>/<id>/<id>_<k>.jpeg   the images (women.tar.gz)

Categories are ``dress``, ``jacket``, ``pants``, ``skirt`` and ``top``; ``image_path`` is
relative to the root (``women/...``) and is the image's name in the split. The caption is a short
attribute-word product description.

Evaluation convention (MGUR's evaluator, inherited from TIRG, Vo et al., 2019):

* Gallery: every image of the ``*_test_detect_all.txt`` files (a path listed twice is kept once).
* Queries: the lines of ``test_queries.txt``. The query text is generated from the two captions
  as ``"replace <old> with <new>"``, where ``<old>`` is the first word of the source caption (in
  its order) that the target caption lacks and ``<new>`` the first word of the target caption
  that the source lacks; when a caption has no such word the last word is used, as in TIRG's
  code, so the query set is TIRG's.
* Hit: **any** gallery image whose caption equals the target caption, so every query carries
  :attr:`~cirlib.data.records.Triplet.valid_targets` (all such images) and the protocol's
  Recall@K is the ``mR@K`` of :func:`cirlib.eval.evaluate.evaluate` (its ``R@K`` counts only the
  one image ``test_queries.txt`` names). Metrics R@1, R@10, R@50:

  .. math:: \mathrm{R@K} = \frac{1}{|Q|} \sum_{q \in Q}
            \mathbb{1}\Big[\min_{g \in V_q \setminus \{r_q\}} \mathrm{rank}_q(g) < K\Big],
            \qquad V_q = \{\, g : \mathrm{caption}(g) = \mathrm{caption}(t_q) \,\},

  with :math:`r_q` the reference, :math:`t_q` the named target and ranks counted after
  :math:`r_q` is removed.
* Removed from the ranking: the reference image (TIRG) and every other image whose caption equals
  the reference's (MGUR, whose code filters the gallery by caption equality). Each query lists
  them in :attr:`~cirlib.data.records.Triplet.excluded` (the reference included), which
  :func:`cirlib.eval.evaluate.evaluate` removes from its rankings. The two captions of a query
  differ, so those images are never hits and the filter can only raise the numbers over TIRG's
  (reference only). A test query whose two captions are equal could not be answered under the
  filter and is dropped with a warning (TIRG's ``test_queries.txt`` has none).
  ``meta["reference_caption"]`` keeps the reference's caption.

Training queries are not shipped. ``"train"`` builds them once, reproducibly from ``seed``
(MGUR's variant of TIRG's on-the-fly sampling): two captions are *one word apart* when deleting
one word from each gives the same word sequence; every image whose caption has such neighbours
is the reference of up to ``train_pairs_per_image`` queries, one per neighbour caption drawn
without replacement, each with a random image of that caption as target and the text
``"replace <deleted word of the reference> with <deleted word of the target>"``. Queries come
grouped by reference caption (captions in order of first appearance, images in file order).
TIRG deletes a word with ``str.replace``, which also cuts it out of longer words ("red" out of
"shredded"); we delete whole words.

Captions are used as written, with surrounding white space removed. TIRG and MGUR also replace
``.``, ``?``, ``&`` and ``*`` by the words ``dotmark`` etc. for their LSTM vocabularies; a CLIP
tokenizer reads punctuation, so we do not, and caption equality (the hit rule) is unchanged.

Introduced in the chapter on the real datasets (book page "Setup", section "Real datasets").
"""

from __future__ import annotations

import os
import random
import warnings
from collections import defaultdict
from pathlib import Path

from cirlib.data.missing_images import apply_missing_images, resolve_missing_mode
from cirlib.data.records import CIRSplit, DatasetError, Triplet

__all__ = [
    "FASHION200K_CATEGORIES",
    "FASHION200K_QUERIES_FILE",
    "fashion200k_modification",
    "load_fashion200k",
    "read_fashion200k_labels",
]

FASHION200K_CATEGORIES = ("dress", "jacket", "pants", "skirt", "top")
FASHION200K_SPLITS = ("train", "test")
FASHION200K_QUERIES_FILE = "test_queries.txt"

_SETUP_HINT = (
    "prepare Fashion200k with `python data_scripts/prepare_fashion200k.py <folder you "
    'downloaded>` (book/setup.md, section "Real datasets")'
)
_FIX_HINT = (
    "the file is damaged or not in the Fashion200k release format: restore the original "
    "(labels/ from github.com/xthan/fashion-200k, test_queries.txt from github.com/google/tirg) "
    "and run `python data_scripts/prepare_fashion200k.py` again"
)


def fashion200k_modification(source_caption: str, target_caption: str) -> tuple[str, str]:
    """The word to replace and its replacement for a test query (TIRG's rule).

    ``old`` is the first word of ``source_caption`` not among the words of ``target_caption``,
    ``new`` the first word of ``target_caption`` not among those of ``source_caption``; without
    such a word the caption's last word is used. The query text is
    ``f"replace {old} with {new}"``.

    >>> fashion200k_modification("black leather biker jacket", "black suede biker jacket")
    ('leather', 'suede')
    """
    source, target = source_caption.split(), target_caption.split()
    target_words, source_words = set(target), set(source)
    old = next((w for w in source if w not in target_words), source[-1])
    new = next((w for w in target if w not in source_words), target[-1])
    return old, new


def read_fashion200k_labels(path: Path) -> list[tuple[str, float, str]]:
    """One label file as ``(image_path, detection_score, caption)`` rows, in file order.

    Blank lines are skipped; fields after the third are ignored (TIRG reads only three).
    Raises :class:`DatasetError` naming the file and line for fewer than three tab-separated
    fields, a score that is not a number, or an empty path or caption.
    """
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not a UTF-8 text file ({err}); {_FIX_HINT}") from None
    # split("\n"), not splitlines(): a caption may hold other Unicode line-break characters.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue

        def error(problem: str, number=number, line=line) -> DatasetError:
            return DatasetError(f"{path}: line {number} ({line!r}): {problem}; {_FIX_HINT}")

        fields = line.split("\t")
        if len(fields) < 3:
            raise error(
                f"expected 3 tab-separated fields (image_path, detection_score, caption), "
                f"got {len(fields)}"
            )
        image_path, score, caption = fields[0].strip(), fields[1].strip(), fields[2].strip()
        if not image_path:
            raise error("empty image_path")
        try:
            detection_score = float(score)
        except ValueError:
            raise error(f"detection_score {score!r} is not a number") from None
        if not caption:
            raise error("empty caption")
        rows.append((image_path, detection_score, caption))
    return rows


def load_fashion200k(
    root: str | os.PathLike,
    split: str,
    *,
    image_root: str | os.PathLike | None = None,
    missing_images: str = "auto",
    train_pairs_per_image: int = 5,
    seed: int = 0,
) -> CIRSplit:
    """Load the Fashion200k ``"train"`` or ``"test"`` split (TIRG protocol, see the module).

    Parameters
    ----------
    root : folder holding ``labels/`` and ``test_queries.txt`` (and, by default, ``women/``).
    split : ``"train"`` (queries generated) or ``"test"`` (queries from ``test_queries.txt``).
    image_root : folder the label files' image paths are relative to (default ``root``).
    missing_images : ``"auto"``, ``"error"``, ``"skip"`` or ``"ignore"`` as in
        :mod:`cirlib.data.missing_images`; the image folder is the first path component of the
        label paths (``women``) under ``image_root``.
    train_pairs_per_image : at most this many generated training queries per reference image
        (MGUR: 5). Only used for ``"train"``.
    seed : seed of the training-query generation. Only used for ``"train"``.

    Returns
    -------
    CIRSplit named ``"fashion200k/<split>"``; the gallery is the split's label images in file
    order (label files sorted by name). Each :class:`Triplet` has ``pair_id`` = its position,
    ``captions`` = ``caption`` = ``"replace <old> with <new>"``, ``target`` = the named target
    image, ``valid_targets`` = every gallery image with the target's caption, ``excluded`` =
    every gallery image with the reference's caption (the reference included), and ``meta``
    with ``reference_caption``, ``target_caption``, ``old_word`` and ``new_word``.

    Raises
    ------
    DatasetError
        When a file is missing, a line is malformed (the message names the file and line), a
        query names an image outside the split, or the split has no image or no query.
    """
    root = Path(root)
    if split not in FASHION200K_SPLITS:
        raise DatasetError(
            f"unknown Fashion200k split {split!r}; choose one of {list(FASHION200K_SPLITS)}"
        )
    labels_dir = root / "labels"
    for folder in (root, labels_dir):
        if not folder.is_dir():
            raise DatasetError(f"Fashion200k folder {folder} does not exist; {_SETUP_HINT}")
    if isinstance(train_pairs_per_image, bool) or not isinstance(train_pairs_per_image, int):
        raise DatasetError(f"train_pairs_per_image must be an int, got {train_pairs_per_image!r}")
    if train_pairs_per_image < 1:
        raise DatasetError(f"train_pairs_per_image must be >= 1, got {train_pairs_per_image}")
    label_files = sorted(labels_dir.glob(f"*_{split}_detect_all.txt"))
    if not label_files:
        present = sorted(p.name for p in labels_dir.glob("*.txt"))
        raise DatasetError(
            f"no Fashion200k label file of split {split!r} (<category>_{split}_detect_all.txt) "
            f"in {labels_dir}; files present: {present or 'none'}. {_SETUP_HINT}"
        )

    captions, duplicates = _read_images(label_files)
    name = f"fashion200k/{split}"
    if not captions:
        raise DatasetError(
            f"Fashion200k split {split!r} is empty: its label files "
            f"({', '.join(p.name for p in label_files)}) list no image; {_FIX_HINT}"
        )
    if duplicates:
        warnings.warn(
            f"{name}: {duplicates} label lines repeat an image path already listed; kept the "
            f"first line of each",
            stacklevel=2,
        )
    by_caption: dict[str, list[str]] = defaultdict(list)
    for image, caption in captions.items():
        by_caption[caption].append(image)
    valid = {caption: tuple(images) for caption, images in by_caption.items()}

    if split == "test":
        triplets = _test_queries(root / FASHION200K_QUERIES_FILE, captions, valid, name)
    else:
        triplets = _training_queries(captions, valid, train_pairs_per_image, seed)
        if not triplets:
            raise DatasetError(
                f"Fashion200k split {split!r} is empty: no two of its {len(valid)} captions are "
                f"one word apart, so no training query can be generated; check "
                f"{labels_dir}"
            )

    gallery = list(captions)
    base = Path(image_root) if image_root is not None else root
    image_folder = base / Path(gallery[0]).parts[0]
    mode = resolve_missing_mode(missing_images, image_folder, "Fashion200k", _SETUP_HINT)
    has_file = {n: (base / n).is_file() for n in gallery} if mode != "ignore" else {}
    triplets, gallery = apply_missing_images(
        name, triplets, gallery, has_file, mode, base, _SETUP_HINT
    )
    return CIRSplit(
        name=name,
        triplets=triplets,
        gallery=gallery,
        image_paths={n: base / n for n in gallery},
    )


def _read_images(label_files: list[Path]) -> tuple[dict[str, str], int]:
    """Image path -> caption over the label files (first line wins), and the repeat count."""
    captions: dict[str, str] = {}
    duplicates = 0
    for path in label_files:
        for image_path, _, caption in read_fashion200k_labels(path):
            if image_path in captions:
                duplicates += 1
                continue
            captions[image_path] = caption
    return captions, duplicates


def _test_queries(
    path: Path, captions: dict[str, str], valid: dict[str, tuple[str, ...]], name: str
) -> list[Triplet]:
    if not path.is_file():
        raise DatasetError(
            f"Fashion200k test queries file {path} does not exist (the test queries come from "
            f"TIRG, not from the Fashion200k release); {_SETUP_HINT}"
        )
    triplets = []
    self_pairs = same_caption = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DatasetError(
                f"{path}: line {number} ({line!r}): expected 'source_path target_path', got "
                f"{len(fields)} fields; {_FIX_HINT}"
            )
        for role, image in zip(("source", "target"), fields):
            if image not in captions:
                raise DatasetError(
                    f"{path}: line {number}: {role} image {image!r} is not in the test label "
                    f"files; {_FIX_HINT}"
                )
        source, target = fields
        if source == target:
            self_pairs += 1
            continue
        source_caption, target_caption = captions[source], captions[target]
        if source_caption == target_caption:
            same_caption += 1
            continue
        old, new = fashion200k_modification(source_caption, target_caption)
        triplets.append(_triplet(len(triplets), source, target, valid, captions, old, new))
    if not triplets:
        raise DatasetError(f"{path}: the file lists no test query; {_FIX_HINT}")
    total = len(triplets) + self_pairs + same_caption
    if same_caption:
        warnings.warn(
            f"{name}: dropped {same_caption} of {total} queries whose source and target have "
            f"the same caption (every image of the reference's caption is removed from the "
            f"ranking, the target included, so they cannot be answered)",
            stacklevel=3,
        )
    if self_pairs:
        warnings.warn(
            f"{name}: dropped {self_pairs} of {total} queries whose source "
            f"and target are the same image (with the reference removed from the ranking they "
            f"cannot be answered)",
            stacklevel=3,
        )
    return triplets


def _training_queries(
    captions: dict[str, str], valid: dict[str, tuple[str, ...]], per_image: int, seed: int
) -> list[Triplet]:
    # parent (a caption with one word deleted) -> {child caption: the deleted word}
    children: dict[tuple[str, ...], dict[str, str]] = defaultdict(dict)
    for caption in valid:
        for parent, word in _parents(caption):
            children[parent].setdefault(caption, word)

    rng = random.Random(seed)
    triplets: list[Triplet] = []
    # One caption at a time: its neighbour list is built, used by its images and dropped (all
    # neighbour pairs at once would be quadratic in the largest family).
    for caption, references in valid.items():
        options: dict[str, tuple[str, str]] = {}
        for parent, old in _parents(caption):
            for other, new in children[parent].items():
                if other != caption:
                    options.setdefault(other, (old, new))
        if not options:
            continue
        ordered = sorted(options)  # the draw depends on the seed only, not on dict history
        for reference in references:
            for other in rng.sample(ordered, min(per_image, len(ordered))):
                target = rng.choice(valid[other])
                old, new = options[other]
                triplets.append(
                    _triplet(len(triplets), reference, target, valid, captions, old, new)
                )
    return triplets


def _parents(caption: str) -> list[tuple[tuple[str, ...], str]]:
    """Every (caption with one word deleted, deleted word) of ``caption``."""
    words = caption.split()
    return [(tuple(words[:i] + words[i + 1 :]), word) for i, word in enumerate(words)]


def _triplet(
    pair_id: int,
    reference: str,
    target: str,
    valid: dict[str, tuple[str, ...]],
    captions: dict[str, str],
    old: str,
    new: str,
) -> Triplet:
    text = f"replace {old} with {new}"
    return Triplet(
        pair_id=pair_id,
        reference=reference,
        captions=(text,),
        caption=text,
        target=target,
        valid_targets=valid[captions[target]],
        excluded=valid[captions[reference]],
        meta={
            "reference_caption": captions[reference],
            "target_caption": captions[target],
            "old_word": old,
            "new_word": new,
        },
    )
