"""Scans of MNIST test digits with strokes of every width, to check preprocess_image's stroke width (issue #25).

    python tools/stroke_test_images.py --write OUT_DIR   # the pictures as OUT_DIR/<kind>_<margin>/<n>_<digit>.png
    python tools/stroke_test_images.py                   # the committed model's score and the inputs' ink per kind

Three kinds: "low_res" (a digit shrunk to 8-16 px, blurred and enlarged, as a scan of a small digit is), "thick"
(a brush about twice as wide as MNIST's pen) and "thin" (a fine pen, the control); each cropped tight to
the digit or on a wide margin of paper, dark ink on light paper. The same MNIST test digits are drawn in every kind,
and the seed makes every run draw the same pictures.
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import filters, morphology, transform

KINDS = ("low_res", "thick", "thin")
MARGINS = ("tight", "wide")
DIGIT_SIDE = 160  # the digit's longer side in the pictures, pixels
SEED = 25


def stroke_test_images(kind, margin, digits, labels, count=300, seed=SEED):
    """`count` uint8 grey pictures of MNIST digits (`digits`, (N, 28, 28)) drawn as `kind` on `margin`, and
    their labels. Every kind and margin draws the same digits for one seed."""
    picked = np.random.default_rng(seed).choice(len(digits), count, replace=False)
    rng = np.random.default_rng([seed, KINDS.index(kind), MARGINS.index(margin)])
    pictures = [_on_paper(_DRAW[kind](_cropped(digits[i] / 255), rng), margin, rng) for i in picked]
    return pictures, np.asarray(labels)[picked]


def _cropped(digit):
    rows, cols = np.nonzero(digit)
    return digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _enlarged(digit, order=3):
    """The digit's ink (0-1) with its longer side DIGIT_SIDE pixels."""
    return np.clip(transform.rescale(digit, DIGIT_SIDE / max(digit.shape), order=order), 0, 1)


def _low_res(digit, rng):
    side = rng.integers(8, 17)  # the digit's longer side in the scan
    small = transform.rescale(digit, side / max(digit.shape), anti_aliasing=True)
    ink = _enlarged(filters.gaussian(small, rng.uniform(0.5, 1)), order=1)
    return ink / ink.max()


def _thick(digit, rng):
    brush = morphology.disk(round(rng.uniform(0.04, 0.08) * DIGIT_SIDE))  # widens the strokes by 8-16% of the digit
    return filters.gaussian(morphology.dilation(_enlarged(digit) > 0.5, brush).astype(float), 1)


def _thin(digit, rng):
    pen = morphology.disk(rng.integers(1, 3))  # 3-5 px wide
    path = morphology.skeletonize(filters.gaussian(_enlarged(digit), 4) > 0.5)  # smoothed first: no stray branches
    return filters.gaussian(morphology.dilation(path, pen).astype(float), 1)


_DRAW = {"low_res": _low_res, "thick": _thick, "thin": _thin}


def _on_paper(ink, margin, rng):
    """The ink as dark ink on light grainy paper, cropped to it ("tight") or with a wide margin ("wide")."""
    rows, cols = np.nonzero(ink > 0.05)
    ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    ink = np.pad(ink, round(rng.uniform(0.5, 1) * DIGIT_SIDE) if margin == "wide" else rng.integers(0, 3))
    paper, dark = rng.uniform(200, 245), rng.uniform(20, 70)
    return np.clip(paper - (paper - dark) * ink + rng.normal(0, 3, ink.shape), 0, 255).astype(np.uint8)


def mnist_stroke_width(image):
    """A 28x28 image's stroke width in pixels: twice the median distance from its skeleton to the paper, at 8x."""
    mask = transform.rescale(np.squeeze(image) / 255, 8, order=3) > 0.5
    distance = ndimage.distance_transform_edt(mask)
    return (2 * np.median(distance[morphology.skeletonize(mask)]) - 1) / 8


def _score(digits, labels, count):
    """Print the committed model's share read right, the inputs' mean ink and stroke width per kind."""
    from evaluate_func import load_saved_model, predict_digit_and_sum
    from image_preprocessing import preprocess_image

    model = load_saved_model(Path(__file__).resolve().parents[1] / "model.zip")
    width = np.median([mnist_stroke_width(image) for image in digits[:1000]])
    print(f"MNIST test: mean ink {digits.mean():.1f}, median stroke width {width:.2f} px (first 1000)")
    print("kind     margin  images  no digit  read right  mean ink  stroke width")
    for kind in KINDS:
        for margin in MARGINS:
            pictures, truth = stroke_test_images(kind, margin, digits, labels, count)
            found = [_found(preprocess_image, picture) for picture in pictures]
            inputs = np.stack([image for image in found if image is not None])
            read = np.full(count, -1)  # no digit found: read wrong
            read[[image is not None for image in found]] = predict_digit_and_sum(model, inputs, 0)["digit"]
            width = np.median([mnist_stroke_width(image) for image in inputs])
            columns = f"{count:>6}  {count - len(inputs):>8}  {np.mean(read == truth):>10.1%}  {inputs.mean():>8.1f}"
            print(f"{kind:<8} {margin:<6}  {columns}  {width:>12.2f}")


def _found(preprocess_image, picture):
    """preprocess_image's 28x28 input, or None where it finds no digit."""
    try:
        return preprocess_image(picture)
    except ValueError:
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", metavar="OUT_DIR", help="write the pictures here instead of scoring them")
    parser.add_argument("--count", type=int, default=300, help="pictures per kind and margin (default: %(default)s)")
    args = parser.parse_args()
    from data_creation import load_mnist

    _, (digits, labels) = load_mnist()
    if not args.write:
        return _score(digits, labels, args.count)
    for kind in KINDS:
        for margin in MARGINS:
            folder = Path(args.write) / f"{kind}_{margin}"
            folder.mkdir(parents=True, exist_ok=True)
            pictures, truth = stroke_test_images(kind, margin, digits, labels, args.count)
            for n, (picture, digit) in enumerate(zip(pictures, truth, strict=True)):
                Image.fromarray(picture).save(folder / f"{n:03d}_{digit}.png")


if __name__ == "__main__":
    main()
