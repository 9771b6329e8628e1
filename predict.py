"""Read the digit in your own images and add an addend to it, with the trained network.

    python predict.py my_digit.jpg --addend 7
    python predict.py sample_images/* --json
    python predict.py photo.png --show --figure photo_prediction.png

Each image (a photo or scan of one digit, any size, dark ink on light paper or
light on dark) is turned into an MNIST-style 28x28 input by
`image_preprocessing.preprocess_image`. Without --addend every image gets a random
addend 0-9. Bad input is reported as one `predict.py: error: ...` line on
stderr and exit status 2; the other images are still answered.
"""

import argparse
import json
import os
import sys

import numpy as np

PROG = "predict.py"


class UsageError(Exception):
    """A bad command line, reported in one line rather than argparse's usage block."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def addend(text):
    """argparse type: an integer 0-9."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer 0-9, got {text!r}") from None
    if not 0 <= value <= 9:
        raise argparse.ArgumentTypeError(f"must be an integer 0-9, got {value}")
    return value


def build_parser():
    parser = _Parser(prog=PROG, description="Predict the digit in each image and its sum with an addend.")
    add = parser.add_argument
    add("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...), one digit each")
    add("--addend", type=addend, help="the addend 0-9 for every image (default: a random one per image)")
    add("--model", default="model.zip", help="the trained model (default: %(default)s)")
    add("--json", action="store_true", help="print a JSON list instead of a table")
    add("--show", action="store_true", help="save a figure of the images, their inputs and predictions")
    add("--figure", default="prediction.png", help="where --show saves it (default: %(default)s)")
    return parser


def report(message):
    """Print one error line on stderr."""
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


def format_table(rows):
    """The predictions as an aligned text table, one row per image."""
    header = ("file", "digit", "p(digit)", "addend", "sum", "p(sum)")
    lines = [header] + [
        (
            row["file"],
            str(row["digit"]),
            f"{row['digit_probability']:.3f}",
            str(row["addend"]),
            str(row["sum"]),
            f"{row['sum_probability']:.3f}",
        )
        for row in rows
    ]
    widths = [max(map(len, column)) for column in zip(*lines, strict=True)]
    # The file name left-aligned, the numbers right-aligned.
    template = "  ".join([f"{{:<{widths[0]}}}"] + [f"{{:>{width}}}" for width in widths[1:]])
    return "\n".join(template.format(*line) for line in lines)


def predict_rows(model, files, images, addends):
    """One dict per image: file, digit, digit_probability, addend, sum, sum_probability."""
    from evaluate_func import predict_digit_and_sum

    predicted = predict_digit_and_sum(model, np.stack(images), addends)
    digits, sums = predicted["digit"], predicted["sum"]
    return [
        {
            "file": file,
            "digit": int(digits[i]),
            "digit_probability": float(predicted["digit_probability"][i, digits[i]]),
            "addend": int(addends[i]),
            "sum": int(sums[i]),
            "sum_probability": float(predicted["sum_probability"][i, sums[i]]),
        }
        for i, file in enumerate(files)
    ]


def save_figure(rows, images, path):
    """Save a figure of each answered image, its 28x28 network input and its predictions to `path`."""
    import matplotlib.pyplot as plt

    from helper_mnist import plot_outside_images
    from image_preprocessing import read_image

    originals = []
    for row in rows:
        pixels = np.rint(read_image(row["file"])).astype(np.uint8)
        originals.append(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    names = [row["file"] for row in rows]
    plt.close(plot_outside_images(originals, np.stack(images), rows, names=names, path=path))


def main(argv=None):
    """Run the command line; returns the exit status: 0, or 2 when any input was bad."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        report(f"{error} (see {PROG} --help)")
        return 2
    from data_creation import draw_addends  # Keras and TensorFlow load here, after the arguments passed
    from evaluate_func import load_saved_model
    from image_preprocessing import preprocess_image

    try:
        model = load_saved_model(args.model)
    except Exception as error:  # a broken model file fails in many ways: zipfile, zlib, h5py, Keras
        named = args.model in str(error)
        report(error if named else f"cannot load model file {args.model!r}: {type(error).__name__}: {error}")
        return 2
    files, images = [], []
    for file in args.images:
        try:
            images.append(preprocess_image(file))
        except (OSError, ValueError) as error:
            report(error)
            continue
        files.append(file)
    count = len(files)
    addends = draw_addends(count, np.random.default_rng()) if args.addend is None else [args.addend] * count
    rows = predict_rows(model, files, images, addends) if files else []
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(format_table(rows))
    status = 2 if len(files) < len(args.images) else 0
    if args.show and rows:
        try:
            save_figure(rows, images, args.figure)
        except (OSError, ValueError) as error:
            report(f"cannot save the figure to {args.figure!r}: {error}")
            return 2
        print(f"figure saved to {args.figure}", file=sys.stderr if args.json else sys.stdout)
    return status


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notes off stderr
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files; no window
    sys.exit(main())
