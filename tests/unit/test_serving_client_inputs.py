"""Bad and careless input to serving.client (issue #16): what is refused, skipped or converted.

Same real sockets and in-process stand-in model as test_serving_client.py (its fixtures).
"""
from __future__ import annotations

import io
import os
import zlib

import numpy as np
import pytest
from PIL import Image

from modules import contract
from serving import client as client_module
from serving.client import ImageError, InputError, ServingClient, check_image, collect_paths
from tests.unit import test_serving_client as base
from tests.unit.test_serving_client import encode, expected, make_client, random_pixels

# The stand-in model served over real sockets: test_serving_client.py's fixtures.
saved_model_dir, in_process = base.saved_model_dir, base.in_process
_server, server = base._server, base.server


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height: a decompression bomb's header."""
    data = bytearray(encode(random_pixels(1)[0]))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # a valid IHDR checksum
    return bytes(data)


def webp(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="WEBP", lossless=True)
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# 12. Decompression bombs and large images
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("resize", [False, True])
def test_decompression_bomb_is_refused_in_one_line_naming_the_file(server, tmp_path, resize):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(50000, 50000))
    with make_client(server, "rest") as client:
        with pytest.raises(ImageError) as info:
            client.predict_paths([bomb], resize=resize)
    message = str(info.value)
    assert message.startswith(f"{bomb}: ") and "\n" not in message
    assert "50000x50000" in message or "decompression bomb" in message
    assert info.value.source == str(bomb)
    assert server.requests == []


def test_bomb_header_below_pillows_limit_is_refused_before_decoding():
    """100M pixels: Pillow only warns; the client refuses from the header either way."""
    with pytest.raises(ImageError, match=r"image #0: expected a 32x32 RGB .* got a 10000x10000"):
        check_image(png_declaring(10000, 10000), 0)
    with pytest.raises(ImageError, match="image #0: .*10000x10000 pixels, more than the "
                                         "40,000,000 this client decodes"):
        check_image(png_declaring(10000, 10000), 0, resize=True)


def test_large_real_png_is_refused_from_its_header_and_resized_on_request(server):
    big = encode(np.ascontiguousarray(np.broadcast_to(
        np.arange(2000, dtype=np.uint8)[:, None, None], (2000, 2000, 3))))
    with make_client(server, "rest") as client:
        with pytest.raises(ImageError, match="image #0: expected a 32x32 RGB PNG, JPEG or WebP, "
                                             "got a 2000x2000 RGB PNG"):
            client.predict_images([big])
        assert server.requests == []
        (prediction,) = client.predict_images([big], resize=True)
    assert prediction.class_name in contract.CLASS_NAMES


def test_oversized_file_is_named_and_not_read(server, tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "MAX_FILE_BYTES", 100)
    huge = tmp_path / "huge.png"
    huge.write_bytes(encode(random_pixels(1)[0]))
    with make_client(server, "rest") as client:
        with pytest.raises(ImageError, match=rf"^{huge}: file is [\d,]+ bytes, more than the "
                                             r"100 this client reads$"):
            client.predict_paths([huge])


# --------------------------------------------------------------------------------------------
# 16. A folder of mixed files
# --------------------------------------------------------------------------------------------
@pytest.fixture
def mixed_folder(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    pixels = random_pixels(4, seed=21)
    (folder / "a.png").write_bytes(encode(pixels[0]))
    (folder / "b.webp").write_bytes(webp(pixels[1]))
    (folder / "chat_été_猫.png").write_bytes(encode(pixels[2]))
    (folder / "notes.txt").write_text("not an image")
    (folder / "truncated.jpg").write_bytes(encode(pixels[3], "JPEG")[:100])
    (folder / "nested").mkdir()
    (folder / "nested" / "inner.png").write_bytes(encode(pixels[3]))
    outside = tmp_path / "outside.png"
    outside.write_bytes(encode(pixels[3]))
    (folder / "link.png").symlink_to(outside)
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    return folder, pixels


def test_mixed_folder_lists_every_skipped_file_and_answers_the_rest(server, in_process,
                                                                    mixed_folder, caplog):
    folder, pixels = mixed_folder
    with make_client(server, "rest") as client:
        predictions = client.predict_paths([folder])
    answered = [os.path.basename(p.source) for p in predictions]
    assert answered == ["a.png", "b.webp", "chat_été_猫.png", "link.png"]
    want = expected(in_process, contract.SERVING_SIGNATURE,
                    image_bytes=[encode(pixels[i]) for i in (0, 1, 2, 3)])
    np.testing.assert_allclose([p.probabilities for p in predictions],
                               want[contract.PROBABILITIES_OUTPUT], rtol=1e-6, atol=1e-7)
    reasons = {os.path.basename(s.path): s.reason for s in predictions.skipped}
    assert reasons == {
        "dangling.png": "broken symbolic link",
        "nested": "a folder (folders are not searched recursively)",
        "notes.txt": "not an image file (accepted: .png, .jpg, .jpeg, .webp)",
        "truncated.jpg": reasons["truncated.jpg"],
    }
    assert reasons["truncated.jpg"].startswith("image cannot be decoded")
    logged = [r.getMessage() for r in caplog.records if r.name == "serving.client"]
    assert logged == [f"skipped {s}" for s in predictions.skipped]
    assert len(server.requests) == 1 and server.batch_sizes == [4]


def test_webp_is_converted_to_png_before_sending(server):
    pixels = random_pixels(1, seed=31)[0]
    converted = check_image(webp(pixels), "x.webp")
    assert converted.startswith(b"\x89PNG\r\n\x1a\n")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(converted))), pixels)


def test_collect_paths_keeps_explicit_files_and_refuses_missing_ones(tmp_path, mixed_folder):
    folder, _ = mixed_folder
    files, skipped = collect_paths([folder / "notes.txt", folder / "a.png"])
    assert files == [str(folder / "notes.txt"), str(folder / "a.png")] and skipped == []
    with pytest.raises(ImageError, match="dangling.png: broken symbolic link"):
        collect_paths([folder / "dangling.png"])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    with pytest.raises(InputError, match="empty: folder has no .png/.jpg/.jpeg/.webp files"):
        collect_paths([empty])


def test_explicit_text_file_is_named(server, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with make_client(server, "rest") as client:
        with pytest.raises(ImageError, match=rf"^{notes}: not an image Pillow can read"):
            client.predict_paths([notes])


# --------------------------------------------------------------------------------------------
# What a careless user sends
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_other_modes_are_refused_unless_resize(server, mode):
    out = io.BytesIO()
    Image.fromarray(random_pixels(1)[0]).convert(mode).save(out, format="PNG")
    image = out.getvalue()
    with make_client(server, "rest") as client:
        with pytest.raises(ImageError, match=f"image #0: expected a 32x32 RGB PNG, JPEG or WebP, "
                                             f"got a 32x32 {mode} PNG"):
            client.predict_images([image])
        assert len(client.predict_images([image], resize=True)) == 1


def test_sixteen_bit_gray_is_scaled_to_eight_bits_when_resized():
    """Pillow's convert("RGB") clipped 16-bit gray at 255: every such photo came out white and
    got another class than its 8-bit copy. Float pixels (mode F) have no known range: refused."""
    gray = np.random.default_rng(0).integers(0, 65536, size=(40, 40), dtype=np.uint16)
    sixteen, eight = io.BytesIO(), io.BytesIO()
    Image.fromarray(gray).save(sixteen, format="PNG")
    Image.fromarray(((gray.astype(np.int64) + 128) // 257).astype(np.uint8)).save(eight,
                                                                                  format="PNG")
    assert Image.open(io.BytesIO(sixteen.getvalue())).mode == "I;16"

    def pixels(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(check_image(data, "g.png", resize=True))))

    np.testing.assert_array_equal(pixels(sixteen.getvalue()), pixels(eight.getvalue()))
    floats = io.BytesIO()
    Image.fromarray(gray.astype(np.float32)).save(floats, format="TIFF")
    with pytest.raises(ImageError, match=r"^f.tif: has floating-point pixels \(mode F\)"):
        check_image(floats.getvalue(), "f.tif", resize=True)


@pytest.mark.parametrize("value", [b"", "a string", None, 42])
def test_non_bytes_images_are_refused(value):
    with pytest.raises(ImageError, match="image #3: "):
        check_image(value, 3)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_nonpositive_batch_size_is_refused(batch_size):
    with pytest.raises(ValueError, match=f"batch_size must be >= 1, got {batch_size}"):
        ServingClient(rest_url="http://127.0.0.1:1", batch_size=batch_size)


def test_empty_inputs_send_nothing(server):
    with make_client(server, "rest") as client:
        assert client.predict_images([]) == []
        assert client.predict_pixels(np.zeros((0, 32, 32, 3), np.uint8)) == []
    assert server.requests == []


@pytest.mark.parametrize("pixels,message", [
    (np.zeros((1, 32, 32, 3), np.int64), "pixels must be uint8, got int64"),
    (np.zeros((1, 32, 32, 4), np.uint8), r"got \[1, 32, 32, 4\]"),
    (np.zeros((1, 16, 64, 3), np.uint8), r"got \[1, 16, 64, 3\]"),
    (np.zeros((3072,), np.uint8), r"got \[3072\]"),
])
def test_wrong_pixels_are_refused_before_sending(pixels, message):
    with pytest.raises(InputError, match=message):
        ServingClient(rest_url="http://127.0.0.1:1").predict_pixels(pixels)
