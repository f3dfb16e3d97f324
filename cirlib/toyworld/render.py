"""Render toy scenes to small RGB images.

Shapes are drawn at 4× resolution and downsampled, which gives anti-aliased edges at the 48-pixel
size the book uses. Like CSS's 2D renderer: white canvas, 3×3 grid, two object sizes, CLEVR
colours; unlike it, circles are discs (CSS draws diamonds).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from cirlib.toyworld.scene import RGB, Scene

SUPERSAMPLE = 4
HALF_EXTENT = {"small": 0.075, "large": 0.14}  # as a fraction of the image side


def render_scene(scene: Scene, size: int = 48) -> Image.Image:
    """Draw ``scene`` on a white ``size``×``size`` canvas."""
    big = size * SUPERSAMPLE
    im = Image.new("RGB", (big, big), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    cell = big / 3
    for o in scene:
        row, col = divmod(o.cell, 3)
        cy, cx = (row + 0.5) * cell, (col + 0.5) * cell
        h = HALF_EXTENT[o.size] * big
        fill = RGB[o.colour]
        if o.shape == "rectangle":
            draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
        elif o.shape == "circle":
            draw.ellipse([cx - h, cy - h, cx + h, cy + h], fill=fill)
        elif o.shape == "triangle":
            draw.polygon([(cx, cy - h), (cx - h, cy + h), (cx + h, cy + h)], fill=fill)
        else:
            raise ValueError(f"unknown shape {o.shape!r}")
    return im.resize((size, size), Image.LANCZOS)


def render_array(scene: Scene, size: int = 48) -> np.ndarray:
    """``render_scene`` as a ``(size, size, 3)`` uint8 array."""
    return np.asarray(render_scene(scene, size), dtype=np.uint8)
