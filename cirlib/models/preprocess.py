r"""CLIP4Cir's image preprocessing: "target pad" to a bounded aspect ratio, then CLIP's transform.

A center crop of a very wide or tall image cuts away content the caption may talk about, and
padding every image to a square wastes resolution. CLIP4Cir pads only images whose aspect ratio
exceeds a target :math:`\rho` (1.25), and only as far as :math:`\rho`:

.. math::

    a = \frac{\max(w, h)}{\min(w, h)}, \qquad
    p = \Big\lfloor \tfrac12 \big(\max(w, h)/\rho - \min(w, h)\big) \Big\rfloor
    \ \text{zero pixels on both sides of the short dimension if } a \ge \rho,

after which the (bicubic) resize of the short side to :math:`S` and the :math:`S \times S`
center crop keep at least :math:`1/\rho` of the long side. (The floor follows CLIP4Cir, so the
padded ratio is :math:`\rho` up to one pixel per side.) Then RGB, ``ToTensor`` and CLIP's
mean/std. There is no random augmentation in any CLIP4Cir stage (Baldrati et al., 2023, released code).

Introduced in the book page "Running the paper profile on a GPU".
"""

from __future__ import annotations

from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

__all__ = ["CLIP_MEAN", "CLIP_STD", "TargetPad", "clip4cir_preprocess"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class TargetPad:
    r"""Zero-pad the short side of an image so its aspect ratio is at most ``ratio``.

    .. math:: p = \lfloor (\max(w,h)/\rho - \min(w,h)) / 2 \rfloor \text{ per side,
              only when } \max(w,h)/\min(w,h) \ge \rho

    Parameters
    ----------
    ratio : float
        The target aspect ratio :math:`\rho \ge 1` (CLIP4Cir: 1.25; 1.0 pads to a square, the
        "squarepad" variant).

    Works on PIL images (and tensors ``[..., H, W]``), like every torchvision transform.

    Introduced in the book page "Running the paper profile on a GPU".
    """

    def __init__(self, ratio: float = 1.25):
        if ratio < 1:
            raise ValueError(f"an aspect ratio is at least 1, got {ratio}")
        self.ratio = float(ratio)

    def padding(self, width: int, height: int) -> tuple[int, int]:
        """Pixels added on each side horizontally and vertically, ``(left=right, top=bottom)``."""
        long, short = max(width, height), min(width, height)
        if long / short < self.ratio:
            return 0, 0
        pad = int((long / self.ratio - short) / 2)
        return (pad, 0) if width < height else (0, pad)

    def __call__(self, image):
        if isinstance(image, Image.Image):
            width, height = image.size
        else:
            height, width = image.shape[-2:]
        horizontal, vertical = self.padding(width, height)
        if horizontal == vertical == 0:
            return image
        return TF.pad(image, [horizontal, vertical, horizontal, vertical], fill=0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ratio={self.ratio})"


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def clip4cir_preprocess(image_size: int = 288, ratio: float = 1.25) -> transforms.Compose:
    """CLIP4Cir's full image transform: target pad, bicubic resize, center crop, RGB, CLIP norm.

    Parameters
    ----------
    image_size : int
        The encoder's input size (RN50x4: 288; ViT-L-14: 224).
    ratio : float
        Target aspect ratio of :class:`TargetPad`.

    Returns
    -------
    torchvision.transforms.Compose
        PIL image -> float tensor ``[3, image_size, image_size]``.

    Introduced in the book page "Running the paper profile on a GPU".
    """
    return transforms.Compose(
        [
            TargetPad(ratio),
            transforms.Resize(image_size, interpolation=InterpolationMode.BICUBIC),
            transforms.CenterCrop(image_size),
            _to_rgb,
            transforms.ToTensor(),
            transforms.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )
