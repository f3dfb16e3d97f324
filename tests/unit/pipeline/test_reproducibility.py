"""Stage checksums, the first-steps recorder, and the book's pipeline run twice from scratch."""

import pytest
import torch
import torch.nn.functional as F

import cirlib.train as train_module
from cirlib.config import resolve
from cirlib.reproducibility import (
    bytes_digest,
    difference_sizes,
    differing_keys,
    first_difference,
    recording_first_steps,
    stage_checksums,
    tensor_digest,
)
from cirlib.train import fit

# --- digests ---------------------------------------------------------------------------------


def test_tensor_digest_sees_every_bit_shape_and_dtype():
    x = torch.linspace(-1, 1, 12)
    same = tensor_digest(x.clone())["sha256"]
    assert tensor_digest(x)["sha256"] == same
    y = x.clone()
    y.view(torch.int32)[5] ^= 1  # one bit of the last place of one float
    assert not torch.equal(x, y) and torch.allclose(x, y)
    assert tensor_digest(y)["sha256"] != same
    assert tensor_digest(x.reshape(3, 4))["sha256"] != same  # same bytes, other shape
    assert tensor_digest(x.double())["sha256"] != same
    assert (
        tensor_digest(torch.tensor([0.0]))["sha256"]
        != tensor_digest(torch.tensor([-0.0]))["sha256"]
    )
    assert tensor_digest(x.to(torch.bfloat16))["dtype"] == "bfloat16"
    assert tensor_digest(x.numpy())["sha256"] == same  # a NumPy array hashes like its tensor


def test_bytes_digest_depends_on_where_the_chunks_are_cut():
    assert bytes_digest([b"ab", b"c"])["sha256"] != bytes_digest([b"a", b"bc"])["sha256"]
    assert bytes_digest([b"ab", b"c"]) == bytes_digest(iter([b"ab", b"c"]))
    assert bytes_digest([b"x"] * 3)["count"] == 3


def test_first_difference_follows_the_pipeline_order():
    a = {
        "env/threads": {"note": 1},
        "world/x": {"sha256": "1"},
        "features/y": {"sha256": "2"},
        "train/z": {"sha256": "3"},
        "run/r1": {"value": "0x1.0p+0", "note": 1.0},
    }
    assert first_difference(a, dict(a)) is None
    b = dict(a, **{"env/threads": {"note": 2}})
    assert first_difference(a, b) is None  # notes are not compared
    b = dict(a, **{"train/z": {"sha256": "x"}, "features/y": {"sha256": "x"}})
    assert first_difference(a, b) == "features/y"  # a's order, not b's
    assert differing_keys(a, b) == ["features/y", "train/z"]
    c = {k: v for k, v in a.items() if k != "world/x"}
    assert first_difference(a, c) == "world/x"  # missing from one record
    assert first_difference(c, a) == "world/x"
    d = dict(a, **{"run/r1": {"value": "0x1.0000000000001p+0", "note": 1.0}})
    assert first_difference(a, d) == "run/r1"  # values compare exactly, not as printed


def test_difference_sizes_by_hand():
    a = torch.tensor([1.0, -4.0, 2.0, 0.5])
    b = torch.tensor([1.0, -4.5, 2.25, 0.5])
    s = difference_sizes(a, b)
    assert s["max_abs"] == 0.5
    assert s["max_rel"] == 0.5 / 4.0
    assert s["changed"] == 0.5
    assert difference_sizes(a, a.clone()) == {"max_abs": 0.0, "max_rel": 0.0, "changed": 0.0}
    with pytest.raises(ValueError, match="shapes"):
        difference_sizes(a, a[:3])


# --- the first-steps recorder ----------------------------------------------------------------


def _toy_problem(n=24, d=6):
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(n, d, generator=g), torch.randn(n, 2, generator=g)

    def loss_fn(model, idx):
        return F.mse_loss(model(x[idx]), y[idx])

    return loss_fn, n


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Dropout(0.3), torch.nn.Linear(5, 2))


def test_recorder_sees_the_batches_fit_draws_and_does_not_change_training():
    loss_fn, n = _toy_problem()
    batch, steps, seed = 8, 3, 7
    # one epoch of exactly `steps` batches: the parameters at its end are those after `steps`
    reference = fit(_model(), loss_fn, n, epochs=1, batch_size=batch, lr=0.05, seed=seed)
    with recording_first_steps(steps) as calls:
        train_module.fit(_model(), loss_fn, n, epochs=5, batch_size=batch, lr=0.05, seed=seed)
        # every method trains through cirlib.train.train_method, which calls cirlib.train.fit
        assert train_module.fit is not fit
    assert train_module.fit is fit  # and restored on exit
    (call,) = calls
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    assert call["batches"] == [order[k * batch : (k + 1) * batch].tolist() for k in range(steps)]
    assert len(call["states"]) == steps + 1 and len(call["losses"]) == steps
    assert len({s["all"] for s in call["states"]}) == steps + 1  # every step moved the weights
    last = call["tensors"][f"step{steps}"]
    for name, value in reference.model.state_dict().items():
        assert torch.equal(last[name], value), name
    assert reference.history[0]["loss"] == pytest.approx(sum(call["losses"]) / steps)


def test_recorder_refuses_zero_steps():
    with pytest.raises(ValueError, match="at least one"):
        with recording_first_steps(0):
            pass


# --- the pipeline twice from scratch ---------------------------------------------------------

SMALL_WORLD = {"train": 40, "val": 6, "test": 10}


def _chapter3_glue(cfg):
    """What chapter 3 glues, computed by the chapter's own library calls (world, shipped
    encoder's cached features, a Combiner per seed with per-epoch validation, test metrics,
    the zero-shot floors)."""
    from cirlib.baselines import FLOORS, zero_shot_queries
    from cirlib.data.features import cached_features, encoder_id
    from cirlib.data.registry import load_splits
    from cirlib.eval import recall_at_k, target_ranks
    from cirlib.eval.evaluate import evaluate
    from cirlib.methods.combiner import combiner_queries, train_combiner
    from cirlib.models.backbone import load_backbone
    from cirlib.paths import subdir
    from cirlib.registry import checkpoint_path

    splits = load_splits(cfg)
    model, preprocess, tokenizer = load_backbone(cfg.encoder, cfg.encoder_pretrained)
    enc = encoder_id(cfg.encoder, cfg.encoder_pretrained)
    feats = {
        s: cached_features(
            sp, model, preprocess, tokenizer, encoder=enc, cache_dir=subdir("features")
        )
        for s, sp in splits.items()
    }
    val = feats["val"]

    def on_validation(m):
        ranks = target_ranks(
            combiner_queries(m, val), F.normalize(val.images, dim=-1), val.target_index,
            val.reference_index,
        )  # fmt: skip
        return recall_at_k(ranks, (1, 10))

    glued = {}
    for seed in cfg.seeds:
        run = train_combiner(
            feats["train"],
            cfg,
            seed=seed,
            checkpoint=checkpoint_path(cfg, "combiner", seed),
            eval_fn=on_validation,
        )
        glued[f"history s{seed}"] = run.history
        result = evaluate(combiner_queries(run.model, feats["test"]), feats["test"], splits["test"])
        glued[f"test s{seed}"] = result
    for kind in FLOORS:
        glued[f"floor {kind}"] = evaluate(
            zero_shot_queries(feats["test"], kind), feats["test"], splits["test"]
        )
    return glued


@pytest.mark.slow
def test_two_runs_from_scratch_agree_to_the_bit(tmp_path, monkeypatch):
    """The book's chain run twice, each in an empty data folder (nothing loaded from the first
    run): every stage checksum (world, PNG bytes, features, first batches and steps of the
    Combiner and of MAPNet, the finished Combiner and its test metrics) and every number
    chapter 3 glues are identical. Covers one machine and one thread count; two machines can
    differ in the last bits of the features (see data_scripts/checksums.py)."""
    monkeypatch.setenv("CIRLIB_THREADS", "1")
    torch.set_num_threads(1)
    cfg = resolve("smoke", world_groups=SMALL_WORLD, epochs=2)
    records, glued = [], []
    for run in ("a", "b"):
        monkeypatch.setenv("CIRLIB_DATA_DIR", str(tmp_path / run))
        torch.manual_seed(1234 if run == "a" else 99)  # no stage may lean on the global seed
        glued.append(_chapter3_glue(cfg))  # first: it trains the chapter's checkpoints
        record, _ = stage_checksums(cfg, methods=("combiner", "mapnet"), steps=2)
        records.append(record)
    assert (tmp_path / "a").is_dir() and (tmp_path / "b").is_dir()
    assert any(k.startswith("world/png/") for k in records[0])
    assert any(k.startswith("train/mapnet/") for k in records[0])
    assert first_difference(records[0], records[1]) is None
    assert glued[0] == glued[1]


_WORLD_DIGEST = """
import hashlib, json
from cirlib.data.hard_gallery import hard_distractors
from cirlib.toyworld.world import generate_world
world = generate_world({"train": 6, "val": 3, "test": 6}, seed=2)
h = hashlib.sha256()
for name, split in world.items():
    h.update(json.dumps([[n, [vars(o) for o in s]] for n, s in split.scenes.items()]).encode())
    h.update(json.dumps([[q.pair_id, q.reference, q.target, q.texts, q.members, q.valid_targets]
                         for q in split.queries]).encode())
h.update(repr(hard_distractors(world["test"], per_query=4, world_seed=2)).encode())
print(h.hexdigest())
"""


def test_world_and_hard_gallery_do_not_depend_on_the_hash_seed():
    """Scenes are tuples of dataclasses holding strings, so sets of scenes iterate in an order
    that changes with PYTHONHASHSEED from one process to the next: the world and the hard
    gallery must sort wherever they draw from a set. Two processes with different hash seeds
    give the same world (the in-process test above shares one seed)."""
    import os
    import subprocess
    import sys

    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-c", _WORLD_DIGEST], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_compare_writes_the_first_difference_sizes_and_metrics_as_json(tmp_path, load_script):
    import json

    script = load_script("checksums")
    run = {"profile": "smoke", "torch": "x", "code_version": "c", "data_dir": "/d"}
    w = torch.tensor([1.0, -4.0, 2.0, 0.5])
    w_b = torch.tensor([1.0, -4.0, 2.5, 0.5])
    a = {
        "world/s/scenes": {"sha256": "1"},
        "features/global/test/images": tensor_digest(w),
        "run/combiner/s0/test/R@1": {"value": (20.0).hex(), "note": 20.0},
    }
    b = dict(a, **{"features/global/test/images": tensor_digest(w_b)})
    b["run/combiner/s0/test/R@1"] = {"value": (21.0).hex(), "note": 21.0}
    for name, rec, threads in (("a", a, 1), ("b", b, 2)):
        info = dict(run, threads=threads, cpu_capability="AVX2", stages=rec)
        (tmp_path / f"{name}.json").write_text(json.dumps(info))
    torch.save({"features/global/test/images": w}, tmp_path / "a.pt")
    torch.save({"features/global/test/images": w_b}, tmp_path / "b.pt")
    records = [str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    tensors = [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]
    out = tmp_path / "cmp.json"

    assert script.main(["compare", *records, "--tensors", *tensors, "--json", str(out)]) == 1
    got = json.loads(out.read_text())
    assert [r["threads"] for r in got["runs"]] == [1, 2]
    assert got["entries"] == 3
    assert got["first_difference"] == "features/global/test/images"
    assert got["differing_entries"] == 2
    assert got["differing_by_stage"] == {"features/global/test": 1, "run/combiner/s0": 1}
    assert got["metrics"] == {"run/combiner/s0/test/R@1": [20.0, 21.0]}
    sizes = got["sizes"]["features/global/test"]
    assert sizes["tensor"] == "features/global/test/images"
    assert sizes["max_abs"] == pytest.approx(0.5)
    assert sizes["max_rel"] == pytest.approx(0.5 / 4.0)  # relative to max |A| = 4
    assert sizes["changed"] == pytest.approx(0.25)

    same = tmp_path / "same.json"
    assert script.main(["compare", records[0], records[0], "--json", str(same)]) == 0
    got = json.loads(same.read_text())
    assert got["first_difference"] is None and got["differing_entries"] == 0
