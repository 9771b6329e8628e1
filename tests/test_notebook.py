"""The notebook runs top to bottom in a real Jupyter kernel (quick mode) and carries real outputs."""

import base64
import re

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient

NOTEBOOK = ROOT / "MNIST_Image_Classification_and_Summed_Output_Project.ipynb"


def test_committed_notebook_has_outputs_and_no_errors():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells and all(cell.get("execution_count") for cell in code_cells)
    outputs = [output for cell in code_cells for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert any(output.get("data", {}).get("image/png") for output in outputs)


def test_committed_notebook_stays_light_shows_the_whole_summary_and_draws_the_network():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    pngs = [
        base64.b64decode(o.data["image/png"]) for c in code_cells for o in c.outputs if "image/png" in o.get("data", {})
    ]
    assert NOTEBOOK.stat().st_size < 1_500_000 and max(map(len, pngs)) < 300_000  # the outside images included
    summary, plot = ([cell for cell in code_cells if call in cell.source] for call in ("model.summary(", "plot_model("))
    text = "".join(o.get("data", {}).get("text/plain", "") for cell in summary for o in cell.outputs)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # rich's colours
    assert "digit_column[0][0], addend_row[0][0]" in text and "…" not in text  # the merge's inputs, on one line
    assert any("image/png" in o.get("data", {}) for cell in plot for o in cell.outputs)  # inline, not a link


@pytest.mark.slow
def test_notebook_executes_in_a_fresh_kernel(mnist, monkeypatch):
    if not (ROOT / "model.zip").exists():
        pytest.skip("model.zip is not there yet: run `make train`")
    monkeypatch.setenv("NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    printed = "".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "digit accuracy" in printed and "pairs right" in printed and "sums of unseen pairs" in printed
