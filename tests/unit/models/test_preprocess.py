"""CLIP4Cir's target-pad preprocessing on synthetic non-square images."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from cirlib.models.preprocess import CLIP_MEAN, CLIP_STD, TargetPad, clip4cir_preprocess


def _image(width, height, seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(1, 256, size=(height, width, channels), dtype=np.uint8)  # no zeros
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


@pytest.mark.parametrize(
    "size, padded, pad",
    [
        ((200, 100), (200, 160), (0, 30)),  # wide: (200/1.25 - 100) / 2 = 30 rows top and bottom
        ((90, 300), (240, 300), (75, 0)),  # tall: (300/1.25 - 90) / 2 = 75 columns each side
        ((201, 100), (201, 160), (0, 30)),  # 30.4 is floored, as in CLIP4Cir
    ],
)
def test_target_pad_adds_zeros_on_the_short_side(size, padded, pad):
    image = _image(*size)
    out = TargetPad(1.25)(image)
    assert out.size == padded
    a, src = np.asarray(out), np.asarray(image)
    left, top = pad
    inner = a[top : top + size[1], left : left + size[0]]
    assert np.array_equal(inner, src)  # the content is centred, untouched
    border = np.ones(a.shape[:2], bool)
    border[top : top + size[1], left : left + size[0]] = False
    assert border.sum() == a.shape[0] * a.shape[1] - size[0] * size[1]
    assert (a[border] == 0).all()
    # the padded ratio is 1.25 up to the floor of one pixel per side
    w, h = out.size
    assert max(w, h) / min(w, h) == pytest.approx(1.25, abs=2 / min(w, h))


def test_near_square_images_are_left_alone():
    image = _image(110, 100)
    assert TargetPad(1.25)(image) is image
    assert TargetPad(1.0)(_image(110, 100)).size == (110, 110)  # ratio 1 = square pad


def test_tensor_input_matches_pil_input():
    image = _image(200, 100)
    from_pil = TF.pil_to_tensor(TargetPad()(image))
    from_tensor = TargetPad()(TF.pil_to_tensor(image))
    assert torch.equal(from_pil, from_tensor)


def test_full_transform_keeps_the_whole_long_side_in_view():
    out = clip4cir_preprocess(288)(_image(200, 100))
    assert out.shape == (3, 288, 288)
    black = (torch.zeros(3) - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    # 30 of 160 rows are padding: after resizing to 288 rows the first ~54 rows are black
    torch.testing.assert_close(out[:, :40, :], black[:, None, None].expand(3, 40, 288))
    torch.testing.assert_close(out[:, -40:, :], black[:, None, None].expand(3, 40, 288))
    middle = out[:, 100:190, :]
    assert (middle - black[:, None, None]).abs().amax() > 1  # real content in the middle
    gray = clip4cir_preprocess(224)(_image(300, 120, mode="L"))
    assert gray.shape == (3, 224, 224)  # grayscale files become RGB


def test_ratio_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        TargetPad(0.8)
