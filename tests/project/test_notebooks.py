"""The notebooks: each runs on its own, from an empty output folder, on a small simulated stream.

Every notebook is executed with nbclient in a kernel of this interpreter, with overrides injected
after its `parameters` cell (papermill style): its own output folder and SQLite MLflow store in
tmp_path, so each one must create what it needs (data, features, a trained run) by itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from helpers.chain import SMALL_CHAIN
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from pipeline.config import PROJECT_ROOT, Config, load

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = (
    "01-explore-declarations.ipynb",
    "02-train-and-tune.ipynb",
    "03-review-explanations.ipynb",
    "04-set-thresholds.ipynb",
    "05-latest-report.ipynb",
)
SETTINGS = [
    *SMALL_CHAIN,
    "evaluate.bootstrap=20",
    "evaluate.shap_sample=200",
    "evaluate.top_dependence=2",
    "evaluate.red_waterfalls=1",
]
CELL_TIMEOUT_S = 300
# Figures each notebook shows at least (plots, heat maps, SHAP views, waterfalls).
FIGURES = {
    "01-explore-declarations": 5,
    "02-train-and-tune": 2,
    "03-review-explanations": 6,
    "04-set-thresholds": 1,
    "05-latest-report": 0,  # the report is embedded as HTML, its figures inside it
}


def _overrides(folder: Path) -> list[str]:
    return [
        f"output_dir={folder / 'out'}",
        f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
        *SETTINGS,
    ]


def parameters_index(notebook: nbformat.NotebookNode) -> int:
    """Position of the cell tagged `parameters`."""
    for index, cell in enumerate(notebook.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return index
    raise AssertionError("no cell tagged 'parameters'")


def execute(path: Path, overrides: list[str]) -> nbformat.NotebookNode:
    """Run a notebook from notebooks/ with `overrides` appended to its OVERRIDES."""
    notebook = nbformat.read(path, as_version=4)
    injected = new_code_cell(
        f"OVERRIDES = [*OVERRIDES, *{overrides!r}]",
        metadata={"tags": ["injected-parameters"]},
    )
    notebook.cells.insert(parameters_index(notebook) + 1, injected)
    client = NotebookClient(
        notebook,
        kernel_name="python3",  # the running interpreter: jupyter_client maps `python` to it
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute()
    return notebook


def images(notebook: nbformat.NotebookNode) -> int:
    """How many PNG figures the executed notebook shows."""
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


def text_of(notebook: nbformat.NotebookNode) -> str:
    """Everything the notebook printed or displayed as text."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            parts.append(str(output.get("text", "")))
            parts.append(str(output.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def html_of(notebook: nbformat.NotebookNode) -> list[str]:
    """Every HTML output the executed notebook shows."""
    return [
        str(output.get("data", {}).get("text/html", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "text/html" in output.get("data", {})
    ]


def test_make_lab_opens_jupyterlab_at_the_project_root():
    """outputs/ and the report are in JupyterLab's file browser beside notebooks/."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("no make on PATH")
    dry = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed-stamp", "lab"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0, dry.stderr
    assert f"jupyter lab --notebook-dir={PROJECT_ROOT}" in dry.stdout


def test_the_five_notebooks_are_there():
    assert tuple(p.name for p in NOTEBOOKS) == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_parametrised_and_stripped(path: Path):
    """A first code cell tagged `parameters` names CONFIG and OVERRIDES; nothing executed."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert parameters_index(notebook) == notebook.cells.index(code[0])
    namespace: dict[str, object] = {}
    exec(code[0].source, namespace)
    assert namespace["CONFIG"] == "configs/default.yaml"
    assert namespace["OVERRIDES"] == []
    load(PROJECT_ROOT / str(namespace["CONFIG"]), [])
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_alone_from_an_empty_folder(path: Path, tmp_path: Path):
    """Each notebook, from nothing: it creates its inputs, shows its figures, leaves its
    artefacts in the injected folder and store, and a second run would rebuild nothing."""
    from pipeline.jobs.ensure import missing_stages

    overrides = _overrides(tmp_path)
    config: Config = load(PROJECT_ROOT / "configs/default.yaml", overrides)
    stage = path.stem[:2]
    if stage == "03":
        # a review notebook never exports: it reviews the export that exists
        from pipeline.jobs.ensure import ensure

        ensure(config, "export")
        exported = config.paths.thresholds.read_bytes()
    notebook = execute(path, overrides)
    paths = config.paths
    text = text_of(notebook)
    assert f"artefacts in {paths.root}" in text  # the injected parameters were used
    assert images(notebook) >= FIGURES[path.stem]
    assert missing_stages(config, "data") == []
    if stage == "01":
        assert "emerging_transshipment" in text  # the blind spots by scheme were shown
        assert not paths.features.exists()  # exploring needs no features
    else:
        assert missing_stages(config, "model") == []
        last = json.loads(paths.last_run.read_text(encoding="utf-8"))
        assert last["tracking_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    if stage == "02":
        from pipeline.train.tune import finished_trials, latest_study

        assert finished_trials(latest_study(config)) == config.tune.n_trials
        assert "trial 0" in text and "trial 1" in text  # the nested MLflow runs were compared
        # run again: the trained run is reused, no run or trial is logged twice
        again = text_of(execute(path, overrides))
        assert f"reusing the last trained run {last['run_id']}" in again
        import mlflow

        mlflow.set_tracking_uri(str(config.tracking.uri))
        runs = mlflow.search_runs(experiment_names=[config.tracking.experiment])
        assert len(runs) == 1 + config.tune.n_trials  # one training run and its trials
    if stage == "03":
        assert config.paths.thresholds.read_bytes() == exported  # not exported again
    if stage in ("03", "04"):
        from pipeline.serve.thresholds import Thresholds

        document = Thresholds.load(paths.thresholds).document
        assert document["model"]["run_id"] == last["run_id"]
        assert missing_stages(config) == []
    if stage == "05":
        frames = [html for html in html_of(notebook) if "<iframe srcdoc=" in html]
        assert len(frames) == 1
        assert "id=&quot;decision&quot;" in frames[0]  # the report, decision page first
        assert f"report: {paths.report}" in text
    if stage == "04":
        assert "red_rate" in text and "revenue_norm" in text
        _judged_out_of_sample(config, last["run_id"], text)
        # run again: the run's export is shown, not registered as another version
        exported = paths.thresholds.read_bytes()
        registered = _registered(config)
        again = text_of(execute(path, overrides))
        assert f"run {last['run_id']} is exported already" in again
        assert paths.thresholds.read_bytes() == exported
        assert _registered(config) == registered  # no new version, @challenger where it was


def _registered(config: Config) -> tuple[list[str], str]:
    """The registered versions of the config's model and the version @challenger names."""
    from mlflow import MlflowClient

    client = MlflowClient(str(config.tracking.uri))
    name = config.tracking.registered_model
    versions = sorted(v.version for v in client.search_model_versions(f"name='{name}'"))
    return versions, client.get_model_version_by_alias(name, "challenger").version


def _judged_out_of_sample(config: Config, run_id: str, text: str) -> None:
    """Notebook 04's capacity table is the evaluated model's on its own recorded test window
    (after its calibration window), and the deployed procedure is judged by the walk-forward."""
    import pandas as pd

    from pipeline import tracking

    tracking.configure(config)
    windows = tracking.load_model(run_id, "evaluated").info.windows_dict()
    test, calibration = windows["test"], windows["calibration"]
    assert f"test [{test['start']}, {test['end']})" in text
    assert pd.Timestamp(test["start"]) >= pd.Timestamp(calibration["end"])
    assert pd.Timestamp(test["start"]) >= pd.Timestamp(windows["train"]["end"])
    assert "deployed procedure - evaluated model" in text  # the walk-forward table
