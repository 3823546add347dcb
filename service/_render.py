"""What the CLI prints for people (with `--json` it prints the dicts themselves): a study's summary, the list
of studies, one study's status with its trial table. Plain functions from the verbs' dicts to text."""

from __future__ import annotations

from service._states import ACTIVE_STATUSES

# The fields `hpsearch status` shows, in this order (empty ones are left out, but status and best_value).
_STATUS_FIELDS = (
    "id", "status", "created_at", "started_at", "finished_at", "n_trials", "n_running", "n_completed", "n_pruned",
    "n_failed", "metrics", "best_value", "best_params", "error", "mlflow_tracking_uri", "mlflow_experiment_id",
    "mlflow_parent_run_id", "optuna_storage", "optuna_study_name", "tune_path", "ray_job_id", "registered_model",
)


def summary_text(summary: dict) -> str:
    """The outcome of a study: status, counts, the best trial (or the Pareto front), where to compare it."""
    lines = [
        f"study {summary['study_id']}: {summary['status']}",
        f"trials {summary['n_trials']}: completed {summary['n_completed']}, pruned {summary['n_pruned']}, "
        f"failed {summary['n_failed']}",
    ]
    for point in summary.get("pareto_front") or []:
        values = ", ".join(f"{m}={v:.4g}" for m, v in zip(summary["metric"], point["values"]))
        lines.append(f"pareto trial {point['trial']}: {values}")
    if summary.get("registered_model"):
        lines.append(f"registered model: {summary['registered_model']}")
    if summary["best_value"] is not None:
        lines.append(f"best {summary['metric']} = {summary['best_value']:.4f} (trial {summary['best_trial']})")
        lines += [f"  {key}: {value}" for key, value in (summary["best_params"] or {}).items()]
    if summary.get("error"):
        lines.append(f"note: {summary['error']}")
    if summary.get("mlflow_experiment_id"):
        lines.append(ui_hint(summary))
    return "\n".join(lines)


def ui_hint(summary: dict) -> str:
    """Where to compare the trials: the experiment's runs list, the study one parent row with its trials."""
    # A cluster's service names the UI its users open (its drivers may reach MLflow by an inner name).
    uri = summary.get("mlflow_ui_url") or summary["mlflow_tracking_uri"]
    url_path = f"#/experiments/{summary['mlflow_experiment_id']}/runs"
    if uri.startswith(("http://", "https://")):
        return f"compare the trials in MLflow: {uri.rstrip('/')}/{url_path}"
    return f"compare the trials in MLflow: hpsearch ui --tracking-uri {uri}  then open http://127.0.0.1:5000/{url_path}"


def study_list_text(studies: list[dict]) -> str:
    if not studies:
        return "no studies yet: hpsearch submit SPACE_FILE starts one"
    lines = []
    for r in studies:
        best = "-" if r["best_value"] is None else f"{r['best_value']:.4f}"
        lines.append(
            f"{r['id']:<44} {r['status']:<10} trials {r['n_trials']:>3} (completed {r['n_completed']}, pruned "
            f"{r['n_pruned']}, failed {r['n_failed']})  best {','.join(r['metrics'])} {best}"
        )
    return "\n".join(lines)


def status_text(data: dict) -> str:
    lines = [f"{key:<22} {data.get(key)}" for key in _STATUS_FIELDS
             if data.get(key) is not None or key in ("status", "best_value")]
    if data.get("stop_requested_at") and data["status"] in ACTIVE_STATUSES:
        lines.append(f"{'stop_requested_at':<22} {data['stop_requested_at']}")
    lines.append(trial_table(data.get("trials") or [], data.get("metrics") or []))
    return "\n".join(lines)


def trial_table(trials: list[dict], metrics: list[str]) -> str:
    if not trials:
        return "no trials yet"
    lines = [f"{'trial':>5}  {'state':<11} {'epochs':>6}  {','.join(metrics):>12}  parameters"]
    for t in trials:
        values = "-" if not t["values"] else ",".join(f"{v:.4f}" if v is not None else "-" for v in t["values"])
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        lines.append(f"{t['number']:>5}  {t['state']:<11} {t['epochs']:>6}  {values:>12}  {params}")
    return "\n".join(lines)
