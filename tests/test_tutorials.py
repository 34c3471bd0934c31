"""The tutorial notebooks: committed with clean outputs, and still running on ../shared/data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = ["dlpfc.ipynb", "merfish.ipynb", "mosta.ipynb"]
MAX_BYTES = 1_500_000
PARAMETERS = 'DATA = os.environ.get("HIREF_TUTORIAL_DATA", "full")'
# The DLPFC notebook downloads nothing: it reads ../shared/data (or $HIREF_SHARED_DATA).
PARAMETERS_OF = {"dlpfc.ipynb": 'DATA_DIR = os.environ.get("HIREF_SHARED_DATA", "../shared/data")'}
# Appended to the executed copy: the notebook's RESULTS dict, written where the test can read it.
DUMP_RESULTS = (
    'import json\nfrom pathlib import Path\nPath("results.json").write_text(json.dumps(RESULTS, default=float))'
)


def problems(nb: nbformat.NotebookNode, *, need_outputs: bool = True, parameters: str = PARAMETERS) -> list[str]:
    """What is wrong with an executed notebook: errors, stderr (warnings), cells not run, no figure."""
    found = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    if len(params) != 1 or parameters not in params[0].source:
        found.append(f"expected one code cell tagged 'parameters' holding {parameters!r}")
    for i, cell in enumerate(code):
        if need_outputs and cell.execution_count is None:
            found.append(f"code cell {i} was not executed")
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                found.append(f"code cell {i} raised {out.ename}: {out.evalue}")
            elif out.output_type == "stream" and out.name == "stderr":
                found.append(f"code cell {i} wrote to stderr: {out.text[:300]!r}")
    images = sum("image/png" in out.get("data", {}) for cell in code for out in cell.get("outputs", []))
    if need_outputs and images == 0:
        found.append("no figure in the outputs")
    return found


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_clean_outputs(name):
    path = TUTORIALS / name
    assert path.stat().st_size < MAX_BYTES, f"{name} is {path.stat().st_size / 1e6:.2f} MB"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert problems(nb, parameters=PARAMETERS_OF.get(name, PARAMETERS)) == []
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    if name in PARAMETERS_OF:
        assert "../shared/data" in text
        return
    assert "`shared`" in text
    assert "HIREF_TUTORIAL_DATA=full" in text


def test_problems_catches_errors_and_warnings():
    nb = nbformat.read(TUTORIALS / "mosta.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: something\n"),
        nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[]),
    ]
    cell.execution_count = None
    found = problems(nb)
    assert any("ValueError: boom" in p for p in found)
    assert any("stderr" in p for p in found)
    assert any("not executed" in p for p in found)


def run_tutorial(name: str, tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """Execute a copy of a tutorial in ``tmp_path/tutorials`` on the shared data; its RESULTS dict and the notebook."""
    from nbclient import NotebookClient

    folder = tmp_path / "tutorials"
    folder.mkdir()
    shutil.copy(TUTORIALS / name, folder / name)
    nb = nbformat.read(folder / name, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(DUMP_RESULTS))
    monkeypatch.setenv("HIREF_TUTORIAL_DATA", "shared")
    monkeypatch.setenv("HIREF_SHARED_DATA", str(shared_data))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    # raises CellExecutionError (failing the test) on the first cell error
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return json.loads((folder / "results.json").read_text()), nb


def test_merfish_tutorial_runs(tmp_path, shared_data, monkeypatch):
    results, nb = run_tutorial("merfish.ipynb", tmp_path, shared_data, monkeypatch)
    assert problems(nb) == []
    assert results["data"] == "shared"
    assert results["n_cells"] == [5584, 5578]
    assert results["genes"] == ["Slc17a7", "Gad1"]
    assert results["missing_genes"] == ["Grm4", "Olig1", "Peg10"]
    assert abs(results["angle"]) < 10  # adjacent sections imaged in nearly the same orientation
    comparison = results["comparison"]
    assert comparison["space + expression"]["matched pairs"] == 5578
    assert (
        comparison["space + expression"]["partners of the same class (%)"]
        > comparison["space only"]["partners of the same class (%)"] + 20
    )
    assert comparison["space only"]["median distance to partner (µm)"] < 60
    cosine = results["cosine_75"]
    mean = next(k for k in cosine["random matching"] if k.startswith("mean of"))
    for column in (mean, "Gad1"):
        assert cosine["space + expression"][column] > cosine["random matching"][column] + 0.1
        assert cosine["space + expression"][column] > cosine["nearest neighbour"][column]
        assert cosine["space + expression"][column] > cosine["space only"][column]
    assert cosine["space + expression"]["Gad1"] > 0.7
    # Classes carried by votes beat the one partner's (measured 0.827 against 0.732), and the expression
    # classifier, weighted by cross-validation on section 1, adds more (0.848) with a large weight.
    carried = results["transfer_labels"]
    assert carried["transfer_labels, votes alone"] > carried["partner's own class (one-to-one)"] + 0.05
    assert carried["transfer_labels"] > carried["transfer_labels, votes alone"] + 0.01
    assert results["label_expression_weight"] >= 0.4


def test_mosta_tutorial_runs(tmp_path, shared_data, monkeypatch):
    results, nb = run_tutorial("mosta.ipynb", tmp_path, shared_data, monkeypatch)
    assert problems(nb) == []
    assert results["data"] == "shared"
    assert results["n_cells"] == [254, 251, 264, 262]
    assert results["keys"] == ["hiref_0_1", "hiref_1_2", "hiref_2_3"]
    assert list(results["transition_shapes"]) == ["0 -> 1", "1 -> 2", "2 -> 3"]
    assert all(shape == [6, 6] for shape in results["transition_shapes"].values())
    for sums in results["transition_row_sums"].values():
        assert sums == pytest.approx([1.0] * 6)
    for pair, costs in results["costs"].items():
        exact = costs["exact optimum"]
        assert costs["mini-batch 1024"] == pytest.approx(exact), pair  # one batch holds every spot
        assert exact <= costs["hiref, default options"] <= 1.05 * exact, pair
        assert exact <= costs["hiref"] <= 1.15 * exact, pair
        assert costs["hiref"] < costs["mini-batch 32"], pair
    for pair, agreement in results["agreement"].items():
        assert agreement["cells with a partner (%)"] > 90, pair
        assert agreement["same annotation as partner (%)"] > 40, pair
    # hr.tl.trace: every cell of the first section, traced to the three others; chains break rarely
    assert results["trace_rows"] == 254 * 3
    assert results["trace_sections"] == [1, 2, 3]
    assert results["followed"]["n_cells"] > 20
    assert all(90 < pct <= 100 for pct in results["followed"]["with_partner_pct"])
    assert results["distant_transition_row_sums"] == pytest.approx([1.0] * 6)
    # hr.tl.stack: z from the spacing; the stacked frame brings partners of the rotated slice 3 closer
    assert results["stack_z"] == [0.0, 6.0, 12.0, 18.0]
    raw, stacked = results["partner_distance"]["raw"], results["partner_distance"]["stacked"]
    assert stacked[1] < 0.75 * raw[1]
    assert sum(stacked) < sum(raw)


def test_mosta_says_first_that_its_outputs_come_from_a_stand_in():
    nb = nbformat.read(TUTORIALS / "mosta.ipynb", as_version=4)
    opening = nb.cells[0].source.split("\n\n")[1]  # the paragraph right under the title
    for words in ("stand-in", "breast-cancer", "k-means"):
        assert words in opening
    page = (TUTORIALS.parent / "docs" / "tutorials.md").read_text().split("\n\n")[1]
    for words in ("stand-in", "MOSTA"):
        assert words in page


def test_dlpfc_tutorial_runs(tmp_path, shared_data, monkeypatch):
    results, nb = run_tutorial("dlpfc.ipynb", tmp_path, shared_data, monkeypatch)
    assert problems(nb, parameters=PARAMETERS_OF["dlpfc.ipynb"]) == []
    assert results["n_spots"] == [3639, 3673]
    assert results["n_matched"] == 3639
    assert results["register_decision"] == "identity"  # the sections were imaged in one frame
    assert results["weight"] == 0  # position alone on adjacent Visium sections (rho >= 0.8)
    # layer accuracy: about that of the exact matching on position (0.856), far above random (0.17)
    assert 0.84 < results["agreement"] < 0.93
    # The confident spots (nearly all of them) carry the layer accuracy; the few others sit at edges.
    assert results["by_confidence"]["confidence = 1"] > 0.84
    assert "matched pairs cross co-clusters" in results["hierarchy_title"]
    carried = results["transfer_labels"]
    # The votes carry the layers better than the partners do (measured 0.876 against 0.857), and a unanimous
    # vote is right far more often than a split one.
    assert carried["hr.tl.transfer_labels"] > carried["partner's own layer (one-to-one)"] + 0.01
    assert carried["where all votes agree"] > carried["where a quarter or more disagree"] + 0.2
    doubt = results["doubt"]
    assert doubt["as aligned above"]["verdict"] == "sound"
    assert doubt["mirrored, not registered"]["verdict"] == "doubtful"
    mirrored, aligned = doubt["mirrored, not registered"], doubt["as aligned above"]
    assert mirrored["partner_similarity"] < aligned["partner_similarity"] - 0.5
