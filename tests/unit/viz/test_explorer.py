"""The explorer without widgets: its top-k is the method's own ranking, typed text and scenes
are encoded as the feature cache encodes them, valid targets are marked right on planted cases,
and every method's picture is drawn."""

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from cirlib.config import resolve
from cirlib.data.features import encode_split
from cirlib.data.toy import load_scenes, load_toy, prepare_toyworld
from cirlib.eval.ranking import topk
from cirlib.models.backbone import load_backbone
from cirlib.registry import METHODS, get_method
from cirlib.toyworld.scene import CELLS, scene_caption
from cirlib.viz.explorer import (
    ExplorerContext,
    encode_scene,
    encode_text,
    explore,
    explorer_widget,
    render,
)

matplotlib.use("Agg")
GROUPS = {"train": 12, "val": 2, "test": 6}


@pytest.fixture(scope="module")
def context():
    cfg = resolve("smoke", world_groups=GROUPS, epochs=1, batch_size=16)
    world = prepare_toyworld(cfg)
    torch.manual_seed(0)
    encoder = load_backbone("toy-vit-tiny", pretrained=None)
    train, test = load_toy(world, "train"), load_toy(world, "test")
    ftrain = encode_split(train, *encoder, tokens=True)
    ftest = encode_split(test, *encoder, tokens=True)
    models = {
        name: spec.train(ftrain, cfg, seed=0, split=train, checkpoint=None)
        for name, spec in METHODS.items()
    }
    return ExplorerContext(test, ftest, load_scenes(world), encoder, models, cfg.image_size)


def test_top_k_is_the_methods_own_ranking(context):
    f, split = context.features, context.split
    for name, spec in METHODS.items():
        model = context.models[name]
        queries = spec.queries(model, f)
        gallery = spec.gallery(model, f) if spec.gallery else f.images
        scores, rows = topk(queries, F.normalize(gallery, dim=-1), 6, exclude=f.reference_index)
        for i in range(0, len(split.triplets), 7):
            t = split.triplets[i]
            result = explore(name, t.reference, t.caption, 6, context=context)
            assert result["split_query"] == i
            assert result["top_rows"] == rows[i].tolist(), name
            torch.testing.assert_close(torch.tensor(result["top_scores"]), scores[i])
            assert context.split.index_of(t.reference) not in result["top_rows"]


def test_typed_text_is_encoded_like_the_cache(context):
    f, split = context.features, context.split
    for i in range(0, len(split.triplets), 5):
        text_global, tokens, mask = encode_text(context, split.triplets[i].caption)
        torch.testing.assert_close(text_global[0], f.texts[i], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(
            tokens[0].float(), f.text_tokens[i].float(), atol=2e-3, rtol=1e-3
        )
        assert torch.equal(mask[0], f.text_mask[i])
    t = split.triplets[0]
    typed = "  " + t.caption.upper()  # same words, not the split's string: encoded afresh
    for name in ("combiner", "mapnet"):
        fresh = explore(name, t.reference, typed, 5, context=context)
        cached = explore(name, t.reference, t.caption, 5, context=context)
        assert fresh["split_query"] is None and cached["split_query"] == 0
        torch.testing.assert_close(fresh["scores"], cached["scores"], atol=1e-4, rtol=0)


def test_a_typed_gallery_scene_is_that_image(context):
    name = context.split.triplets[0].reference
    scene = context.scenes[name]
    image, tokens = encode_scene(context, scene)
    row = context.split.index_of(name)
    torch.testing.assert_close(image[0], context.features.images[row], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        tokens[0].float(), context.features.image_tokens[row].float(), atol=2e-3, rtol=1e-3
    )
    result = explore("combiner", scene_caption(scene), "remove an object", 5, context=context)
    assert result["reference_name"] == name and row not in result["top_rows"]
    assert result["scores"][row] == float("-inf")


def test_valid_targets_of_the_split_match_the_worlds_lists(context):
    for t in context.split.triplets:
        result = explore("combiner", t.reference, t.caption, 3, context=context)
        listed = sorted(context.split.index_of(n) for n in t.valid_targets)
        assert result["edit"] is not None
        assert result["valid_rows"] == listed, t.caption


def _planted_case(context):
    """A gallery image S with >= 2 objects whose scene minus one object R is not in the gallery."""
    gallery_scenes = {context.scenes[n] for n in context.split.gallery}
    for name in context.split.gallery:
        scene = context.scenes[name]
        for obj in scene:
            rest = tuple(o for o in scene if o != obj)
            if len(scene) >= 2 and rest not in gallery_scenes:
                return name, scene, obj, rest
    pytest.skip("no planted case in this tiny world")


def test_planted_fine_and_coarse_adds(context):
    name, scene, obj, reference = _planted_case(context)
    text = f"add a {obj.size} {obj.colour} {obj.shape} at {CELLS[obj.cell]}"
    k = len(context.split.gallery) - 1
    result = explore("combiner", reference, text, k, context=context)
    # fine: the one scene the text admits is S; it is valid wherever it ranks
    expected = [i for i, n in enumerate(context.split.gallery) if context.scenes[n] == scene]
    assert result["reference_name"] is None and result["n_results"] == 1
    assert result["valid_rows"] == expected
    for row, valid in zip(result["top_rows"], result["top_valid"]):
        assert valid == (row in expected)
    order = torch.argsort(result["scores"], descending=True, stable=True).tolist()
    assert result["valid_ranks"] == [order.index(r) for r in expected]  # ranks from 0

    # coarse: every gallery scene that is R plus exactly one object, found by set difference
    coarse = explore("combiner", reference, "add an object", 5, context=context)
    brute = [
        i
        for i, n in enumerate(context.split.gallery)
        if set(reference) < set(context.scenes[n])
        and len(set(context.scenes[n]) - set(reference)) == 1
    ]
    assert coarse["valid_rows"] == brute and expected[0] in brute
    assert coarse["top_valid"] == [r in brute for r in coarse["top_rows"]]


def test_unknown_words_and_unreadable_text(context):
    t = context.split.triplets[0]
    result = explore("dqe", t.reference, "make the circle crimson", 4, context=context)
    assert result["unknown_words"] == ["crimson"]
    assert result["edit"] is None and "crimson" in result["edit_error"]
    assert result["valid_rows"] is None and result["top_valid"] == [None] * 4
    fig = render(result)
    assert "crimson" in fig._suptitle.get_text()


def test_every_method_has_its_picture(context):
    t = context.split.triplets[1]
    kinds = {}
    for name in METHODS:
        result = explore(name, t.reference, t.caption, 5, context=context)
        picture = result["picture"]
        kinds[name] = picture["kind"]
        if picture["kind"] == "transport_plan":  # uniform marginals of the Sinkhorn plan
            plan = torch.tensor(picture["plan"])
            torch.testing.assert_close(plan.sum(1), torch.full((len(plan),), 1 / len(plan)),
                                       atol=1e-3, rtol=0)  # fmt: skip
        if picture["kind"] == "score_histogram":  # the head of the ranking, valid ones marked
            assert picture["head_scores"][: result["k"]].tolist() == result["top_scores"]
            valid = set(result["valid_rows"])
            order = torch.argsort(result["scores"], descending=True, stable=True)
            assert picture["head_valid"] == [
                int(r) in valid for r in order[: len(picture["head_valid"])]
            ]
        if picture["kind"] == "hinge_attention":  # a softmax over target cells per row
            rows = torch.tensor(picture["attention"]).sum(1)
            torch.testing.assert_close(rows, torch.ones_like(rows))
        fig = render(result)
        assert len(fig.axes) >= result["k"] + 2
        matplotlib.pyplot.close(fig)
    assert kinds == {
        "combiner": "score_histogram",
        "mgur": "score_histogram",
        "cala": "hinge_attention",
        "mapnet": "transport_plan",
        "dqe": "attribute_weights",
    }
    assert (
        get_method("dqe").title
        in render(explore("dqe", t.reference, t.caption, 2, context=context))._suptitle.get_text()
    )


def test_widget_updates_without_errors(context, capsys):
    box = explorer_widget(context, k=3)
    controls = box.children[0].children[0].children
    pick, typed, text, method, top = controls
    message = box.children[1]
    method.value = "mapnet"
    text.value = "make the circle crimson"
    assert "crimson" in message.value
    typed.value = "large red circle at nowhere"
    assert "cannot read the scene" in message.value
    typed.value = "large red circle at top-left, small blue triangle at bottom-right"
    assert "typed scene" in message.value
    pick.value = pick.options[1]
    assert capsys.readouterr().err == ""
