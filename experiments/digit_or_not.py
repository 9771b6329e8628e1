"""Is it a digit? Choose, and measure, the signal that tells a digit from a scribble.

    python experiments/digit_or_not.py              # about a minute with the committed model.zip

The network answers a digit for anything: a dot, a dash, a letter. Two scores of
the 28x28 input could tell: the digit head's top probability (its confidence)
and the input's ink (its mean pixel), which `preprocess_image` makes unusual for
a dot or a dash. Each score's threshold flags at most FLAGGED_DIGITS of MNIST's
validation digits; the rule (one score, or either) is chosen on non-digits
drawn with one seed, and then measured on MNIST's test digits and on non-digits
drawn with another seed. The non-digits are drawn the way the demo's canvas
draws: black strokes on a white 400x400 page, then `preprocess_image`.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's modules, from any directory

CANVAS, BRUSH = 400, 14  # the demo's canvas and brush, in pixels
KINDS = ("dot", "dash", "cross", "scribble", "letter", "strokes")
LETTERS = "ACEFHKMNPRTUVWXYaefhkmnrtuvwxy"  # letters that no one writes as a digit (no O, I, l, S, Z, B, g, q)
FLAGGED_DIGITS = 0.005  # this share of MNIST's validation digits is flagged: a margin under the 1% allowed
VALIDATION_SEED, TEST_SEED = 1, 2


# ----------------------------------------------------------------------------- non-digits


def draw_non_digit(kind, rng):
    """One non-digit of `kind` as a (400, 400) grey drawing: black strokes on white."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("L", (CANVAS, CANVAS), 255)
    pen = ImageDraw.Draw(page)
    centre = rng.uniform(0.3, 0.7, size=2) * CANVAS
    if kind == "dot":
        radius = rng.uniform(BRUSH / 2, 3 * BRUSH)
        pen.ellipse([*(centre - radius), *(centre + radius)], fill=0)
    elif kind == "dash":
        pen.line(segment(centre, rng.uniform(60, 250), rng.normal(0, 0.4)), fill=0, width=BRUSH)
    elif kind == "cross":
        angle, length = rng.uniform(0, np.pi / 2), rng.uniform(120, 250)
        for turn in (0, np.pi / 2):
            pen.line(segment(centre, length, angle + turn), fill=0, width=BRUSH)
    elif kind == "scribble":
        steps = np.cumsum(rng.normal(0, 40, size=(rng.integers(8, 20), 2)), axis=0)
        pen.line([tuple(point) for point in centre + steps], fill=0, width=BRUSH, joint="curve")
    elif kind == "letter":
        font = ImageFont.load_default(size=int(rng.uniform(180, 300)))
        pen.text(tuple(centre), str(rng.choice(list(LETTERS))), fill=0, font=font, anchor="mm")
    else:  # strokes: a few unrelated lines
        for _ in range(rng.integers(2, 5)):
            start = rng.uniform(0.15, 0.85, size=2) * CANVAS
            pen.line([tuple(start), tuple(start + rng.normal(0, 90, size=2))], fill=0, width=BRUSH)
    return np.asarray(page)


def segment(centre, length, angle):
    """The end points of a line of `length` through `centre` at `angle` (radians)."""
    half = length / 2 * np.array([np.cos(angle), np.sin(angle)])
    return [tuple(centre - half), tuple(centre + half)]


def non_digits(count_per_kind, seed):
    """`count_per_kind` inputs of each kind, preprocessed as the demo does: (N, 28, 28, 1) and their kinds."""
    from image_preprocessing import preprocess_image

    rng = np.random.default_rng(seed)
    kinds = [kind for kind in KINDS for _ in range(count_per_kind)]
    return np.stack([preprocess_image(draw_non_digit(kind, rng)) for kind in kinds]), np.array(kinds)


# ----------------------------------------------------------------------------- scores and rules


def scores(model, images):
    """The two scores of each input: the digit head's top probability, and the mean pixel (0-255)."""
    from evaluate_func import predict_digit_and_sum

    confidence = predict_digit_and_sum(model, images, 0)["digit_probability"].max(axis=1)
    return {"confidence": confidence, "ink": np.asarray(images, np.float64).reshape(len(images), -1).mean(axis=1)}


def thresholds(digit_scores, share):
    """Thresholds that flag `share` of the digits: confidence below its quantile; ink outside a central range."""
    return {
        "confidence": float(np.quantile(digit_scores["confidence"], share)),
        "ink": tuple(float(value) for value in np.quantile(digit_scores["ink"], [share / 2, 1 - share / 2])),
    }


def flagged(rule, limits, values):
    """Which inputs a rule flags: "confidence", "ink", or "either" of the two."""
    low_confidence = values["confidence"] < limits["confidence"]
    odd_ink = (values["ink"] < limits["ink"][0]) | (values["ink"] > limits["ink"][1])
    return {"confidence": low_confidence, "ink": odd_ink, "either": low_confidence | odd_ink}[rule]


def rule_limits(rule, digit_scores):
    """The thresholds of a rule, set so that it flags at most FLAGGED_DIGITS of `digit_scores`' digits."""
    return thresholds(digit_scores, FLAGGED_DIGITS / 2 if rule == "either" else FLAGGED_DIGITS)


# ----------------------------------------------------------------------------- the study


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model.zip")
    parser.add_argument("--data", metavar="PATH", help="mnist.npz (default: $MNIST_NPZ, else Keras' download)")
    parser.add_argument("--count", type=int, default=150, help="non-digits of each kind, per split")
    args = parser.parse_args(argv)
    from quiet_keras import import_keras_quietly

    import_keras_quietly()
    import train
    from data_creation import load_mnist
    from evaluate_func import load_saved_model

    model = load_saved_model(args.model)
    _, (x_val, _), (x_test, _) = train.split_mnist(load_mnist(args.data), train.SEED, quick=False)
    digits = {"validation": scores(model, x_val), "test": scores(model, x_test)}
    others = {}
    for split, seed in (("validation", VALIDATION_SEED), ("test", TEST_SEED)):
        images, kinds = non_digits(args.count, seed)
        others[split] = (scores(model, images), kinds)

    print("| rule | thresholds | MNIST validation digits flagged | validation non-digits flagged |")
    print("|---|---|--:|--:|")
    caught = {}
    for rule in ("confidence", "ink", "either"):
        limits = rule_limits(rule, digits["validation"])
        caught[rule] = flagged(rule, limits, others["validation"][0]).mean()
        print(f"| {rule} | {format_limits(rule, limits)} | {flagged(rule, limits, digits['validation']).mean():.2%} "
              f"| {caught[rule]:.1%} |")  # fmt: skip
    chosen = max(caught, key=caught.get)
    limits = rule_limits(chosen, digits["validation"])
    test_scores, test_kinds = others["test"]
    flags = flagged(chosen, limits, test_scores)
    print(f"\nchosen on validation: {chosen} ({format_limits(chosen, limits)})")
    print(f"test: MNIST test digits flagged {flagged(chosen, limits, digits['test']).mean():.2%} of {len(x_test)}; "
          f"non-digits flagged {flags.mean():.1%} of {len(flags)}")  # fmt: skip
    for kind in KINDS:
        print(f"  {kind:9} {flags[test_kinds == kind].mean():6.1%}")
    return 0


def format_limits(rule, limits):
    """The thresholds a rule uses, in words."""
    parts = {
        "confidence": f"confidence < {limits['confidence']:.4f}",
        "ink": "ink outside {:.1f}-{:.1f}".format(*limits["ink"]),
    }
    return parts[rule] if rule in parts else " or ".join(parts.values())


if __name__ == "__main__":
    sys.exit(main())
