"""The feature cache and the one-call evaluation, on a small toy world with a random encoder."""

import pytest
import torch
import torch.nn.functional as F

from cirlib.baselines import FLOORS, zero_shot_queries
from cirlib.config import resolve
from cirlib.data.features import cached_features, encode_split, encoder_id
from cirlib.data.records import DatasetError
from cirlib.data.registry import load_splits
from cirlib.data.toy import load_toy, prepare_toyworld
from cirlib.eval import cirr_metrics, multi_target_recall, target_ranks
from cirlib.eval.evaluate import evaluate
from cirlib.models.backbone import load_backbone
from cirlib.report import format_mean_std, mean_std

GROUPS = {"train": 12, "val": 6, "test": 10}


@pytest.fixture(scope="module")
def setup():
    cfg = resolve("smoke", world_groups=GROUPS)
    world = prepare_toyworld(cfg)
    torch.manual_seed(0)
    model, preprocess, tokenizer = load_backbone("toy-vit-tiny", pretrained=None)
    return cfg, world, model, preprocess, tokenizer


def test_cache_hits_and_misses(setup, tmp_path):
    cfg, world, model, preprocess, tokenizer = setup
    test = load_toy(world, "test")
    f1 = cached_features(test, model, preprocess, tokenizer, encoder="m:1", cache_dir=tmp_path)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1
    f2 = cached_features(test, model, preprocess, tokenizer, encoder="m:1", cache_dir=tmp_path)
    assert torch.equal(f1.images, f2.images) and torch.equal(f1.texts, f2.texts)
    assert len(list(tmp_path.glob("*.pt"))) == 1  # reused, not re-encoded
    cached_features(test, model, preprocess, tokenizer, encoder="m:2", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2  # another encoder, another entry
    assert not list(tmp_path.rglob("*.part"))


def test_features_line_up_with_the_split(setup):
    cfg, world, model, preprocess, tokenizer = setup
    test = load_toy(world, "test")
    f = encode_split(test, model, preprocess, tokenizer, tokens=True, batch_size=7)
    assert f.images.shape == (len(test.gallery), 128) and f.texts.shape == (len(test), 128)
    assert f.image_tokens.shape == (len(test.gallery), 9, 128)
    t = test.triplets[3]
    assert test.gallery[f.reference_index[3]] == t.reference
    assert test.gallery[f.target_index[3]] == t.target
    one = preprocess(test.load_image(test.gallery[5]))[None]
    assert torch.allclose(f.images[5], model.encode_image(one)[0], atol=1e-5)


def test_encoder_id_hashes_weights(tmp_path):
    assert encoder_id("toy-vit-tiny", None) == "toy-vit-tiny:random"
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    assert encoder_id("toy-vit-tiny", a) != encoder_id("toy-vit-tiny", b)


def test_evaluate_agrees_with_the_metric_functions(setup):
    cfg, world, model, preprocess, tokenizer = setup
    test = load_toy(world, "test")
    f = encode_split(test, model, preprocess, tokenizer)
    q = zero_shot_queries(f, "sum")
    res = evaluate(q, f, test)
    g = F.normalize(f.images, dim=-1)
    subsets = torch.tensor([[test.index_of(n) for n in t.subset] for t in test.triplets])
    direct = cirr_metrics(q, g, f.target_index, f.reference_index, subsets)
    valid = [[test.index_of(n) for n in t.valid_targets] for t in test.triplets]
    direct.update(multi_target_recall(q, g, valid, f.reference_index))
    for k in ("R@1", "R@10", "Rs@1", "Rs@3", "mR@1", "mR@50", "Avg"):
        assert res["all"][k] == pytest.approx(direct[k])
    # the breakdown partitions the queries, and its weighted mean is the overall number
    parts = res["edit_type"].values()
    assert sum(p["n"] for p in parts) == len(test)
    weighted = sum(p["R@10"] * p["n"] for p in parts) / len(test)
    assert weighted == pytest.approx(res["all"]["R@10"])
    for p in res["granularity"].values():  # multi-target recall never below single-target
        assert p["mR@10"] >= p["R@10"]


def test_evaluate_keeps_per_query_ranks_that_give_its_numbers(setup):
    cfg, world, model, preprocess, tokenizer = setup
    test = load_toy(world, "test")
    f = encode_split(test, model, preprocess, tokenizer)
    q = zero_shot_queries(f, "sum")
    plain = evaluate(q, f, test)
    ranked = evaluate(q, f, test, keep_ranks=True)
    assert ranked == plain and not hasattr(plain, "ranks")  # the same dict of numbers
    g = F.normalize(f.images, dim=-1)
    r = ranked.ranks
    assert r["R"].tolist() == target_ranks(q, g, f.target_index, f.reference_index).tolist()
    for prefix, kind in (("R", "R"), ("Rs", "Rs"), ("mR", "mR")):
        for k in (1, 2, 3) if kind == "Rs" else (1, 5, 10, 50):
            assert ranked["all"][f"{prefix}@{k}"] == pytest.approx(100 * (r[kind] < k).mean())
    assert ranked.groups["edit_type"] == [t.meta["edit_type"] for t in test.triplets]
    colour = [i for i, t in enumerate(test.triplets) if t.meta["edit_type"] == "colour"]
    assert ranked["edit_type"]["colour"]["R@5"] == pytest.approx(100 * (r["R"][colour] < 5).mean())


def test_floors_and_errors(setup):
    cfg, world, model, preprocess, tokenizer = setup
    test = load_toy(world, "test")
    f = encode_split(test, model, preprocess, tokenizer)
    img = zero_shot_queries(f, "image only")
    assert torch.allclose(img, F.normalize(f.images[f.reference_index], dim=-1))
    for kind in FLOORS:
        assert torch.allclose(zero_shot_queries(f, kind).norm(dim=-1), torch.ones(len(test)))
    with pytest.raises(ValueError, match="unknown floor"):
        zero_shot_queries(f, "nothing")
    f.target_index[0] = -1
    with pytest.raises(ValueError, match="without a target"):
        evaluate(img, f, test)


def test_registry(setup):
    cfg, world, *_ = setup
    splits = load_splits(cfg)
    assert set(splits) == {"train", "val", "test"} and len(splits["test"]) > 0
    with pytest.raises(DatasetError, match="CIRR is not prepared.*setup.md"):
        load_splits(resolve("paper", device="cpu"))


def test_profiles():
    assert resolve("smoke").epochs < resolve("toy").epochs
    assert resolve("paper", device="cpu").amp is False  # no mixed precision on a CPU
    with pytest.raises(ValueError, match="unknown profile 'tyo'"):
        resolve("tyo")
    with pytest.raises(ValueError, match="unknown profile setting"):
        resolve("toy", epoch=3)


def test_mean_std_table():
    runs = [{"R@1": 10.0, "n": 5}, {"R@1": 14.0, "n": 5}]
    ms = mean_std(runs)
    assert ms.loc["R@1", "mean"] == 12.0 and ms.loc["R@1", "std"] == pytest.approx(2**0.5 * 2)
    table = format_mean_std({"a": runs, "b": runs[:1]}, ["R@1"])
    assert table.loc["a", "R@1"] == "12.0 ± 2.8" and table.loc["b", "R@1"] == "10.0 ± 0.0"


def test_text_statistics_counts_words_and_attributes():
    from cirlib.data.text_stats import text_statistics

    df = text_statistics(["Make it RED, with long sleeves", "two dogs instead of one"], "x")
    assert df["words"].tolist() == [6, 5]
    assert df["names a colour"].tolist() == [True, False]
    assert df["names a shape or cut"].tolist() == [True, False]
