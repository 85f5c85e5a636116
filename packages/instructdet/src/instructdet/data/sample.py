"""A handful of real photos with our own box annotations, for the offline demo and tests.

The photos are scikit-image's bundled sample images (``skimage.data``: astronaut, coffee, chelsea,
coins, rocket, motorcycle_left; no download). The boxes and expressions were written for this
package by looking at the images; they are coarse but honest referring annotations.
"""

from __future__ import annotations

from PIL import Image

from instructdet.data.records import Record, normalize_record

__all__ = ["SAMPLE_ANNOTATIONS", "sample_records", "sample_image", "sample_image_loader"]

# filename -> (width, height, [(box xywh, [expressions], category)])
SAMPLE_ANNOTATIONS: dict[str, tuple[int, int, list[tuple[list[float], list[str], str]]]] = {
    "astronaut.png": (
        512,
        512,
        [
            (
                [20, 15, 345, 497],
                ["the woman in the orange space suit", "astronaut smiling at the camera"],
                "person",
            ),
            (
                [275, 343, 230, 169],
                ["the white helmet in the lower right", "space helmet on the table"],
                "helmet",
            ),
            ([0, 0, 95, 512], ["the american flag on the left"], "flag"),
            (
                [352, 0, 118, 285],
                ["the model space shuttle", "small shuttle model behind her"],
                "shuttle",
            ),
            ([133, 345, 79, 80], ["the round patch on her chest"], "patch"),
        ],
    ),
    "coffee.png": (
        600,
        400,
        [
            ([172, 18, 240, 287], ["the cup of coffee", "white and red espresso cup"], "cup"),
            ([75, 85, 405, 305], ["the red saucer", "plate under the cup"], "saucer"),
            ([322, 65, 103, 262], ["the silver spoon", "spoon on the right of the cup"], "spoon"),
        ],
    ),
    "chelsea.png": (
        451,
        300,
        [
            ([0, 0, 451, 300], ["the tabby cat", "cat looking at the camera"], "cat"),
            ([133, 83, 72, 65], ["the green eye on the left"], "eye"),
            ([295, 105, 50, 60], ["the cat's right eye", "eye on the right"], "eye"),
            ([232, 222, 60, 45], ["the pink nose"], "nose"),
        ],
    ),
    "coins.png": (
        384,
        303,
        [
            ([20, 30, 48, 45], ["coin on the far left of the top row"], "coin"),
            ([80, 35, 40, 40], ["second coin in the top row"], "coin"),
            ([130, 28, 50, 48], ["third coin in the top row"], "coin"),
            ([305, 12, 60, 70], ["the large coin in the top right corner"], "coin"),
            ([245, 95, 50, 50], ["coin with a face in the second row"], "coin"),
            ([315, 155, 63, 65], ["the big coin on the right of the third row"], "coin"),
            ([15, 232, 60, 58], ["coin in the bottom left corner"], "coin"),
            ([335, 245, 40, 45], ["small coin in the bottom right corner"], "coin"),
        ],
    ),
    "rocket.jpg": (
        640,
        427,
        [
            (
                [303, 125, 35, 285],
                ["the white rocket on the launch pad", "rocket in the middle"],
                "rocket",
            ),
            ([0, 0, 90, 427], ["the tall tower on the left"], "tower"),
            ([558, 0, 82, 427], ["the tower on the far right"], "tower"),
            ([165, 120, 45, 307], ["the thin tower left of the rocket"], "tower"),
            ([437, 120, 45, 300], ["the thin tower right of the rocket"], "tower"),
        ],
    ),
    "motorcycle_left.png": (
        741,
        500,
        [
            (
                [90, 95, 595, 355],
                ["the red motorcycle", "motorbike parked in the garage"],
                "motorcycle",
            ),
            ([40, 105, 245, 200], ["the wooden bench behind the bike"], "bench"),
            ([612, 180, 85, 95], ["cardboard box on the lower shelf"], "box"),
            ([525, 30, 70, 70], ["brown box on the top shelf"], "box"),
        ],
    ),
}


def sample_image(filename: str) -> Image.Image:
    """The scikit-image sample photo ``filename`` as an RGB PIL image (read from the installed
    ``skimage/data`` folder, no download)."""
    if filename not in SAMPLE_ANNOTATIONS:
        raise ValueError(
            f"unknown sample image {filename!r}; valid names are {sorted(SAMPLE_ANNOTATIONS)}"
        )
    try:
        from importlib import resources

        path = resources.files("skimage") / "data" / filename
    except ModuleNotFoundError as err:  # pragma: no cover - scikit-image is a dependency
        raise ImportError(
            "the sample photos come from scikit-image: pip install scikit-image"
        ) from err
    if not path.is_file():
        raise FileNotFoundError(f"scikit-image does not ship {filename} in this version ({path})")
    with path.open("rb") as fh, Image.open(fh) as im:
        return im.convert("RGB")


def sample_records(names: list[str] | None = None) -> list[Record]:
    """Working records of the sample photos (all six by default)."""
    out = []
    for name in names or list(SAMPLE_ANNOTATIONS):
        if name not in SAMPLE_ANNOTATIONS:
            raise ValueError(
                f"unknown sample image {name!r}; valid names are {sorted(SAMPLE_ANNOTATIONS)}"
            )
        width, height, objects = SAMPLE_ANNOTATIONS[name]
        record = {
            "filename": name,
            "height": height,
            "width": width,
            "source": "skimage",
            "bboxes": [
                {"bbox": [list(map(float, box))], "expressions": list(exprs), "category_name": cat}
                for box, exprs, cat in objects
            ],
        }
        out.append(normalize_record(record))
    return out


_CACHE: dict[str, Image.Image] = {}


def sample_image_loader(record: Record) -> Image.Image:
    """Image loader for :class:`~instructdet.pipeline.runner.Pipeline` over the sample records."""
    name = str(record["filename"])
    if name not in _CACHE:
        _CACHE[name] = sample_image(name)
    return _CACHE[name]
