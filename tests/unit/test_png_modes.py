"""PNG instances in every accepted mode decode to the same grey pixels the model expects."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from mlpipe.data.mnist_source import load_mnist
from mlpipe.errors import BadInstanceError
from mlpipe.serving.instances import parse_instance


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    return load_mnist()["test"].images[0].reshape(28, 28).astype(np.uint8)


def _b64(img: Image.Image) -> dict:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return {"image_bytes": {"b64": base64.b64encode(buf.getvalue()).decode()}}


def _as_mode(grey: np.ndarray, mode: str) -> Image.Image:
    """The same digit stored in `mode`, with the grey value in every colour channel."""
    base = Image.fromarray(grey, mode="L")
    if mode == "RGBA":
        rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
        rgba[0, 0, 3] = 0  # a transparent pixel: alpha is ignored, its grey value counts
        return Image.fromarray(rgba, mode="RGBA")
    if mode == "P":
        img = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
        # Index i → grey 255 - i: the indices themselves are not the pixels (reading them raw would fail).
        img.putpalette([v for i in range(256) for v in (255 - i,) * 3])
        img.putdata((255 - grey.astype(int)).reshape(-1).tolist())
        return img
    return base.convert(mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA"])
def test_png_modes_give_the_digits_grey_pixels(digit, mode):
    img = _as_mode(digit, mode)
    assert img.mode == mode
    pixels = parse_instance(_b64(img), 0)
    assert pixels.shape == (784,) and pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, digit.reshape(-1).astype(np.float32))


def test_coloured_png_is_converted_with_luma_weights():
    rgb = np.zeros((28, 28, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: ITU-R 601-2 luma 0.299 * 255 = 76
    pixels = parse_instance(_b64(Image.fromarray(rgb, mode="RGB")), 0)
    assert set(pixels.tolist()) == {76.0}


def test_a_16_bit_png_is_refused_by_name(digit):
    img = Image.fromarray(digit.astype(np.uint16) * 257).convert("I;16")
    with pytest.raises(BadInstanceError, match=r"has PNG mode I(;16)?; use 8-bit grey \(L\)"):
        parse_instance(_b64(img), 0)
