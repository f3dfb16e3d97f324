"""The offline toy world: scenes, renderer, edit grammar, split generation and export."""

from cirlib.toyworld.edits import (
    EDIT_TYPES,
    Edit,
    Selector,
    edit_results,
    edit_texts,
    is_valid_target,
    sample_edit,
)
from cirlib.toyworld.render import render_scene
from cirlib.toyworld.scene import Obj, Scene, make_scene, random_scene, scene_caption
from cirlib.toyworld.world import (
    EDIT_FAMILIES,
    FASHIONIQ_CATEGORIES,
    FASHIONIQ_CATEGORY_OF_FAMILY,
    SPLITS,
    generate_world,
    make_toyworld,
    scene_from_json,
)

__all__ = [
    "EDIT_FAMILIES",
    "EDIT_TYPES",
    "FASHIONIQ_CATEGORIES",
    "FASHIONIQ_CATEGORY_OF_FAMILY",
    "SPLITS",
    "Edit",
    "Obj",
    "Scene",
    "Selector",
    "edit_results",
    "edit_texts",
    "generate_world",
    "is_valid_target",
    "make_scene",
    "make_toyworld",
    "random_scene",
    "render_scene",
    "sample_edit",
    "scene_caption",
    "scene_from_json",
]
