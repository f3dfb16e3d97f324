"""The toy-grammar parsers invert the world's own texts exactly and refuse anything else."""

import random

import pytest

from cirlib.toyworld.edits import Edit, Selector, edit_texts, sample_edit
from cirlib.toyworld.scene import Obj, random_scene, scene_caption
from cirlib.viz.toy_parse import ToyParseError, parse_edit, parse_scene


def test_both_phrasings_of_sampled_edits_parse_back():
    rng = random.Random(0)
    seen = set()
    for _ in range(1500):
        scene = random_scene(rng)
        edit, _ = sample_edit(scene, rng)
        for text in edit_texts(scene, edit):
            assert parse_edit(text) == edit, text
        seen.add(edit.type)
    assert seen == {"add", "remove", "colour", "shape", "size", "move"}


def test_scene_captions_parse_back():
    rng = random.Random(1)
    for _ in range(300):
        scene = random_scene(rng)
        assert parse_scene(scene_caption(scene, rng)) == scene  # any object order
    text = "a large red circle at top-left and small blue triangle at bottom-right"
    assert parse_scene(text) == (
        Obj(0, "circle", "red", "large"),
        Obj(8, "triangle", "blue", "small"),
    )


def test_examples():
    assert parse_edit("make an object blue") == Edit("colour", Selector(), "blue")
    assert parse_edit("Shrink the red circle") == Edit(
        "size", Selector(colour="red", shape="circle"), "small"
    )
    assert parse_edit("move the circle at top-left to bottom-right") == Edit(
        "move", Selector(cell=0, shape="circle"), 8
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "make the circle crimson",
        "paint the circle large",  # "paint" takes a colour only
        "turn the circle into a hexagon",
        "move the circle to the moon",
        "remove the red red circle",
        "please remove the circle",
        "add a circle at nowhere",
    ],
)
def test_texts_outside_the_grammar_are_refused(text):
    with pytest.raises(ToyParseError):
        parse_edit(text)


@pytest.mark.parametrize(
    "text",
    [
        "red circle at top-left",  # no size
        "large red circle",  # no cell
        "large red circle at top-left, small blue circle at top-left",  # one cell, two objects
        "",
    ],
)
def test_incomplete_scenes_are_refused(text):
    with pytest.raises(ToyParseError):
        parse_scene(text)
