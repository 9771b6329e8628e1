"""Does it add? Train with some (digit, addend) pairs withheld, then ask the network for exactly those sums.

    python experiments/unseen_pairs.py                       # every head x withheld set x seeds 0-3, 4 epochs
    python experiments/unseen_pairs.py --heads number_line --withheld latin10 --seeds 0
    python experiments/unseen_pairs.py --withheld all --epochs 18   # the full recipe, no pair withheld

A network that has learned to add answers a pair it never saw as well as one
it saw; a network that has learned the addition table by rote has no answer
for a cell that training never filled. Each run is train.py's `train_model`
with `sum_head` and `allowed_pairs`: the training and validation images meet
only the allowed pairs. Every test image is then paired with each of the ten
addends and the sums are scored separately on seen and unseen pairs.

Each finished run is appended to the results file (CSV) at once; a run already
there is skipped, so a killed study continues where it stopped.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's modules, from any directory

from data_creation import NUM_DIGITS  # noqa: E402  (after the path is set)
from results_file import append_result, mean_and_sd, read_results  # noqa: E402

RESULTS_FILE = Path(__file__).with_name("unseen_pairs.csv")
QUICK_RESULTS = Path("runs/quick/unseen_pairs.csv")
EPOCHS = 4  # train.py's recipe, shortened: its schedule, weight average and augmentation (last 2 epochs plain)
SEEDS = (0, 1, 2, 3)
HEADS = ("outer_product", "concat_mlp", "number_line")
WITHHELD_SETS = ("latin10", "keep50", "keep20", "keep10")
PAIR_SET_SEED = 2026  # the kept pairs of the keepK sets are drawn once, the same for every head and seed
FIELDS = (
    "head", "withheld", "seed", "epochs", "train_images", "head_parameters", "withheld_pairs",
    "test_digit_accuracy", "test_sum_accuracy", "seen_sum_accuracy", "unseen_sum_accuracy",
    "best_epoch", "val_digit_accuracy", "val_sum_accuracy", "training_seconds", "cpu", "instruction_set",
)  # fmt: skip


# ----------------------------------------------------------------------------- which pairs training sees


def allowed_pairs(name):
    """The (10 digits, 10 addends) table of the pairs training may draw, True where allowed, for a set named
    "all" (nothing withheld), "latin10" (digit d never meets addend (3d + 1) mod 10: ten pairs, every digit
    and every addend withheld once) or "keepK" (only K of the 100 pairs kept, every digit and addend in one
    of them at least)."""
    if name == "all":
        return np.ones((NUM_DIGITS, NUM_DIGITS), bool)
    if name == "latin10":
        table = np.ones((NUM_DIGITS, NUM_DIGITS), bool)
        digits = np.arange(NUM_DIGITS)
        table[digits, (3 * digits + 1) % NUM_DIGITS] = False
        return table
    if name.startswith("keep") and name[4:].isdigit() and NUM_DIGITS <= int(name[4:]) <= NUM_DIGITS**2:
        return kept_pairs(int(name[4:]), np.random.default_rng(PAIR_SET_SEED))
    raise ValueError(f"unknown withheld set {name!r}: use 'all', 'latin10' or 'keepK' with K from 10 to 100")


def kept_pairs(count, rng):
    """A random table that allows `count` pairs: a random matching of digits to addends (so each of them is
    kept once), then `count - 10` more pairs drawn at random from the rest."""
    table = np.zeros((NUM_DIGITS, NUM_DIGITS), bool)
    table[np.arange(NUM_DIGITS), rng.permutation(NUM_DIGITS)] = True
    rest = np.flatnonzero(~table)
    table.flat[rng.choice(rest, count - NUM_DIGITS, replace=False)] = True
    return table


# ----------------------------------------------------------------------------- scoring


def score_pairs(model, images, digits, table):
    """Digit accuracy, and sum accuracy on the allowed ("seen") and withheld ("unseen") pairs, with every
    image asked for the sum with each of the ten addends."""
    from evaluate_func import predict_digit_and_sum

    digits = np.asarray(digits, dtype=np.int64)
    hits = np.zeros((len(images), NUM_DIGITS), bool)  # image x addend: the sum was right
    for addend in range(NUM_DIGITS):
        predicted = predict_digit_and_sum(model, images, addend)
        hits[:, addend] = predicted["sum"] == digits + addend
    seen = table[digits]  # image x addend: the pair was allowed in training
    return {
        "test_digit_accuracy": float(np.mean(predicted["digit"] == digits)),  # the same for every addend
        "seen_sum_accuracy": float(hits[seen].mean()),
        "unseen_sum_accuracy": float(hits[~seen].mean()) if (~seen).any() else float("nan"),
    }


def head_parameters(model):
    """The parameters of the sum head: the model's less those of its image -> digit branch."""
    import keras

    digit_branch = keras.Model(model.get_layer("image").output, model.get_layer("digit").output)
    return model.count_params() - digit_branch.count_params()


# ----------------------------------------------------------------------------- the runs


def run_one(head, withheld, seed, epochs, data_path=None, quick=False):
    """Train one network with `withheld`'s pairs kept from it and return its row of results."""
    import keras

    import train
    from data_creation import load_mnist
    from run_bookkeeping import read_log

    table = allowed_pairs(withheld)
    with tempfile.TemporaryDirectory(prefix="unseen_pairs-") as work_dir:
        model, results = train.train_model(
            data_path, epochs, seed=seed, work_dir=work_dir, quick=quick, verbose=0, sum_head=head,
            allowed_pairs=None if withheld == "all" else table,  # None: train.py's own draws, bit for bit
        )  # fmt: skip
        log = read_log(Path(work_dir) / train.HISTORY_FILE)
    best = min(range(len(log)), key=lambda epoch: log[epoch]["val_loss"])
    _, (x_test, y_test) = load_mnist(data_path)
    if quick:
        x_test, y_test = x_test[: train.QUICK["test_images"]], y_test[: train.QUICK["test_images"]]
    row = {
        "head": head,
        "withheld": withheld,
        "seed": seed,
        "epochs": epochs,
        "train_images": results["settings"]["train_images"],
        "head_parameters": head_parameters(model),
        "withheld_pairs": int((~table).sum()),
        **score_pairs(model, x_test, y_test, table),
        "test_sum_accuracy": results["test_sum_accuracy"],  # the test images with their usual random addends
        "best_epoch": best + 1,
        "val_digit_accuracy": log[best]["val_digit_accuracy"],
        "val_sum_accuracy": log[best]["val_sum_accuracy"],
        "training_seconds": results["training_seconds"],
        "cpu": results["machine"]["cpu"],
        "instruction_set": results["machine"]["instruction_set"],
    }
    keras.backend.clear_session(free_memory=True)
    return row


def summary_table(rows):
    """Markdown: per head and withheld set, the mean and standard deviation over seeds of each accuracy."""
    groups = {}
    for row in rows:
        groups.setdefault((row["head"], row["withheld"], row["epochs"]), []).append(row)
    fields = ("test_digit_accuracy", "test_sum_accuracy", "seen_sum_accuracy", "unseen_sum_accuracy")
    lines = [
        "| head | withheld | epochs | seeds | head params | test digit % | test sum % | seen sums % | unseen sums % |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for (head, withheld, epochs), runs in groups.items():
        cells = [mean_and_sd([100 * float(run[field]) for run in runs]) for field in fields]
        lines.append(
            f"| {head} | {withheld} | {epochs} | {len(runs)} | {runs[0]['head_parameters']} | {' | '.join(cells)} |"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    from network_architecture import SUM_HEADS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="+", choices=sorted(SUM_HEADS), default=HEADS)
    parser.add_argument("--withheld", nargs="+", default=WITHHELD_SETS, help="all, latin10 or keepK (K = 10-100)")
    parser.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--data", metavar="PATH", help="mnist.npz (default: $MNIST_NPZ, else Keras' download)")
    parser.add_argument("--results", type=Path, help=f"CSV file (default {RESULTS_FILE}; {QUICK_RESULTS} with --quick)")
    parser.add_argument("--quick", action="store_true", help="train.py's small subset, for a look in a minute")
    args = parser.parse_args(argv)
    args.results = args.results or (QUICK_RESULTS if args.quick else RESULTS_FILE)
    for name in args.withheld:
        try:
            allowed_pairs(name)
        except ValueError as error:
            parser.error(str(error))
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    return args


def main(argv=None):
    from quiet_keras import import_keras_quietly

    args = parse_args(argv)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    import_keras_quietly()
    done = {(row["head"], row["withheld"], int(row["seed"]), int(row["epochs"])) for row in read_results(args.results)}
    for seed in args.seeds:  # seeds outermost: a study cut short still compares every head and set
        for withheld in args.withheld:
            for head in args.heads:
                if (head, withheld, seed, args.epochs) in done:
                    continue
                row = run_one(head, withheld, seed, args.epochs, args.data, args.quick)
                append_result(args.results, row, FIELDS)
                print(
                    f"{head:13} {withheld:8} seed {seed}: digit {row['test_digit_accuracy']:.2%}, "
                    f"seen sums {row['seen_sum_accuracy']:.2%}, unseen sums {row['unseen_sum_accuracy']:.2%} "
                    f"({row['training_seconds']:.0f} s)",
                    flush=True,
                )
    print(summary_table([row for row in read_results(args.results) if row["head"] in args.heads]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
