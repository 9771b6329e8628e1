"""The notebook runs top to bottom in a real Jupyter kernel (quick mode) and carries real outputs."""

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
