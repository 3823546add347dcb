"""The local cluster (scripts/local-cluster): start-up time, API latency, and the default main job through it.

    python benchmarks/cluster.py [--runs 2] [--requests 200]

Each run starts a fresh cluster (MLflow server on PostgreSQL, Ray head, two workers with a logical GPU each,
the API), measures `up`, then the latency of `GET /healthz`, `GET /studies` and `GET /studies/{id}` (the
status with its trial table, read from PostgreSQL) over `--requests` sequential requests after the study
finished, and the wall time of `hpsearch submit search_spaces/digits_cnn.yaml --server URL --wait --json`
(submission to summary, driver start-up as a Ray job included), then `down`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
LOCAL_CLUSTER = REPO / "scripts" / "local-cluster"



def _latency(client: httpx.Client, path: str, n: int) -> dict:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        client.get(path).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": times[len(times) // 2], "p95_ms": times[int(len(times) * 0.95) - 1]}


def run_once(requests: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="hpb-", dir="/tmp"))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HPSEARCH_", "MLFLOW_"))}
    started = time.perf_counter()
    subprocess.run([sys.executable, str(LOCAL_CLUSTER), "up", "--dir", str(root / "c"), "--workers", "2"],
                   env=base_env, check=True, capture_output=True, text=True)
    up_s = time.perf_counter() - started
    try:
        env = {**base_env, **json.loads((root / "c" / "env.json").read_text())}
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "service.cli", "submit", str(REPO / "search_spaces/digits_cnn.yaml"), "--wait",
             "--json", "--quiet"], env=env, check=True, capture_output=True, text=True, cwd=root,
        ).stdout
        study_s = time.perf_counter() - started
        summary = json.loads(out)
        client = httpx.Client(base_url=env["HPSEARCH_SERVER"],
                              headers={"Authorization": f"Bearer {env['HPSEARCH_TOKEN']}"}, timeout=30)
        paths = {"/healthz": "/healthz", "/studies": "/studies", "/studies/{id}": f"/studies/{summary['study_id']}"}
        latency = {label: _latency(client, path, requests) for label, path in paths.items()}
    finally:
        subprocess.run([sys.executable, str(LOCAL_CLUSTER), "down", "--dir", str(root / "c")], env=base_env,
                       capture_output=True, text=True)
    return {"up_s": up_s, "study_s": study_s, "best": summary["best_value"], "latency": latency}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        result = run_once(args.requests)
        runs.append(result)
        print(json.dumps({"run": i, **result}), flush=True)

    def spread(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.1f} ± {sd:.1f} s (n={len(values)})"

    print(f"local-cluster up: {spread([r['up_s'] for r in runs])}")
    print(f"digits_cnn.yaml via --server --wait: {spread([r['study_s'] for r in runs])}; "
          f"best val_acc {', '.join(format(r['best'], '.4f') for r in runs)}")
    for path in runs[0]["latency"]:
        p50 = statistics.mean(r["latency"][path]["p50_ms"] for r in runs)
        p95 = statistics.mean(r["latency"][path]["p95_ms"] for r in runs)
        print(f"GET {path}: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({args.requests} requests x {len(runs)} runs)")


if __name__ == "__main__":
    main()
