"""The CIRR test-server stand-in on hand-ranked lists, its refusals, and the whole loop on the toy
world: scores -> ``cirr_submission_from_scores`` -> files -> stand-in metrics equal to
``cirlib.eval.evaluate`` of the same scores with the private test1 targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cirlib.cirr_test_server import SubmissionRejected, score_submission
from cirlib.data.cirr import load_cirr
from cirlib.data.features import SplitFeatures
from cirlib.data.toy import load_toy
from cirlib.eval.evaluate import evaluate
from cirlib.eval.submission import cirr_submission_from_scores
from cirlib.toyworld import make_toyworld

# ----------------------------------------------------------------------------- hand-ranked

FILLER = [f"g{i}" for i in range(60)]


def _members(i: int) -> list[str]:
    return [f"r{i}", f"a{i}", f"b{i}", f"c{i}", f"d{i}", f"e{i}"]


TARGETS = {1: "a1", 2: "b2", 3: "e3"}


def _recall_list(i: int, target_at: int | None) -> list[str]:
    names = FILLER[:50]
    if target_at is not None:
        names = names[:target_at] + [TARGETS[i]] + names[target_at:49]
    return names


RECALL = {"1": _recall_list(1, 0), "2": _recall_list(2, 4), "3": _recall_list(3, None)}
SUBSET = {"1": ["a1", "b1", "c1"], "2": ["a2", "c2", "b2"], "3": ["a3", "b3", "c3"]}


@pytest.fixture
def files(tmp_path):
    caps = [
        {
            "pairid": i,
            "reference": f"r{i}",
            "caption": "x",
            "img_set": {"id": i, "members": _members(i)},
        }
        for i in (1, 2, 3)
    ]
    (tmp_path / "caps.json").write_text(json.dumps(caps))
    targets = [{"pairid": i, "target_hard": t} for i, t in TARGETS.items()]
    (tmp_path / "targets.json").write_text(json.dumps(targets))
    gallery = {n: f"./test1/{n}.png" for n in FILLER + [m for i in (1, 2, 3) for m in _members(i)]}
    (tmp_path / "split.json").write_text(json.dumps(gallery))
    return tmp_path


def _write(path: Path, metric: str, lists: dict) -> Path:
    path.write_text(json.dumps({"version": "rc2", "metric": metric, **lists}))
    return path


def test_hand_ranked_lists(files):
    recall = _write(files / "r.json", "recall", RECALL)
    subset = _write(files / "s.json", "recall_subset", SUBSET)
    got = score_submission(
        files / "caps.json",
        files / "targets.json",
        recall,
        subset,
        image_split_file=files / "split.json",
    )
    third, two_thirds = 100 / 3, 200 / 3
    expected = {
        "R@1": third,  # query 1 only (target first)
        "R@5": two_thirds,  # query 2's target is 5th
        "R@10": two_thirds,
        "R@50": two_thirds,  # query 3's target is not listed
        "Rs@1": third,
        "Rs@2": third,
        "Rs@3": two_thirds,  # query 2's target is 3rd of the subset list
        "Avg": (two_thirds + third) / 2,
    }
    assert got == pytest.approx(expected)
    only_recall = score_submission(files / "caps.json", files / "targets.json", recall)
    assert set(only_recall) == {"R@1", "R@5", "R@10", "R@50"}


@pytest.mark.parametrize(
    ("metric", "lists", "doc_change", "message"),
    [
        (
            "recall",
            {k: v for k, v in RECALL.items() if k != "3"},
            {},
            "1 test1 queries have no list",
        ),
        ("recall", {**RECALL, "9": RECALL["1"]}, {}, "1 keys are not test1 pair ids"),
        ("recall", RECALL, {"version": "rc1"}, "'version' must be 'rc2'"),
        ("recall", RECALL, {"metric": "recall_subset"}, "'metric' must be 'recall'"),
        ("recall", {**RECALL, "1": RECALL["1"][:49]}, {}, "needs a list of 50"),
        ("recall", {**RECALL, "1": RECALL["1"][:49] + ["a1"]}, {}, "distinct"),
        ("recall", {**RECALL, "1": RECALL["1"][:49] + ["r1"]}, {}, "lists its reference"),
        ("recall", {**RECALL, "1": RECALL["1"][:49] + ["nowhere"]}, {}, "outside test1"),
        ("recall_subset", {**SUBSET, "2": ["a2", "c2", "a1"]}, {}, "outside its img_set"),
    ],
)
def test_rules_refuse_bad_files(files, metric, lists, doc_change, message):
    doc = {"version": "rc2", "metric": metric, **lists, **doc_change}
    (files / "bad.json").write_text(json.dumps(doc))
    kwargs = {"recall_file" if metric == "recall" else "subset_file": files / "bad.json"}
    with pytest.raises(SubmissionRejected, match=message):
        score_submission(
            files / "caps.json",
            files / "targets.json",
            image_split_file=files / "split.json",
            **kwargs,
        )


def test_files_over_5_mb_are_refused(files):
    doc = json.dumps({"version": "rc2", "metric": "recall", **RECALL})
    (files / "big.json").write_text(doc + " " * (5_000_001 - len(doc)))
    with pytest.raises(SubmissionRejected, match="over the 5 MB limit"):
        score_submission(files / "caps.json", files / "targets.json", files / "big.json")
    (files / "big.json").write_text(doc + " " * (5_000_000 - len(doc)))
    assert score_submission(files / "caps.json", files / "targets.json", files / "big.json")


def test_targets_of_another_split_are_refused(files):
    (files / "other.json").write_text(json.dumps([{"pairid": 1, "target_hard": "a1"}]))
    recall = _write(files / "r.json", "recall", RECALL)
    with pytest.raises(SubmissionRejected, match="wrong targets file"):
        score_submission(files / "caps.json", files / "other.json", recall)


# ----------------------------------------------------------------------------- the toy loop


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_toyworld(
        tmp_path_factory.mktemp("server"), {"train": 4, "val": 3, "test": 6}, seed=5, image_size=16
    )


def _features(n_queries: int, n_images: int, seed: int, ties: bool):
    g = torch.Generator().manual_seed(seed)
    gallery = torch.randn(n_images, 8, generator=g)
    queries = F.normalize(torch.randn(n_queries, 8, generator=g), dim=-1)
    if ties:  # small integer features: many exactly equal scores, broken by gallery index
        gallery = torch.randint(0, 2, (n_images, 3), generator=g).float() + 0.0
        gallery[gallery.abs().sum(1) == 0, 0] = 1.0
        queries = F.normalize(
            torch.randint(0, 2, (n_queries, 3), generator=g).float() + 0.5, dim=-1
        )
    return queries, gallery


@pytest.mark.parametrize("ties", [False, True])
def test_stand_in_metrics_equal_the_books_evaluation(world, tmp_path, ties):
    ann = world / "cirr_dataset" / "cirr"
    public = load_cirr(ann, "test1")  # what a reader of the real dataset has: no targets
    book = load_toy(world, "test")  # the book's own view, private targets added
    assert public.gallery == book.gallery
    queries, gallery = _features(len(public), len(public.gallery), seed=3, ties=ties)

    recall_file, subset_file = cirr_submission_from_scores(queries, gallery, public, tmp_path)
    server = score_submission(
        ann / "captions" / "cap.rc2.test1.json",
        world / "private" / "cirr" / "cap.rc2.test1.targets.json",
        recall_file,
        subset_file,
        image_split_file=ann / "image_splits" / "split.rc2.test1.json",
    )
    index = {n: i for i, n in enumerate(book.gallery)}
    features = SplitFeatures(
        images=gallery,
        texts=queries,
        reference_index=torch.tensor([index[t.reference] for t in book.triplets]),
        target_index=torch.tensor([index[t.target] for t in book.triplets]),
    )
    ours = evaluate(queries, features, book, by=())["all"]
    for key in ("R@1", "R@5", "R@10", "R@50", "Rs@1", "Rs@2", "Rs@3", "Avg"):
        assert server[key] == pytest.approx(ours[key], abs=1e-9), key
    assert 0 < server["R@50"] < 100 or ties  # the check is not vacuous on random scores


def test_submission_from_scores_refuses_a_slice_and_other_splits(world, tmp_path):
    public = load_cirr(world / "cirr_dataset" / "cirr", "test1")
    queries, gallery = _features(len(public), len(public.gallery), seed=1, ties=False)
    with pytest.raises(ValueError, match="one row per query"):
        cirr_submission_from_scores(queries[:-1], gallery, public, tmp_path)
    with pytest.raises(ValueError, match="one row per image"):
        cirr_submission_from_scores(queries, gallery[:-1], public, tmp_path)
    with pytest.raises(ValueError, match="test1 split only"):
        cirr_submission_from_scores(queries, gallery, load_toy(world, "test"), tmp_path)
    assert not any(tmp_path.iterdir())


def test_command_line(world, tmp_path, capsys, load_script):
    module = load_script("score_cirr_submission")
    public = load_cirr(world / "cirr_dataset" / "cirr", "test1")
    queries, gallery = _features(len(public), len(public.gallery), seed=2, ties=False)
    files = cirr_submission_from_scores(queries, gallery, public, tmp_path)
    assert module.main(["--world", str(world), *map(str, files)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"R@1", "R@5", "R@10", "R@50", "Rs@1", "Rs@2", "Rs@3", "Avg"}
    doc = json.loads(files[0].read_text())
    doc.pop(next(k for k in doc if k not in ("version", "metric")))
    files[0].write_text(json.dumps(doc))
    assert module.main(["--world", str(world), str(files[0])]) == 1
    assert "have no list" in capsys.readouterr().err
