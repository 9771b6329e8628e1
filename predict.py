"""Read the digit in your own images and add an addend to it, with the trained network.

    python predict.py my_digit.jpg --addend 7
    python predict.py sample_images/* --json --show --figure prediction.png

Bad input gets one `predict.py: error: ...` line on stderr and exit status 2; the other images are still answered.
"""

import argparse
import json
import os
import sys

import numpy as np

PROG = "predict.py"
TABLE_ROW = (
    "{file:<{width}}  {digit:>5}  {digit_probability:>8.3f}  {looks:>6}  {addend:>6}  {sum:>3}  {sum_probability:>6.3f}"
)


def fail(message):
    """Print `message` as one error line on stderr; returns the exit status 2."""
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def format_table(rows):
    """The predictions as a text table, one row per image, the columns aligned."""
    width = max(len(name) for name in ["file"] + [row["file"] for row in rows])
    header = f"{'file':<{width}}  digit  p(digit)  digit?  addend  sum  p(sum)"
    lines = [TABLE_ROW.format(width=width, looks="yes" if row["looks_like_a_digit"] else "no", **row) for row in rows]
    return "\n".join([header, *lines])


def predict_rows(model, files, images, addends):
    """One dict per image: file, digit, digit_probability, looks_like_a_digit, addend, sum, sum_probability."""
    from evaluate_func import predict_digit_and_sum

    predicted = predict_digit_and_sum(model, np.stack(images), addends)
    return [
        {
            "file": file,
            "digit": int(predicted["digit"][i]),
            "digit_probability": float(predicted["digit_probability"][i].max()),
            "looks_like_a_digit": bool(predicted["looks_like_a_digit"][i]),
            "addend": int(addends[i]),
            "sum": int(predicted["sum"][i]),
            "sum_probability": float(predicted["sum_probability"][i].max()),
        }
        for i, file in enumerate(files)
    ]


def save_figure(rows, images, path):
    """Save a figure of each image, its 28x28 network input and its predictions."""
    import matplotlib.pyplot as plt

    from helper_mnist import plot_outside_images
    from image_preprocessing import read_image

    originals = [np.rint(read_image(row["file"])).astype(np.uint8) for row in rows]  # (H, W, 1) shows as grey
    plt.close(plot_outside_images(originals, np.stack(images), rows, names=[row["file"] for row in rows], path=path))


def main(argv=None):
    """Run the command line; returns the exit status: 0, or 2 when any input was bad."""
    parser = argparse.ArgumentParser(prog=PROG, description="Predict each image's digit and sum.", exit_on_error=False)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...), one digit each")
    parser.add_argument("--addend", type=int, choices=range(10), help="the addend (default: a random one per image)")
    parser.add_argument("--model", default="model.zip", help="the trained model (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--show", action="store_true", help="save a figure of the images, inputs and predictions")
    parser.add_argument("--figure", default="prediction.png", help="where --show saves it (default: %(default)s)")
    try:
        args = parser.parse_args(argv)
    except argparse.ArgumentError as error:  # exit_on_error=False: a bad value is reported in one line
        return fail(f"{error} (see {PROG} --help)")
    from quiet_keras import import_keras_quietly

    import_keras_quietly()  # only now, so that --help and typos are answered at once
    from data_creation import draw_addends
    from evaluate_func import load_saved_model
    from image_preprocessing import preprocess_image

    try:
        model = load_saved_model(args.model)
    except (OSError, ValueError) as error:  # what load_saved_model raises for a missing or broken file
        return fail(f"cannot load the model: {error}")
    status = 0
    files, images = [], []
    for file in args.images:
        try:
            images.append(preprocess_image(file))
            files.append(file)
        except (OSError, ValueError) as error:
            status = fail(error)
    addends = draw_addends(len(files), np.random.default_rng()) if args.addend is None else [args.addend] * len(files)
    rows = predict_rows(model, files, images, addends) if files else []
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(format_table(rows))
    if args.show and rows:
        try:
            save_figure(rows, images, args.figure)
        except (OSError, ValueError) as error:
            return fail(f"cannot save the figure to {args.figure!r}: {error}")
        print(f"figure saved to {args.figure}", file=sys.stderr if args.json else sys.stdout)  # keeps --json valid
    return status


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files; no window
    sys.exit(main())
