import io

import numpy as np
import pytest
from PIL import Image

from locator.images import ImageLoadError, load_image, longest_side


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("CMYK", "JPEG"), ("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"),
                                      ("1", "PNG"), ("RGB", "WEBP")])
def test_every_mode_becomes_rgb(tmp_path, mode, fmt):
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(_encode(Image.new("RGB", (16, 12), (200, 30, 40)).convert(mode), fmt))
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (16, 12)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels = np.asarray(load_image(path))
    assert pixels[0, :, 0].tolist() == [0, 128, 255]


def test_transparent_pixels_are_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    pixels = np.asarray(load_image(_encode(rgba, "PNG")))
    assert (pixels == 255).all()
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30] * 256)
    assert (np.asarray(load_image(_encode(palette, "PNG", transparency=0))) == 255).all()


def test_exif_orientation_is_applied_and_all_metadata_dropped(tmp_path):
    base = Image.new("RGB", (40, 20), (0, 0, 255))
    base.paste((255, 0, 0), (0, 0, 10, 20))  # left strip red
    exif = Image.Exif()
    exif[274] = 6  # rotate 90° clockwise to display
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 0.0), 3: "E", 4: (2.0, 21.0, 0.0)})
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_encode(base, "JPEG", exif=exif, comment=b"Paris, 48.85N 2.35E", quality=95))
    image = load_image(path)
    assert image.size == (20, 40)
    top = np.asarray(image)[2, 10]
    assert top[0] > 200 and top[2] < 60  # the red strip is now on top
    assert image.info == {} and len(image.getexif()) == 0
    assert image.getexif().get_ifd(0x8825) == {}


@pytest.mark.parametrize("content,message", [
    (b"", "empty file"),
    (b"just some text, not a photo\n", "not an image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 50, "corrupt or truncated|not an image"),
])
def test_bad_files_give_one_clear_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "holiday 01.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=message) as info:
        load_image(path)
    assert "holiday 01.jpg" in str(info.value)


def test_truncated_jpeg_is_an_error(tmp_path):
    rng = np.random.default_rng(0)
    data = _encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="cut.jpg: corrupt or truncated"):
        load_image(path)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ImageLoadError, match="gone.jpg: cannot read file"):
        load_image(tmp_path / "gone.jpg")


def test_decompression_bomb_limit_is_kept(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(_encode(Image.new("L", (200, 200)), "PNG"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(ImageLoadError, match="bomb.png: refused as a possible decompression bomb"):
        load_image(path)
    assert Image.MAX_IMAGE_PIXELS == 10_000


def test_bytes_are_accepted_with_a_name():
    data = _encode(Image.new("RGB", (8, 8)), "PNG")
    assert load_image(data, name="shard-3#42").size == (8, 8)
    with pytest.raises(ImageLoadError, match="shard-3#43"):
        load_image(b"garbage", name="shard-3#43")


def _smooth_jpeg(width: int, height: int, **save) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=92, **save)
    return buffer.getvalue()


def test_large_jpegs_decode_at_a_reduced_scale_that_still_covers_the_resize_target():
    data = _smooth_jpeg(1600, 1200)
    assert load_image(data).size == (1600, 1200)
    assert load_image(data, draft_to=longest_side(300)).size == (400, 300)  # 1/4: the smallest covering 300 px
    assert load_image(data, draft_to=longest_side(150)).size == (200, 150)  # 1/8
    assert load_image(data, draft_to=longest_side(900)).size == (1600, 1200)  # less than twice: decoded in full
    assert load_image(_smooth_jpeg(500, 400), draft_to=longest_side(300)).size == (500, 400)
    png = io.BytesIO()
    Image.new("RGB", (1600, 1200)).save(png, "PNG")
    assert load_image(png.getvalue(), draft_to=longest_side(300)).size == (1600, 1200)  # only JPEGs have DCT scales


def test_square_and_elongated_targets_are_covered_on_both_sides():
    from locator.preprocessing import Preprocessing
    square = Preprocessing(size=300, square=True)
    assert load_image(_smooth_jpeg(2400, 1200), draft_to=square.draft_to).size == (600, 300)  # not 300 × 150
    panorama = Preprocessing(size=300)  # 300 × 32 after resizing: the short side snaps up to one bucket
    assert load_image(_smooth_jpeg(4800, 200), draft_to=panorama.draft_to).size == (1200, 50)  # 1/4, not 1/8


def test_a_reduced_decode_resizes_to_nearly_the_same_pixels():
    from locator.preprocessing import Preprocessing
    data = _smooth_jpeg(2400, 1800)
    drafted, full = Preprocessing(draft=True), Preprocessing(draft=False)
    a = drafted.to_tensor(load_image(data, draft_to=drafted.draft_to))
    b = full.to_tensor(load_image(data, draft_to=full.draft_to))
    assert a.shape == b.shape == (3, 224, 300)
    assert float((a - b).abs().mean()) < 0.01  # normalised units: pixels in [-1, 1]


def test_exif_rotated_jpegs_are_drafted_upright():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image = load_image(_smooth_jpeg(1600, 1200, exif=exif.tobytes()), draft_to=longest_side(300))
    assert image.size == (300, 400)
