"""Read typed text back into the toy world: a modification text into an :class:`Edit`, a scene
description into a :class:`Scene`.

The toy world writes its texts from structured edits (:func:`cirlib.toyworld.edits.edit_texts`);
the explorer lets a reader type any text, and to mark the valid targets of a typed text it needs
the edit behind it. These parsers invert the grammar's templates exactly (the tests check
``parse_edit(text) == edit`` for both phrasings of sampled edits) and refuse anything else, with a
reason, rather than guess.

Introduced in chapter "The explorer".
"""

from __future__ import annotations

from cirlib.toyworld.edits import Edit, Selector
from cirlib.toyworld.scene import CELLS, COLOURS, SHAPES, SIZES, Obj, Scene, make_scene

ARTICLES = ("a", "an", "the")


class ToyParseError(ValueError):
    """The text is outside the toy grammar; the message says where."""


def _words(text: str) -> list[str]:
    return text.lower().replace(",", " , ").split()


def parse_selector(words: list[str]) -> Selector:
    """``[article] [size] [colour] (shape | object) [at cell]`` → :class:`Selector`.

    The inverse of :meth:`Selector.phrase`: every attribute left out stays open (``None``).
    """
    rest = list(words)
    if rest and rest[0] in ARTICLES:
        rest = rest[1:]
    cell = None
    if len(rest) >= 2 and rest[-2] == "at":
        if rest[-1] not in CELLS:
            raise ToyParseError(f"unknown cell {rest[-1]!r}; cells are {', '.join(CELLS)}")
        cell, rest = CELLS.index(rest[-1]), rest[:-2]
    if not rest:
        raise ToyParseError(f"no object named in {' '.join(words)!r}")
    noun, adjectives = rest[-1], rest[:-1]
    if noun not in (*SHAPES, "object"):
        raise ToyParseError(f"{noun!r} is not a shape ({', '.join(SHAPES)}) or 'object'")
    found = {"size": None, "colour": None}
    for word in adjectives:
        kind = "size" if word in SIZES else "colour" if word in COLOURS else None
        if kind is None or found[kind] is not None:
            raise ToyParseError(f"cannot read {word!r} in {' '.join(words)!r}")
        found[kind] = word
    return Selector(
        cell=cell,
        shape=noun if noun in SHAPES else None,
        colour=found["colour"],
        size=found["size"],
    )


def _split_at(words: list[str], keyword: str) -> tuple[list[str], list[str]]:
    if keyword not in words:
        raise ToyParseError(f"expected {keyword!r} in {' '.join(words)!r}")
    i = len(words) - 1 - words[::-1].index(keyword)
    return words[:i], words[i + 1 :]


def _shape_value(words: list[str]) -> str:
    if words and words[0] in ("a", "an"):
        words = words[1:]
    if len(words) != 1 or words[0] not in SHAPES:
        raise ToyParseError(f"expected a shape ({', '.join(SHAPES)}), got {' '.join(words)!r}")
    return words[0]


def parse_edit(text: str) -> Edit:
    """The :class:`Edit` a modification text of the toy grammar describes.

    Templates (see ``edit_texts``): "add|put ⟨new⟩", "remove ⟨obj⟩", "take away ⟨obj⟩",
    "make|paint ⟨obj⟩ ⟨colour⟩", "make ⟨obj⟩ ⟨size⟩", "enlarge|shrink ⟨obj⟩",
    "turn ⟨obj⟩ into a ⟨shape⟩", "replace ⟨obj⟩ with a ⟨shape⟩", "move|shift ⟨obj⟩ to ⟨cell⟩".

    Raises
    ------
    ToyParseError
        If the text follows none of them.
    """
    words = [w for w in _words(text) if w != ","]
    if not words:
        raise ToyParseError("the text is empty")
    verb, rest = words[0], words[1:]
    if verb in ("add", "put"):
        return Edit("add", parse_selector(rest))
    if verb == "remove":
        return Edit("remove", parse_selector(rest))
    if words[:2] == ["take", "away"]:
        return Edit("remove", parse_selector(words[2:]))
    if verb in ("enlarge", "shrink"):
        return Edit("size", parse_selector(rest), "large" if verb == "enlarge" else "small")
    if verb in ("make", "paint") and len(rest) >= 2:
        value = rest[-1]
        if value in COLOURS:
            return Edit("colour", parse_selector(rest[:-1]), value)
        if value in SIZES and verb == "make":
            return Edit("size", parse_selector(rest[:-1]), value)
        raise ToyParseError(f"{value!r} is not a colour{' or a size' if verb == 'make' else ''}")
    if verb == "turn":
        obj, value = _split_at(rest, "into")
        return Edit("shape", parse_selector(obj), _shape_value(value))
    if verb == "replace":
        obj, value = _split_at(rest, "with")
        return Edit("shape", parse_selector(obj), _shape_value(value))
    if verb in ("move", "shift"):
        obj, value = _split_at(rest, "to")
        if len(value) != 1 or value[0] not in CELLS:
            raise ToyParseError(f"expected a cell ({', '.join(CELLS)}), got {' '.join(value)!r}")
        return Edit("move", parse_selector(obj), CELLS.index(value[0]))
    raise ToyParseError(
        f"cannot read {text!r}: a toy edit starts with add, put, remove, take away, make, paint, "
        "enlarge, shrink, turn, replace, move or shift"
    )


def parse_scene(text: str) -> Scene:
    """A scene from its description, objects separated by commas or "and":
    "large red circle at top-left, small blue rectangle at middle-center" (the format of
    :func:`cirlib.toyworld.scene.scene_caption`; an article in front is allowed).

    Every object needs its size, colour, shape and cell: a typed scene is drawn and encoded as
    it is, so nothing may be left open.
    """
    words = ["," if w == "and" else w for w in _words(text)]
    objects, current = [], []
    for w in [*words, ","]:
        if w != ",":
            current.append(w)
            continue
        if not current:
            continue
        sel = parse_selector(current)
        missing = [k for k in ("cell", "shape", "colour", "size") if getattr(sel, k) is None]
        if missing:
            raise ToyParseError(f"{' '.join(current)!r} leaves {', '.join(missing)} open")
        objects.append(Obj(sel.cell, sel.shape, sel.colour, sel.size))
        current = []
    if not objects:
        raise ToyParseError("the scene is empty")
    try:
        return make_scene(objects)
    except ValueError as err:
        raise ToyParseError(str(err)) from None
