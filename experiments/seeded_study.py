"""Which of the recipe's choices help? Train named arms x seeds and compare each arm with the base, paired by seed.

    python experiments/seeded_study.py                      # every arm x seeds 0-3: hours on a 2-core CPU
    python experiments/seeded_study.py --arms base label_smoothing --seeds 0 1
    python experiments/seeded_study.py --table              # the table of the runs so far, nothing trained

An arm is the base recipe (train.py's, trained in float32) with some of its
constants changed (`ARMS`); "recipe" is train.py's defaults as they are now.
Each run is train.py's own `train_model`, one at a time. Seeds 0-3 span about
0.1 points of test accuracy, so a difference means something only when it is
larger than its spread over seeds: the table pairs every run with the base
run of the same seed (same split, addends and initial draws) and gives the
mean and standard deviation of the differences. Every model is also scored
with test-time augmentation (the probabilities averaged over the image and
its four one-pixel shifts), which costs no training.

Each finished run is appended to the results file (CSV) at once; a run already
there is skipped, so a killed study continues where it stopped.
"""

import argparse
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's modules, from any directory

import train  # noqa: E402  (after the path is set)
from results_file import append_result, mean_and_sd, read_results  # noqa: E402
from run_bookkeeping import positive_int, read_log  # noqa: E402

RESULTS_FILE = Path(__file__).with_name("seeded_study.csv")
QUICK_RESULTS = Path("runs/quick/seeded_study.csv")
SEEDS = (0, 1, 2, 3)
BASE = "base"
BASE_RECIPE = {"PRECISION": "float32"}  # train.py as it stood after "Does it add?"; every arm changes it
ARMS = {  # arm: the train.py constants it changes in the base recipe
    BASE: {},
    "elastic_1px": {"AUGMENTATION": {**train.AUGMENTATION, "elastic_pixels": 1.0}},
    "elastic_2px": {"AUGMENTATION": {**train.AUGMENTATION, "elastic_pixels": 2.0}},
    "label_smoothing": {"LABEL_SMOOTHING": 0.1},
    "wider_fewer_epochs": {"WIDTH": 1.5, "EPOCHS": 10},  # about 1.8x the work per epoch
    "epochs_x1.5": {"EPOCHS": 27},
    "no_clean_epochs": {"CLEAN_EPOCHS": 0},
    "no_weight_average": {"EMA_STEPS": 1},  # momentum 0: the "average" is the live weights
    "ema_warmup": {"EMA_WARMUP": True},
    "bfloat16": {"PRECISION": "mixed_bfloat16"},
    "label_smoothing+bfloat16": {"LABEL_SMOOTHING": 0.1, "PRECISION": "mixed_bfloat16"},  # the two that gained
    "recipe": {"PRECISION": "auto"},  # train.py's defaults, as adopted: mixed_bfloat16 where the CPU has the units
}
FIELDS = (
    "arm", "seed", "epochs", "parameters", "best_epoch", "val_digit_accuracy", "val_sum_accuracy",
    "test_digit_accuracy", "test_sum_accuracy", "tta_val_digit_accuracy", "tta_val_sum_accuracy",
    "tta_test_digit_accuracy", "tta_test_sum_accuracy", "training_seconds", "cpu", "instruction_set", "code_version",
)  # fmt: skip


# ----------------------------------------------------------------------------- one run


def run_arm(arm, seed, data_path=None, quick=False, epochs=None):
    """Train `arm`'s recipe with `seed` (for `epochs`, when given, instead of the arm's) and return its row."""
    import keras

    recipe = mock.patch.multiple(train, **{**BASE_RECIPE, **ARMS[arm]})
    with recipe, tempfile.TemporaryDirectory(prefix="seeded_study-") as work_dir:
        epochs = epochs or (train.QUICK["epochs"] if quick else train.EPOCHS)
        model, results = train.train_model(data_path, epochs, seed=seed, work_dir=work_dir, quick=quick, verbose=0)
        log = read_log(Path(work_dir) / train.HISTORY_FILE)
    best = min(range(len(log)), key=lambda epoch: log[epoch]["val_loss"])
    row = {
        "arm": arm,
        "seed": seed,
        "epochs": epochs,
        "parameters": results["parameters"],
        "best_epoch": best + 1,
        "val_digit_accuracy": log[best]["val_digit_accuracy"],
        "val_sum_accuracy": log[best]["val_sum_accuracy"],
        "test_digit_accuracy": results["test_digit_accuracy"],
        "test_sum_accuracy": results["test_sum_accuracy"],
        **shifted_accuracies(model, data_path, seed, quick),
        "training_seconds": results["training_seconds"],
        "cpu": results["machine"]["cpu"],
        "instruction_set": results["machine"]["instruction_set"],
        "code_version": results["code_version"],
    }
    keras.backend.clear_session(free_memory=True)
    return row


def shifted_accuracies(model, data_path, seed, quick):
    """Validation and test accuracies with test-time augmentation, on the run's own split and addends."""
    from data_creation import evaluation_addends, load_mnist, sum_labels
    from evaluate_func import ONE_PIXEL_SHIFTS, predict_digit_and_sum

    _, validation, test = train.split_mnist(load_mnist(data_path), seed, quick)
    scores = {}
    for split, (images, digits) in (("val", validation), ("test", test)):
        addends = evaluation_addends(len(images), seed, "validation" if split == "val" else "test", digits)
        predicted = predict_digit_and_sum(model, images, addends, shifts=ONE_PIXEL_SHIFTS)
        scores[f"tta_{split}_digit_accuracy"] = float(np.mean(predicted["digit"] == digits))
        scores[f"tta_{split}_sum_accuracy"] = float(np.mean(predicted["sum"] == sum_labels(digits, addends)))
    return scores


# ----------------------------------------------------------------------------- the study and its table


def run_study(arms, seeds, results_path, run=run_arm):
    """Run every (arm, seed) not yet in the results file, seeds outermost (a study cut short still compares
    every arm on the same seeds), appending each row as its run finishes."""
    done = {(row["arm"], int(row["seed"])) for row in read_results(results_path)}
    for seed in seeds:
        for arm in arms:
            if (arm, seed) in done:
                continue
            row = run(arm, seed)
            append_result(results_path, row, FIELDS)
            print(
                f"{arm:18} seed {seed}: test digit {row['test_digit_accuracy']:.2%}, sum {row['test_sum_accuracy']:.2%}"
                f" ({row['training_seconds']:.0f} s)",
                flush=True,
            )


def paired_differences(rows, arm, field):
    """Percentage points: `arm`'s `field` less the base arm's, for each seed that both have run."""
    by_seed = {(row["arm"], int(row["seed"])): 100 * float(row[field]) for row in rows}
    seeds = sorted(seed for name, seed in by_seed if name == arm and (BASE, seed) in by_seed)
    return [by_seed[arm, seed] - by_seed[BASE, seed] for seed in seeds]


def study_table(rows):
    """Markdown: per arm, its seeds, the mean ± sd over them of validation and test accuracy (digit / sum), the
    test range, the paired difference to the base arm, what test-time augmentation changes on the same models
    (validation digit) and gives (test), and the mean training time."""
    lines = [
        "| arm | seeds | val digit % | val sum % | test digit % | test sum % | test digit min-max | "
        "Δ val digit | Δ val sum | Δ test digit | Δ test sum | TTA Δ val digit | TTA test digit % | TTA test sum % "
        "| training s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    arms = list(dict.fromkeys(row["arm"] for row in rows))
    for arm in sorted(arms, key=lambda name: name != BASE):
        runs = [row for row in rows if row["arm"] == arm]

        def percent(field, runs=runs):
            return [100 * float(row[field]) for row in runs]

        test_digit = percent("test_digit_accuracy")
        cells = [
            arm,
            ",".join(str(row["seed"]) for row in runs),
            *(
                mean_and_sd(percent(f"{split}_{head}_accuracy"))
                for split in ("val", "test")
                for head in ("digit", "sum")
            ),
            f"{min(test_digit):.2f}-{max(test_digit):.2f}",
            *(
                "" if arm == BASE else mean_and_sd(paired_differences(rows, arm, f"{split}_{head}_accuracy"))
                for split in ("val", "test")
                for head in ("digit", "sum")
            ),
            mean_and_sd(np.subtract(percent("tta_val_digit_accuracy"), percent("val_digit_accuracy"))),
            *(mean_and_sd(percent(f"tta_test_{head}_accuracy")) for head in ("digit", "sum")),
            f"{np.mean([float(row['training_seconds']) for row in runs]):.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the command line


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    parser.add_argument("--epochs", type=positive_int, help="every arm this long (default: the arm's own)")
    parser.add_argument("--data", metavar="PATH", help="mnist.npz (default: $MNIST_NPZ, else Keras' download)")
    parser.add_argument("--results", type=Path, help=f"CSV file (default {RESULTS_FILE}; {QUICK_RESULTS} with --quick)")
    parser.add_argument("--quick", action="store_true", help="train.py's small subset, for a look in a minute")
    parser.add_argument("--table", action="store_true", help="print the table of the results file; train nothing")
    args = parser.parse_args(argv)
    args.results = args.results or (QUICK_RESULTS if args.quick else RESULTS_FILE)
    return args


def main(argv=None):
    from quiet_keras import import_keras_quietly

    args = parse_args(argv)
    if not args.table:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        import_keras_quietly()

        def run(arm, seed):
            return run_arm(arm, seed, args.data, args.quick, args.epochs)

        run_study(args.arms, args.seeds, args.results, run)
    rows = [row for row in read_results(args.results) if row["arm"] in args.arms]
    print(study_table(rows) if rows else f"no runs in {args.results} yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
