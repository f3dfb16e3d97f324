"""The edit grammar of the toy world: what a modification text means, and what it can produce.

An :class:`Edit` is a structured modification (add, remove, change colour, change shape, change
size, move) whose :class:`Selector` may leave attributes open. Leaving them open is what makes a
text *coarse*: "make something blue" can be applied to any object that is not blue yet, so the
query has several valid targets. :func:`edit_results` enumerates them all;
:func:`is_valid_target` decides validity for one candidate by comparing the two scenes instead.
The two are written independently on purpose: the tests check that they agree.

Introduced in chapter "The task, the data and the metrics".
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from cirlib.toyworld.scene import (
    CELLS,
    COLOURS,
    SHAPES,
    SIZES,
    Obj,
    Scene,
    empty_cells,
    make_scene,
    random_object,
)

EDIT_TYPES = ("add", "remove", "colour", "shape", "size", "move")
MAX_OBJECTS = 6


@dataclass(frozen=True)
class Selector:
    """A partial object description; ``None`` means "any"."""

    cell: int | None = None
    shape: str | None = None
    colour: str | None = None
    size: str | None = None

    def matches(self, o: Obj) -> bool:
        return all(
            want is None or want == have
            for want, have in (
                (self.cell, o.cell),
                (self.shape, o.shape),
                (self.colour, o.colour),
                (self.size, o.size),
            )
        )

    def phrase(self, article: str) -> str:
        """Noun phrase such as ``"the small red circle at top-left"`` or ``"an object"``."""
        words = [w for w in (self.size, self.colour) if w] + [self.shape or "object"]
        if article == "a" and words[0][0] in "aeiou":
            article = "an"
        text = f"{article} {' '.join(words)}"
        return f"{text} at {CELLS[self.cell]}" if self.cell is not None else text


@dataclass(frozen=True)
class Edit:
    """A modification. ``selector`` picks the object(s) acted on; for ``add`` it is the partial
    description of the new object. ``value`` is the new colour / shape / size, or the destination
    cell of a move; ``None`` for add and remove."""

    type: str
    selector: Selector
    value: str | int | None = None

    def __post_init__(self) -> None:
        if self.type not in EDIT_TYPES:
            raise ValueError(f"unknown edit type {self.type!r}; expected one of {EDIT_TYPES}")


_ATTRIBUTE = {"colour": "colour", "shape": "shape", "size": "size"}


def edit_results(scene: Scene, edit: Edit) -> frozenset[Scene]:
    """Every scene that ``edit`` can turn ``scene`` into (the reference itself excluded)."""
    sel = edit.selector
    out = set()
    if edit.type == "add":
        if len(scene) >= MAX_OBJECTS:
            return frozenset()
        for cell in empty_cells(scene):
            if sel.cell is not None and cell != sel.cell:
                continue
            for shape in (sel.shape,) if sel.shape else SHAPES:
                for colour in (sel.colour,) if sel.colour else COLOURS:
                    for size in (sel.size,) if sel.size else SIZES:
                        out.add(make_scene((*scene, Obj(cell, shape, colour, size))))
        return frozenset(out)
    for o in scene:
        if not sel.matches(o):
            continue
        rest = [p for p in scene if p != o]
        if edit.type == "remove":
            if rest:  # a scene keeps at least one object
                out.add(make_scene(rest))
        elif edit.type == "move":
            if edit.value in {p.cell for p in scene}:
                continue
            out.add(make_scene((*rest, o.moved(edit.value))))
        else:
            attr = _ATTRIBUTE[edit.type]
            if getattr(o, attr) != edit.value:
                out.add(make_scene((*rest, replace(o, **{attr: edit.value}))))
    out.discard(scene)
    return frozenset(out)


def is_valid_target(reference: Scene, edit: Edit, candidate: Scene) -> bool:
    """Does ``candidate`` follow from ``reference`` by ``edit``? Decided by scene difference."""
    removed = set(reference) - set(candidate)
    added = set(candidate) - set(reference)
    sel = edit.selector
    if edit.type == "add":
        return (
            not removed
            and len(added) == 1
            and len(candidate) <= MAX_OBJECTS
            and sel.matches(next(iter(added)))
        )
    if edit.type == "remove":
        return not added and len(removed) == 1 and len(candidate) >= 1 and sel.matches(*removed)
    if len(removed) != 1 or len(added) != 1:
        return False
    (old,), (new,) = removed, added
    if not sel.matches(old):
        return False
    if edit.type == "move":
        return (old.shape, old.colour, old.size) == (new.shape, new.colour, new.size) and (
            new.cell == edit.value
        )
    attr = _ATTRIBUTE[edit.type]
    same = [a for a in ("cell", "shape", "colour", "size") if a != attr]
    return all(getattr(old, a) == getattr(new, a) for a in same) and (
        getattr(new, attr) == edit.value != getattr(old, attr)
    )


def apply_to(scene: Scene, edit: Edit, obj: Obj) -> Scene:
    """The one result of ``edit`` acting on ``obj`` (for add: ``obj`` is the new object)."""
    if edit.type == "add":
        return make_scene((*scene, obj))
    rest = [p for p in scene if p != obj]
    if edit.type == "remove":
        return make_scene(rest)
    if edit.type == "move":
        return make_scene((*rest, obj.moved(edit.value)))
    return make_scene((*rest, replace(obj, **{_ATTRIBUTE[edit.type]: edit.value})))


# --- texts -----------------------------------------------------------------------------------

_TEMPLATES = {
    "add": ("add {new}", "put {new}"),
    "remove": ("remove {obj}", "take away {obj}"),
    "colour": ("make {obj} {value}", "paint {obj} {value}"),
    "shape": ("turn {obj} into a {value}", "replace {obj} with a {value}"),
    "size": ("make {obj} {value}", "{resize} {obj}"),
    "move": ("move {obj} to {value}", "shift {obj} to {value}"),
}


def edit_texts(scene: Scene, edit: Edit) -> tuple[str, str]:
    """Two phrasings of ``edit`` (two templates of the grammar), lower case, no punctuation.

    The article is "the" when the selector picks out exactly one object of the reference and
    "a" otherwise, as a person would write it.
    """
    sel = edit.selector
    n_match = sum(sel.matches(o) for o in scene)
    obj = sel.phrase("the" if n_match == 1 else "a")
    value = CELLS[edit.value] if edit.type == "move" else edit.value
    resize = {"large": "enlarge", "small": "shrink"}.get(edit.value, "")
    fields = {"new": sel.phrase("a"), "obj": obj, "value": value, "resize": resize}
    return tuple(t.format(**fields) for t in _TEMPLATES[edit.type])


# --- sampling --------------------------------------------------------------------------------


def _keep_some(rng: random.Random, obj: Obj, attrs: tuple[str, ...], p: float) -> dict:
    return {a: getattr(obj, a) for a in attrs if rng.random() < p}


def sample_edit(
    scene: Scene, rng: random.Random, p_fine: float = 0.6, edit_type: str | None = None
) -> tuple[Edit, Scene]:
    """Draw an edit of ``scene`` and the one target it was drawn for.

    With probability ``p_fine`` the selector names the object's cell (CSS style: "make the circle
    at top-left blue"), which pins it down; otherwise it names only some of shape, colour and size,
    possibly none ("make something blue"), and the text may admit several targets.
    """
    feasible = [t for t in EDIT_TYPES if _feasible(scene, t)]
    etype = edit_type or rng.choice(feasible)
    if etype not in feasible:
        raise ValueError(f"edit {etype!r} is not possible on a scene of {len(scene)} objects")
    fine = rng.random() < p_fine
    attrs = ("shape", "colour", "size")
    if etype == "add":
        obj = random_object(rng, rng.choice(empty_cells(scene)))
        if fine:
            sel = Selector(cell=obj.cell, shape=obj.shape, colour=obj.colour, size=obj.size)
        else:
            kept = _keep_some(rng, obj, ("cell", *attrs), 0.5)
            if len(kept) == 4:
                kept.pop(rng.choice(list(kept)))
            sel = Selector(**kept)
        edit = Edit("add", sel)
        return edit, apply_to(scene, edit, obj)
    obj = rng.choice(scene)
    kept = _keep_some(rng, obj, attrs, 0.5)
    sel = Selector(cell=obj.cell, **kept) if fine else Selector(**kept)
    if etype == "remove":
        value = None
    elif etype == "move":
        value = rng.choice(empty_cells(scene))
    else:
        pool = {"colour": COLOURS, "shape": SHAPES, "size": SIZES}[etype]
        value = rng.choice([v for v in pool if v != getattr(obj, etype)])
    edit = Edit(etype, sel, value)
    return edit, apply_to(scene, edit, obj)


def _feasible(scene: Scene, etype: str) -> bool:
    if etype == "add":
        return len(scene) < MAX_OBJECTS
    if etype == "remove":
        return len(scene) >= 2
    return True


def edit_to_dict(edit: Edit) -> dict:
    sel = {k: v for k, v in vars(edit.selector).items() if v is not None}
    return {"type": edit.type, "selector": sel, "value": edit.value}


def edit_from_dict(d: dict) -> Edit:
    return Edit(d["type"], Selector(**d["selector"]), d.get("value"))
