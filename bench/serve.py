"""REST serving latency and throughput: the scorer behind `mlflow models serve`, and the CLI.

    .venv/bin/python bench/serve.py [--rows 60000] [--one 100] [--thousand 20] [--large 3]

Builds a small real model with the project's own jobs (simulate -> features -> train -> export,
an MLflow SQLite store in a temporary folder), starts `mlflow models serve` on the logged scorer
(loopback only: 127.0.0.1, one worker), and measures, with bounded request loops:
- 1-row requests: latency p50 / p99 over `--one` requests;
- 1,000-row requests: latency p50 / p99 over `--thousand` requests;
- 20,000-row requests: rows/s over `--large` requests;
- `targeting score` (the CLI, a new process: start-up, loading, validation, features, scores,
  channels, reason codes, the CSV written) on the same 20,000 rows: rows/s.
Targets on an idle 2-core machine (issue 27): one row p50 <= 50 ms and p99 <= 80 ms; 20,000
rows in <= 1 s. The machine may be shared: the 1-minute load average at the start (other
people's work) and before and after the requests is recorded with the figures, the run counts as
idle when the first is below 1, and each target is printed as met or missed.
Prints the figures and writes bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import Config, load  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "serve.json"
HOST = "127.0.0.1"  # loopback only: the benchmark never listens on another interface
START_TIMEOUT_S = 240.0
LARGE_ROWS = 20_000
TARGETS = {"one_row_p50_ms": 50.0, "one_row_p99_ms": 80.0, "large_seconds": 1.0}
IDLE_LOAD = 1.0  # 1-minute load average at the start below which the machine counts as idle


def _config(folder: Path, rows: int) -> Config:
    return load(
        ROOT / "configs" / "default.yaml",
        [
            f"output_dir={folder / 'out'}",
            f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
            f"simulate.rows={rows}",
            "simulate.days=240",
            "split.calibration_days=20",
            "split.valid_days=30",
            "split.test_days=30",
            "split.gap_days=7",
            "split.folds=1",
            "tune.n_trials=0",
            "train.num_boost_round=200",
            "serve.reference_days=40",
            "serve.score_last_days=20",
        ],
    )


def build(folder: Path, rows: int) -> tuple[Config, str, pd.DataFrame]:
    """A trained, exported model; its scorer URI; the declarations of the data."""
    from pipeline.ingest.readers import load_inputs
    from pipeline.jobs.export import export
    from pipeline.jobs.features import features
    from pipeline.jobs.simulate import simulate
    from pipeline.jobs.train import train

    config = _config(folder, rows)
    simulate(config)
    features(config)
    train(config)
    result = export(config)
    return config, str(result.figures["scorer_uri"]), load_inputs(config).declarations


def incoming(declarations: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` valid declarations drawn from the last days, with fresh ids (raw columns only)."""
    from pipeline.ingest.columns import DECLARATION_COLUMNS

    last = declarations["lodged_at"].max() - pd.Timedelta(days=20)
    recent = declarations.loc[declarations["lodged_at"] >= last]
    picked = recent.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    picked = picked[[c.name for c in DECLARATION_COLUMNS]].copy()
    picked["declaration_id"] = [f"BENCH{seed}-{i:07d}" for i in range(rows)]
    for column in picked.columns:
        if isinstance(picked[column].dtype, pd.CategoricalDtype):
            picked[column] = picked[column].astype(object)
    return picked


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _body(frame: pd.DataFrame) -> bytes:
    split = json.loads(frame.to_json(orient="split", date_format="iso", index=False))
    return json.dumps({"dataframe_split": split}).encode()


def _post(url: str, body: bytes) -> float:
    """Seconds for one request (the answer read in full); raises on an HTTP error."""
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as answer:
        payload = answer.read()
    seconds = time.perf_counter() - started
    if not payload.startswith(b"{"):
        raise RuntimeError(f"unexpected answer: {payload[:200]!r}")
    return seconds


def _wait(url: str, server: subprocess.Popen[bytes], log: Path) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < START_TIMEOUT_S:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise RuntimeError(f"no /ping answer within {START_TIMEOUT_S:.0f} s")


def _latency(times: list[float]) -> dict[str, float]:
    values = np.asarray(times) * 1000.0
    return {
        "requests": len(values),
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p99_ms": round(float(np.percentile(values, 99)), 1),
        "max_ms": round(float(values.max()), 1),
    }


def rest(
    uri: str, tracking_uri: str, frames: dict[str, pd.DataFrame], counts: dict[str, int], log: Path
) -> dict[str, Any]:
    """Start the server, run the bounded request loops, stop it."""
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri]
    command += ["--env-manager", "local", "-h", HOST, "-p", str(port), "-w", "1"]
    url = f"http://{HOST}:{port}"
    out: dict[str, Any] = {}
    with log.open("wb") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            out["start_s"] = round(_wait(f"{url}/ping", server, log), 1)
            for name, frame in frames.items():
                body = _body(frame)
                _post(f"{url}/invocations", body)  # warm-up, not counted
                times = [_post(f"{url}/invocations", body) for _ in range(counts[name])]
                entry = _latency(times)
                entry["rows"] = len(frame)
                entry["rows_per_s"] = round(len(frame) / float(np.median(times)), 0)
                out[name] = entry
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=20)
    return out


def cli(config: Config, frame: pd.DataFrame, folder: Path, repeat: int) -> dict[str, Any]:
    """`targeting score` in a new process on `frame` (CSV in, CSV out): best of `repeat`."""
    source, target = folder / "incoming.csv", folder / "scored.csv"
    frame.to_csv(source, index=False)
    command = [str(Path(sys.executable).parent / "targeting"), "score", "--input", str(source)]
    command += ["--out", str(target), "--config", str(ROOT / "configs" / "default.yaml")]
    command += ["--set", f"output_dir={config.output_dir}"]
    command += ["--set", f"tracking.uri={config.tracking.uri}"]
    command += ["--set", "serve.score_last_days=20", "--set", "serve.reference_days=40"]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - started)
        if done.returncode not in (0, 4):
            raise RuntimeError(f"targeting score failed ({done.returncode}): {done.stdout[-2000:]}")
    best = min(times)
    return {"rows": len(frame), "seconds": round(best, 2), "rows_per_s": round(len(frame) / best)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000, help="simulated declarations")
    parser.add_argument("--one", type=int, default=100, help="1-row requests")
    parser.add_argument("--thousand", type=int, default=20, help="1,000-row requests")
    parser.add_argument("--large", type=int, default=3, help="20,000-row requests")
    parser.add_argument("--cli-repeat", type=int, default=2, help="runs of `targeting score`")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    load_start = os.getloadavg()[0]  # other people's work: nothing of this bench runs yet
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        config, uri, declarations = build(folder, args.rows)
        build_s = time.perf_counter() - started
        frames = {
            "one_row": incoming(declarations, 1, seed=1),
            "thousand_rows": incoming(declarations, 1_000, seed=2),
            "large": incoming(declarations, LARGE_ROWS, seed=3),
        }
        counts = {"one_row": args.one, "thousand_rows": args.thousand, "large": args.large}
        load_before = os.getloadavg()[0]
        served = rest(uri, str(config.tracking.uri), frames, counts, folder / "serve.log")
        load_after = os.getloadavg()[0]
        command_line = cli(config, frames["large"], folder, args.cli_repeat)

    result = {
        "command": " ".join([".venv/bin/python", "bench/serve.py", *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "simulated_rows": args.rows,
        "build_s": round(build_s, 1),
        "rest": served,
        "cli": command_line,
        "load_1min_at_start": round(load_start, 2),
        "load_1min": [round(load_before, 2), round(load_after, 2)],
        "targets": TARGETS,
        "met": verdicts(served),
        "idle": load_start < IDLE_LOAD,  # the targets are for an idle machine
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    one, thousand, large = served["one_row"], served["thousand_rows"], served["large"]
    print(f"mlflow models serve on {HOST} (1 worker), started in {served['start_s']} s")
    print(f"  1 row       p50 {one['p50_ms']} ms, p99 {one['p99_ms']} ms ({one['requests']} req)")
    print(
        f"  1,000 rows  p50 {thousand['p50_ms']} ms, p99 {thousand['p99_ms']} ms "
        f"({thousand['requests']} req)"
    )
    print(
        f"  20,000 rows p50 {large['p50_ms'] / 1000:.2f} s, {large['rows_per_s']:,.0f} rows/s "
        f"({large['requests']} req)"
    )
    print(
        f"targeting score (CLI, new process, CSV in and out): {command_line['rows']:,} rows in "
        f"{command_line['seconds']} s, {command_line['rows_per_s']:,} rows/s"
    )
    print(
        f"1-minute load average {load_start:.2f} at the start, {load_before:.2f} before the "
        f"requests (the build and the server count in it), {load_after:.2f} after"
    )
    for name, met in result["met"].items():
        print(f"  target {name} <= {TARGETS[name]:g}: {'met' if met else 'missed'}")
    if not result["idle"]:
        print(f"  (not idle: a load of {IDLE_LOAD:g} or more at the start; targets are for idle)")
    print(f"written to {args.out}")
    return 0


def verdicts(served: dict[str, Any]) -> dict[str, bool]:
    """Each target of `TARGETS` met (True) or missed by the REST figures."""
    one, large = served["one_row"], served["large"]
    return {
        "one_row_p50_ms": one["p50_ms"] <= TARGETS["one_row_p50_ms"],
        "one_row_p99_ms": one["p99_ms"] <= TARGETS["one_row_p99_ms"],
        "large_seconds": large["p50_ms"] / 1000.0 <= TARGETS["large_seconds"],
    }


if __name__ == "__main__":
    raise SystemExit(main())
