"""Scenes of the toy world: coloured shapes on a 3×3 grid, after the CSS dataset of TIRG.

A scene is a tuple of :class:`Obj` sorted by grid cell, at most one object per cell, so two
scenes are equal exactly when they hold the same objects. That canonical form is what lets the
world list *every* valid target of a query (chapter "The task, the data and the metrics").

Vocabulary (CSS conventions): 3 shapes, the 8 CLEVR colours, 2 sizes, 9 named cells.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

SHAPES = ("rectangle", "circle", "triangle")
COLOURS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SIZES = ("small", "large")
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")
CELLS = tuple(f"{r}-{c}" for r in ROWS for c in COLUMNS)  # index = 3*row + column

# RGB fills of the CSS 2D renderer (= the CLEVR palette).
RGB = {
    "gray": (87, 87, 87),
    "red": (244, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 205, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}


@dataclass(frozen=True, order=True)
class Obj:
    """One object: grid cell (0..8, row-major), shape, colour and size."""

    cell: int
    shape: str
    colour: str
    size: str

    def moved(self, cell: int) -> Obj:
        return replace(self, cell=cell)

    def describe(self, with_cell: bool = True) -> str:
        words = f"{self.size} {self.colour} {self.shape}"
        return f"{words} at {CELLS[self.cell]}" if with_cell else words


Scene = tuple[Obj, ...]


def make_scene(objects) -> Scene:
    """Canonical scene from any iterable of objects; refuses two objects in one cell."""
    scene = tuple(sorted(objects))
    cells = [o.cell for o in scene]
    if len(set(cells)) != len(cells):
        raise ValueError(f"two objects share a cell: {scene}")
    return scene


def random_object(rng: random.Random, cell: int) -> Obj:
    return Obj(cell, rng.choice(SHAPES), rng.choice(COLOURS), rng.choice(SIZES))


def random_scene(rng: random.Random, min_objects: int = 2, max_objects: int = 5) -> Scene:
    """A scene of ``min_objects`` to ``max_objects`` objects (uniform count) on distinct cells."""
    n = rng.randint(min_objects, max_objects)
    return make_scene(random_object(rng, c) for c in rng.sample(range(len(CELLS)), n))


def empty_cells(scene: Scene) -> list[int]:
    used = {o.cell for o in scene}
    return [c for c in range(len(CELLS)) if c not in used]


def scene_caption(scene: Scene, rng: random.Random | None = None) -> str:
    """Full description, e.g. ``"large red circle at top-left , small blue rectangle at center"``.

    Objects are listed in cell order, or shuffled when ``rng`` is given (used as augmentation when
    the toy encoder is pretrained). Commas are separate words for the word-level tokenizer.
    """
    objs = list(scene)
    if rng is not None:
        rng.shuffle(objs)
    return " , ".join(o.describe() for o in objs)
