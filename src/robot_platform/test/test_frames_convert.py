"""frames.convert: Image encodings -> display arrays, JPEG encoding and scaling, CompressedImage."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image as PilImage

from robot_platform.frames.convert import (
    FrameEncoder,
    ImageConverter,
    encode_jpeg,
    image_array,
    scale_16_to_8,
    to_display,
)
from robot_platform.frames.errors import CompressedDecodeError, ImageLayoutError, UnsupportedEncodingError


def image(arr: np.ndarray, encoding: str, step: int | None = None, bigendian: bool = False, pad: int = 0):
    h, w = arr.shape[:2]
    row = arr[0].nbytes
    if pad:
        padded = np.zeros((h, row + pad), dtype=np.uint8)
        padded[:, :row] = arr.reshape(h, row // arr.itemsize, -1).view(np.uint8).reshape(h, row)
        data = padded.tobytes()
    else:
        data = arr.tobytes()
    return SimpleNamespace(
        encoding=encoding, width=w, height=h, step=step or row + pad, data=data, is_bigendian=int(bigendian)
    )


def rgb_pattern(h: int = 48, w: int = 64) -> np.ndarray:
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[..., 0] = 200  # red
    arr[..., 1] = np.arange(w, dtype=np.uint8)[None, :]
    arr[..., 2] = 10
    return arr


@pytest.fixture
def conv() -> ImageConverter:
    return ImageConverter(use_cv_bridge=False)


def test_rgb8_is_taken_as_is(conv):
    arr = rgb_pattern()
    out = conv.to_array(image(arr, "rgb8"))
    assert out.shape == (48, 64, 3)
    assert np.array_equal(out, arr)


def test_bgr8_and_bgra8_become_rgb(conv):
    rgb = rgb_pattern()
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    assert np.array_equal(conv.to_array(image(bgr, "bgr8")), rgb)
    bgra = np.concatenate([bgr, np.full((48, 64, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(conv.to_array(image(bgra, "bgra8")), rgb)
    rgba = np.concatenate([rgb, np.full((48, 64, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(conv.to_array(image(rgba, "rgba8")), rgb)


def test_mono8(conv):
    arr = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    out = conv.to_array(image(arr, "mono8"))
    assert out.shape == (48, 64) and out.dtype == np.uint8
    assert np.array_equal(out, arr)


def test_16uc1_is_scaled_to_8_bit_auto_and_fixed():
    depth = np.zeros((4, 5), dtype=np.uint16)
    depth[0, 0], depth[1, 1], depth[2, 2] = 1000, 2000, 4000
    auto = ImageConverter(use_cv_bridge=False).to_array(image(depth, "16UC1"))
    assert auto.dtype == np.uint8
    assert auto[2, 2] == 255 and auto[1, 1] == 127 and auto[0, 0] == 63 and auto[3, 3] == 0
    fixed = ImageConverter(depth_max=2000, use_cv_bridge=False).to_array(image(depth, "16UC1"))
    assert fixed[1, 1] == 255 and fixed[2, 2] == 255 and fixed[0, 0] == 127  # saturates above depth_max
    assert not scale_16_to_8(np.zeros((2, 2), np.uint16)).any()


def test_16uc1_big_endian():
    depth = np.array([[0, 256], [512, 1024]], dtype=">u2")
    out = ImageConverter(use_cv_bridge=False).to_array(image(depth, "16UC1", bigendian=True))
    assert out[1, 1] == 255 and out[0, 1] == 63


def test_row_padding_is_honoured():
    arr = rgb_pattern(6, 5)
    msg = image(arr, "rgb8", pad=4)
    assert msg.step == 5 * 3 + 4
    assert np.array_equal(image_array(msg), arr)


def test_bad_input_is_a_typed_error(conv):
    arr = rgb_pattern()
    with pytest.raises(UnsupportedEncodingError) as err:
        conv.to_array(image(arr, "bayer_rggb8"))
    assert err.value.encoding == "bayer_rggb8" and "rgb8" in str(err.value)
    short = image(arr, "rgb8")
    short.data = short.data[:-10]
    with pytest.raises(ImageLayoutError, match="needs at least"):
        conv.to_array(short)
    small_step = image(arr, "rgb8", step=10)
    with pytest.raises(ImageLayoutError, match="step"):
        conv.to_array(small_step)
    empty = image(arr, "rgb8")
    empty.width = 0
    with pytest.raises(ImageLayoutError):
        conv.to_array(empty)


def test_rclpy_style_array_data_is_accepted(conv):
    import array

    arr = rgb_pattern()
    msg = image(arr, "rgb8")
    msg.data = array.array("B", msg.data)  # rclpy gives uint8[] as array.array
    assert np.array_equal(conv.to_array(msg), arr)


def decode(data: bytes) -> PilImage.Image:
    img = PilImage.open(io.BytesIO(data))
    img.load()
    return img


def test_jpeg_roundtrip_keeps_colours_and_scales():
    arr = np.zeros((64, 96, 3), dtype=np.uint8)
    arr[..., 0] = 220
    data, w, h = encode_jpeg(arr, 90)
    assert (w, h) == (96, 64)
    back = np.asarray(decode(data))
    assert abs(int(back[..., 0].mean()) - 220) < 6 and back[..., 1].mean() < 6
    half, w2, h2 = encode_jpeg(arr, 90, 0.5)
    assert (w2, h2) == (48, 32) and decode(half).size == (48, 32)
    grey, _, _ = encode_jpeg(arr[..., 0], 90)
    assert decode(grey).mode == "L"


def test_lower_quality_is_smaller():
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    big, _, _ = encode_jpeg(arr, 90)
    small, _, _ = encode_jpeg(arr, 30)
    assert len(small) < len(big)
    with pytest.raises(ValueError):
        encode_jpeg(arr, 0)
    with pytest.raises(ValueError):
        encode_jpeg(arr, 50, 1.5)


def test_encoder_image_message():
    frame = FrameEncoder(ImageConverter(use_cv_bridge=False)).encode(image(rgb_pattern(), "bgr8"), 70, 0.5)
    assert (frame.width, frame.height, frame.quality, frame.scale) == (32, 24, 70, 0.5)
    assert frame.source_encoding == "bgr8" and not frame.passthrough
    assert decode(frame.data).size == (32, 24)


def compressed(data: bytes, fmt: str = "jpeg"):
    return SimpleNamespace(format=fmt, data=data)


def test_compressed_jpeg_passes_through_or_is_reencoded():
    jpeg, _, _ = encode_jpeg(rgb_pattern(96, 128), 90)
    enc = FrameEncoder()
    same = enc.encode(compressed(jpeg, "rgb8; jpeg compressed bgr8"), 50, 1.0)
    assert same.passthrough and same.data == jpeg and (same.width, same.height) == (128, 96)
    forced = enc.encode(compressed(jpeg), 30, 1.0, allow_passthrough=False)
    assert not forced.passthrough and forced.data != jpeg and forced.quality == 30
    smaller = enc.encode(compressed(jpeg), 60, 0.5)
    assert (smaller.width, smaller.height) == (64, 48) and decode(smaller.data).size == (64, 48)


def test_compressed_png_is_reencoded_as_jpeg():
    buf = io.BytesIO()
    PilImage.fromarray(rgb_pattern()).save(buf, "PNG")
    frame = FrameEncoder().encode(compressed(buf.getvalue(), "png"), 80, 1.0)
    assert decode(frame.data).format == "JPEG" and (frame.width, frame.height) == (64, 48)


def test_bad_compressed_data_is_a_typed_error():
    with pytest.raises(CompressedDecodeError):
        FrameEncoder().encode(compressed(b"\xff\xd8 definitely not a jpeg"), 80, 1.0)
    with pytest.raises(UnsupportedEncodingError):
        FrameEncoder().encode(compressed(b"...", "16UC1; compressedDepth png"), 80, 1.0)


def test_to_display_drops_alpha_without_copy_for_rgb():
    arr = rgb_pattern()
    assert to_display(arr, "rgb8") is arr
