"""The CSV results file of a study: one row per finished run, appended as it finishes, so a killed study
continues where it stopped; and the "mean ± sd" cells of its tables."""

import csv
from pathlib import Path

import numpy as np


def read_results(path):
    """The rows of a results file (none when it does not exist)."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def append_result(path, row, fields):
    """Append one run's row to the results file, with the header `fields` when the file is new."""
    new = not Path(path).exists()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        if new:
            writer.writeheader()
        writer.writerow(row)


def mean_and_sd(values, digits=2):
    """'mean ± sd' (sample standard deviation; 0 for one value), or '-' for no values or values all NaN."""
    values = np.array(values, dtype=float)
    if values.size == 0 or np.isnan(values).all():
        return "-"
    spread = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{round(values.mean(), digits) + 0.0:.{digits}f} ± {spread:.{digits}f}"  # + 0.0: never "-0.00"
