"""Property tests of the encoder's image parsing (`sam_inference.imaging`): whatever the bytes, the result is an
HxWx3 uint8 RGB array or a 4xx `ServiceError` (400 undecodable, 413 too many pixels), never another exception.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from fuzz._cases import count, fuzz_settings
from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image
from sam_inference.errors import BadRequestError, PayloadTooLargeError, ServiceError
from sam_inference.imaging import decode_base64, decode_image

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

MAX_PIXELS = 4_000_000

# (mode, formats that can store it)
MODES: dict[str, tuple[str, ...]] = {
    "1": ("PNG", "BMP", "TIFF", "GIF"),
    "L": ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP"),
    "LA": ("PNG", "TIFF"),
    "P": ("PNG", "BMP", "GIF", "TIFF"),
    "RGB": ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "ICO", "PPM"),
    "RGBA": ("PNG", "TIFF", "WEBP", "ICO"),
    "CMYK": ("JPEG", "TIFF"),
    "YCbCr": ("JPEG",),
    "I;16": ("PNG", "TIFF"),
    "I": ("TIFF",),
    "F": ("TIFF",),
}


def decode_or_4xx(data: bytes, prop: str, max_pixels: int = MAX_PIXELS) -> np.ndarray | ServiceError:
    """The property every input must satisfy; records the outcome."""
    try:
        array = decode_image(data, max_pixels)
    except ServiceError as exc:
        assert 400 <= exc.status < 500, exc
        assert exc.message, "a rejection must say why"
        count(prop, str(exc.status))
        return exc
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3, array.shape
    assert array.shape[0] * array.shape[1] <= max_pixels
    count(prop, "ok")
    return array


@st.composite
def encoded_images(draw: st.DrawFn) -> tuple[bytes, str, str, int, int]:
    mode = draw(st.sampled_from(sorted(MODES)))
    fmt = draw(st.sampled_from(MODES[mode]))
    width = draw(st.integers(1, 48))
    height = draw(st.integers(1, 48))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))
    if mode in {"I;16", "I", "F"}:
        values = rng.integers(0, 65536, size=(height, width)).astype(np.uint16 if mode == "I;16" else np.int32)
        image = Image.fromarray(values.astype(np.float32) if mode == "F" else values)
        if mode == "I" and image.mode != "I":
            image = image.convert("I")
    elif mode == "P":
        image = rgb.quantize(colors=draw(st.integers(2, 256)))
    else:
        image = rgb.convert(mode)
    buffer = io.BytesIO()
    options: dict[str, object] = {}
    if fmt == "ICO":
        options["sizes"] = [(width, height)]
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue(), mode, fmt, width, height


@fuzz_settings(300)
@given(st.binary(max_size=4096))
def test_random_bytes_are_rejected_with_4xx_or_decoded(data: bytes) -> None:
    decode_or_4xx(data, "imaging: random bytes")


@fuzz_settings(150)
@given(
    st.sampled_from(
        [
            b"\x89PNG\r\n\x1a\n",
            b"\xff\xd8\xff",
            b"GIF89a",
            b"BM",
            b"II*\x00",
            b"MM\x00*",
            b"RIFF",
            b"\x00\x00\x01\x00",
            b"P6\n",
            b"8BPS",
            b"icns",
            b"%!PS",
        ]
    ),
    st.binary(max_size=2048),
)
def test_magic_number_then_garbage(magic: bytes, tail: bytes) -> None:
    decode_or_4xx(magic + tail, "imaging: magic + garbage")


@fuzz_settings(250)
@given(encoded_images())
def test_every_mode_and_format_decodes_to_rgb_of_the_same_size(sample: tuple[bytes, str, str, int, int]) -> None:
    data, mode, fmt, width, height = sample
    result = decode_or_4xx(data, "imaging: odd modes/formats")
    assert isinstance(result, np.ndarray), f"a valid {fmt} in mode {mode} was rejected: {result}"
    assert result.shape == (height, width, 3)


@fuzz_settings(250)
@given(encoded_images(), st.data())
def test_truncated_images_never_crash(sample: tuple[bytes, str, str, int, int], data: st.DataObject) -> None:
    raw = sample[0]
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    result = decode_or_4xx(raw[:cut], "imaging: truncated")
    if isinstance(result, np.ndarray):  # a prefix that still decodes must not be a partial (black-filled) image
        assert result.shape[:2] == (sample[4], sample[3])


@fuzz_settings(250)
@given(encoded_images(), st.data())
def test_bit_flipped_images_never_crash(sample: tuple[bytes, str, str, int, int], data: st.DataObject) -> None:
    raw = bytearray(sample[0])
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    decode_or_4xx(bytes(raw), "imaging: bit flips")


def _png_claiming(width: int, height: int, mode_byte: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode_byte, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(idat))
        + b"IDAT"
        + idat
        + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
        + struct.pack(">I", 0)
        + b"IEND"
        + struct.pack(">I", zlib.crc32(b"IEND"))
    )


def _gif_claiming(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (4, 4)).save(buffer, format="GIF")
    raw = bytearray(buffer.getvalue())
    raw[6:10] = struct.pack("<HH", width, height)  # logical screen
    image_desc = raw.index(b",")
    raw[image_desc + 5 : image_desc + 9] = struct.pack("<HH", width, height)  # the frame itself
    return bytes(raw)


def _bmp_claiming(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="BMP")
    raw = bytearray(buffer.getvalue())
    raw[18:26] = struct.pack("<ii", width, height)
    return bytes(raw)


def _jpeg_claiming(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG")
    raw = bytearray(buffer.getvalue())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


@fuzz_settings(300)
@given(
    st.sampled_from(["png", "gif", "bmp", "jpeg"]),
    st.integers(1, 65535),
    st.integers(1, 65535),
    st.integers(2_000, 60_000_000),
)
def test_declared_dimensions_over_the_pixel_limit_are_413_before_decoding(
    kind: str, width: int, height: int, max_pixels: int
) -> None:
    if kind == "png":
        data = _png_claiming(width, height)
    elif kind == "gif":
        data = _gif_claiming(width, height)
    elif kind == "bmp":
        data = _bmp_claiming(width, height)
    else:
        data = _jpeg_claiming(width, height)
    result = decode_or_4xx(data, "imaging: declared dimensions", max_pixels=max_pixels)
    if width * height > max_pixels:
        assert isinstance(result, PayloadTooLargeError), (kind, width, height, max_pixels, result)
    else:
        assert not isinstance(result, PayloadTooLargeError)


@pytest.mark.parametrize("width,height", [(2**31 - 1, 2**31 - 1), (100_000, 100_000), (60_000, 1)])
def test_png_decompression_bomb_header_is_413_at_the_default_limit(width: int, height: int) -> None:
    result = decode_or_4xx(_png_claiming(width, height), "imaging: bombs", max_pixels=50_000_000)
    if width * height > 50_000_000:
        assert isinstance(result, PayloadTooLargeError)


def test_real_zlib_bomb_is_rejected_without_inflating() -> None:
    """A real 20000x20000 grey PNG (~400 MB of pixels) compresses to ~400 KB; it must be refused from its header."""
    row = b"\x00" + b"\x00" * 20000
    idat = zlib.compress(row * 20000, 9)
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
        + struct.pack(">I", len(idat))
        + b"IDAT"
        + idat
        + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
        + struct.pack(">I", 0)
        + b"IEND"
        + struct.pack(">I", zlib.crc32(b"IEND"))
    )
    assert len(data) < 1_000_000
    assert isinstance(decode_or_4xx(data, "imaging: bombs", max_pixels=50_000_000), PayloadTooLargeError)


def test_exif_orientation_is_ignored_like_cvat() -> None:
    """CVAT's handler does `Image.open(...).convert("RGB")` without EXIF transpose, and so must we: the stored
    pixel grid is returned, so the points CVAT sends (in stored-frame coordinates) stay aligned."""
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    result = decode_or_4xx(buffer.getvalue(), "imaging: exif")
    assert isinstance(result, np.ndarray)
    assert result.shape == (20, 40, 3)
    assert result[:, :15].mean() > 200 and result[:, 25:].mean() < 50


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 6), color) for color in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    result = decode_or_4xx(buffer.getvalue(), "imaging: animated")
    assert isinstance(result, np.ndarray) and result.shape == (6, 8, 3)
    assert result[..., 0].mean() > 200


def test_png_truncated_inside_its_pixel_data_is_400() -> None:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
    raw = buffer.getvalue()
    with pytest.raises(BadRequestError):
        decode_image(raw[: len(raw) // 2], MAX_PIXELS)
    count("imaging: truncated", "400")


# ------------------------------------------------------------------ base64
@fuzz_settings(400)
@given(st.text(max_size=512))
def test_base64_of_any_text_is_bytes_or_400(text: str) -> None:
    try:
        out = decode_base64(text)
    except BadRequestError as exc:
        assert exc.status == 400 and exc.message.startswith("image:")
        count("base64: any text", "400")
        return
    assert isinstance(out, bytes) and out
    count("base64: any text", "ok")


@fuzz_settings(300)
@given(st.binary(min_size=1, max_size=512), st.booleans(), st.integers(0, 76), st.booleans())
def test_base64_round_trip_with_data_url_and_line_breaks(data: bytes, data_url: bool, wrap: int, crlf: bool) -> None:
    text = base64.b64encode(data).decode()
    if wrap:
        sep = "\r\n" if crlf else "\n"
        text = sep.join(text[i : i + wrap] for i in range(0, len(text), wrap)) + sep
    if data_url:
        text = "data:image/png;base64," + text
    assert decode_base64(text) == data
    count("base64: round trip")


@fuzz_settings(200)
@given(st.binary(min_size=1, max_size=256))
def test_urlsafe_or_unpadded_base64_is_400_not_misdecoded(data: bytes) -> None:
    text = base64.urlsafe_b64encode(data).decode().rstrip("=")
    assume(text != base64.b64encode(data).decode())
    try:
        out = decode_base64(text)
    except BadRequestError:
        count("base64: url-safe/unpadded", "400")
        return
    assert out == data  # only when the text happens to be valid standard base64 too
    count("base64: url-safe/unpadded", "ok")
