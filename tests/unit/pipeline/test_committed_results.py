"""The committed toy builds (the reference, its AVX2 rebuild, and six methods trained again on two
threads) are whole: every claim can be judged again on the ranks each file keeps, the stored
differences are those ranks' differences, the rebuild judges every claim of the reference on
both galleries, and the two-thread build every claim that names only its methods."""

import json
from pathlib import Path

import pytest

from cirlib.verdict import Verdict, gallery_agreements, hard_gallery_record, rejudge

DATA = Path(__file__).resolve().parents[3] / "book" / "data"


def _load(name):
    return json.loads((DATA / name).read_text())


@pytest.mark.parametrize(
    "name",
    [
        "results_toy_reference.json",
        "results_toy_rebuild_avx2.json",
        "results_toy_two_threads.json",
    ],
)
def test_stored_differences_are_those_of_the_stored_ranks(name):
    record = _load(name)
    for part in (record, hard_gallery_record(record)):
        assert part is not None and part.get("per_query"), f"{name} lacks per-query ranks"
        for stored in (Verdict.from_dict(v) for v in part["verdicts"]):
            again = rejudge(part, stored)
            assert again.estimate == pytest.approx(stored.estimate, abs=1e-9), stored.key
            assert again.seeds == stored.seeds == (0, 1, 2, 3, 4)


def test_the_rebuild_judges_every_claim_of_the_reference():
    reference, rebuild = _load("results_toy_reference.json"), _load("results_toy_rebuild_avx2.json")
    assert rebuild["note"] and "AVX2" in rebuild["note"]
    for build, ref in (
        (rebuild, reference),
        (hard_gallery_record(rebuild), hard_gallery_record(reference)),
    ):
        keys = [Verdict.from_dict(v).key for v in build["verdicts"]]
        assert keys == [Verdict.from_dict(v).key for v in ref["verdicts"]]
    # and every one of them can be judged again on the rebuild's ranks, chances known
    found = gallery_agreements(rebuild, reference)
    assert list(found) == ["test gallery", "hard gallery"]
    assert all(a.expected_changes is not None for a in found.values())


def test_the_two_thread_build_judges_the_claims_of_its_methods_on_two_threads():
    reference, threads = _load("results_toy_reference.json"), _load("results_toy_two_threads.json")
    methods = set(threads["methods"])
    for build, ref in (
        (threads, reference),
        (hard_gallery_record(threads), hard_gallery_record(reference)),
    ):
        ours = [Verdict.from_dict(v).key for v in build["verdicts"]]
        expected = [
            Verdict.from_dict(v).key for v in ref["verdicts"] if {v["a"], v["b"]} <= methods
        ]
        assert ours == expected and ours  # the same claims, in the reference's order
    # every run of it trained on two threads (the reference's on one)
    runs = [r for per_seed in threads["trained_with"].values() for r in per_seed.values()]
    assert len(runs) == 5 * len(methods)
    assert {step["threads"] for run in runs for step in run} == {2}
    assert {
        step["threads"]
        for name in methods
        for run in reference["trained_with"][name].values()
        for step in run
    } == {1}
    found = gallery_agreements(threads, reference, methods=methods)
    assert all(a.expected_changes is not None and a.total for a in found.values())
