import itertools

from PIL import Image

from locator.preprocessing import Preprocessing


def _made_by_resizing(preprocessing: Preprocessing) -> set[tuple[int, int]]:
    """Brute force: the (height, width) of the tensor made from a photo of every size up to 1,300 px a side."""
    sides = range(1, 1301, 3)
    return {preprocessing.target_size(w, h)[::-1] for w, h in itertools.product(sides, sides)}


def test_shapes_are_exactly_the_shapes_that_resizing_makes():
    for preprocessing in (Preprocessing(), Preprocessing(size=320), Preprocessing(size=96, bucket=16),
                          Preprocessing(square=True)):
        shapes = preprocessing.shapes()
        assert len(shapes) == len(set(shapes))
        assert set(shapes) == _made_by_resizing(preprocessing), preprocessing


def test_exact_aspects_give_the_common_photo_shapes():
    preprocessing = Preprocessing(bucket=0)
    shapes = preprocessing.shapes()
    assert set(shapes) <= _made_by_resizing(preprocessing)
    for width, height in ((4000, 3000), (3000, 4000), (1920, 1080), (6000, 4000), (1000, 1000)):
        assert preprocessing.to_tensor(Image.new("RGB", (width, height))).shape[1:] in shapes
