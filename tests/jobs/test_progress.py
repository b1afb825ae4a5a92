"""Progress in logs: without a terminal, every stage prints its steps and never stays silent for
longer than the heartbeat; tuning reports trial k of n."""

from __future__ import annotations

import io
import re
import time

import optuna
from rich.console import Console

from pipeline.jobs import progress_shown, step, steps_shown_by
from pipeline.jobs.train import trial_progress


def _log_console() -> tuple[Console, io.StringIO]:
    sink = io.StringIO()
    return Console(file=sink, force_terminal=False, width=100), sink


def test_without_a_terminal_each_step_is_a_line_and_silence_is_broken() -> None:
    console, sink = _log_console()
    with progress_shown(console, "evaluate", heartbeat_s=0.2):
        step("metrics, baselines and 200 bootstrap replicates")
        time.sleep(0.75)
        step("writing the report")
    lines = sink.getvalue().splitlines()
    assert lines[0].startswith("  evaluate: metrics, baselines and 200 bootstrap replicates [")
    still = [line for line in lines if "still metrics, baselines" in line]
    assert 2 <= len(still) <= 4, lines  # about one per heartbeat while the step runs
    assert re.match(r"  evaluate: writing the report \[\d+ s\]$", lines[-1])
    time.sleep(0.3)
    assert sink.getvalue().splitlines() == lines  # the heartbeat stops with the stage


def test_on_a_terminal_the_steps_go_to_the_spinner_not_the_log() -> None:
    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, width=100)
    with progress_shown(console, "train", heartbeat_s=0.1):
        step("tuning: 12 Optuna trials")
        time.sleep(0.3)
    assert "still" not in sink.getvalue()


def test_tuning_reports_trial_k_of_n_with_the_best_value() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    said: list[str] = []

    def objective(trial: optuna.Trial) -> float:
        if trial.number == 0:
            raise optuna.TrialPruned()
        return trial.suggest_float("x", 0.0, 1.0)

    with steps_shown_by(said.append):
        study.optimize(objective, n_trials=3, callbacks=[trial_progress(3)])
    assert said[0] == "tuning: trial 1 of 3 pruned"
    assert re.fullmatch(r"tuning: trial 2 of 3 complete, best 0\.\d{4}", said[1])
    assert said[2].startswith("tuning: trial 3 of 3 complete, best ")
