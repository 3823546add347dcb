"""The command line: exit codes, one-line errors, and fast start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "search_spaces").glob("*.yaml"))


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("command", [[], ["submit"], ["validate"], ["schema"], ["resume"], ["list"], ["status"], ["best"], ["ui"],
                                     ["logs"], ["stop"], ["run"], ["serve"]])
def test_cli_help_on_every_command(command):
    result = _run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_cli_validate_previews_the_default_space():
    result = _run("validate", str(REPO / "search_spaces/digits_cnn.yaml"))
    assert result.exit_code == 0, result.output
    assert "lr" in result.stdout and "when optimizer" in result.stdout
    assert "sampled configurations" in result.stdout


@pytest.mark.parametrize(("grace", "max_epochs", "noted"), [
    ("1", 12, True), ("2", 12, True), ("3", 12, False), ('"25%"', 12, False),
    ('"25%"', 9, False), ("2", 9, False), ("1", 9, True),  # a quarter of 9 resolves to 2 epochs, as "25%" does
])
def test_cli_validate_notes_when_asha_judges_before_a_quarter_of_max_epochs(grace, max_epochs, noted):
    """The rule benchmarks/search_quality.py's evidence gave (README, Choosing a sampler and scheduler): early
    rungs stop slow starters, which costs where learning curves cross."""
    result = _run("validate", str(REPO / "search_spaces/digits_cnn.yaml"), "--set", f"budget.max_epochs={max_epochs}",
                  "--set", f"scheduler={{type: asha, grace_period: {grace}, reduction_factor: 3}}")
    assert result.exit_code == 0, result.output
    assert ("judging before a quarter of max_epochs stops slow starters" in result.stdout) is noted, result.stdout


def test_cli_validate_shows_each_brackets_rungs_and_drops_the_note_when_one_never_judges():
    def preview(brackets):
        result = _run("validate", str(REPO / "search_spaces/digits_cnn.yaml"), "--set", "budget.max_epochs=27",
                      "--set", f"scheduler={{type: asha, grace_period: 1, reduction_factor: 3, brackets: {brackets}}}")
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "judged at epochs 1, 3, 9 | 3, 9 | 9 | never" in preview(4)
    assert "slow starters" not in preview(4)  # the fourth bracket's trials all run to 27
    assert "judged at epochs 1, 3, 9 | 3, 9," in preview(2) and "brackets: 4" in preview(2)


def test_cli_validate_shows_the_rung_check_and_drops_the_note_it_answers():
    result = _run("validate", str(REPO / "search_spaces/digits_cnn.yaml"), "--set", "budget.max_epochs=27",
                  "--set", "scheduler={type: asha, grace_period: 1, reduction_factor: 3, rung_check: true}")
    assert result.exit_code == 0, result.output
    assert "asha (grace_period 1, reduction_factor 3, rung check, on val_acc)" in result.stdout
    assert "rung check: trials 1, 4, 7, 11, 19, 35, ... train in full" in result.stdout
    assert "slow starters" not in result.stdout  # the check is the hedge the note would propose
    assert "too few for it" not in result.stdout


@pytest.mark.parametrize(("trials", "extra", "first"), [(7, "", 8), (8, "", None), (8, ", deterministic: true", 9)])
def test_cli_validate_says_when_a_study_is_too_short_for_its_rung_check(trials, extra, first):
    """Checks start once trials 1, 4 and 7 have ended: trial 8 at the earliest, or 7 + concurrency (2) in
    deterministic mode, which waits for them to end."""
    result = _run("validate", str(REPO / "search_spaces/digits_cnn.yaml"), "--set", f"budget.trials={trials}",
                  "--set", "scheduler={type: asha, rung_check: true}",
                  "--set", f"sampler={{type: tpe, seed: 1{extra}}}")
    assert result.exit_code == 0, result.output
    note = f"budget.trials {trials} is too few for it: the first trial it\n           can check is trial {first}"
    assert (note in result.stdout) if first else ("too few for it" not in result.stdout), result.stdout


@pytest.mark.parametrize(("scheduler", "names"), [
    ("{type: asha, rung_check: true, brackets: 2}", ["scheduler.brackets", "2", "remove brackets"]),
    ("{type: fifo, rung_check: true}", ["scheduler.rung_check", "does not apply to the fifo scheduler"]),
    ("{type: asha, rung_check: maybe}", ["scheduler.rung_check", "'maybe'", "write true or false"]),
])
def test_cli_validate_refuses_a_rung_check_it_cannot_run(scheduler, names):
    result = _run("validate", str(REPO / "search_spaces/digits_cnn.yaml"), "--set", f"scheduler={scheduler}")
    assert result.exit_code == 2, result.output
    assert all(name in result.stderr for name in names), result.stderr
    assert "Traceback" not in result.output


def test_cli_validate_refuses_more_brackets_than_the_budget_has():
    result = _run("validate", str(REPO / "search_spaces/digits_cnn.yaml"), "--set", "budget.max_epochs=9",
                  "--set", "scheduler={type: asha, grace_period: 1, reduction_factor: 3, brackets: 4}")
    assert result.exit_code == 2, result.output
    assert "scheduler.brackets" in result.stderr and "use brackets <= 3; for more, lower grace_period" in result.stderr, result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.name != "mnist_cnn.yaml"], ids=lambda p: p.name)
def test_cli_every_example_space_validates(path):
    assert _run("validate", str(path)).exit_code == 0


def test_cli_mnist_example_names_the_missing_files(tmp_path):
    result = _run("validate", str(REPO / "search_spaces/mnist_cnn.yaml"))
    assert result.exit_code == 2
    assert "train-images-idx3-ubyte" in result.stderr


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\ntrainable: cnn\nmetric: val_acc\nparams:\n  lr: {type: float, low: 0.5, high: 0.1}\n",
         ["bad.yaml:5", "params.lr.low", "0.5", "make low < high"]),
        ("name: x\ntrainable: cnn\nmetric: val_acc\nparams:\n  lr: {type: float, low: 0.1, hihg: 0.5}\n",
         ["bad.yaml:5", "hihg", "did you mean", "high"]),
        ("name: x\ntrainable: cnn\nmetric: val_acc\nparams:\n  dropuot: {type: float, low: 0.1, high: 0.5}\n",
         ["bad.yaml:5", "dropuot", "dropout"]),
        ("name: x\ntrainable: cnn\nmetric: val_acc\nparams:\n  dropout: {type: float, low: 0.1, high: 1.0}\n",
         ["bad.yaml:5", "params.dropout", "1"]),
        ("name: x\ntrainable: cnn\nmetric: val_accuracy\nparams:\n  lr: {type: float, low: 0.01, high: 0.1}\n",
         ["bad.yaml:3", "metric", "val_accuracy", "val_acc"]),
        ("name: x\ntrainable: cnn\nmetric: val_acc\nparams: [\n", ["bad.yaml", "line"]),
    ],
    ids=["low>=high", "unknown-key", "unknown-param", "dropout-range", "unknown-metric", "yaml-syntax"],
)
def test_cli_user_errors_exit_2_with_one_clear_line(tmp_path, text, expected):
    space = tmp_path / "bad.yaml"
    space.write_text(text)
    for command in ("validate", "submit"):
        result = _run(command, str(space))
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        message = result.stderr.strip()
        assert len(message.splitlines()) <= 3, message
        for fragment in expected:
            assert fragment.lower() in message.lower(), (fragment, message)


def test_cli_prints_every_error_of_a_file_on_its_own_line(tmp_path):
    space = tmp_path / "bad.yaml"
    space.write_text("name: x\ntrainable: cnn\nmetric: val_accuracy\nparams:\n"
                     "  lr: {type: float, low: 0.1, hihg: 0.5}\n  dropuot: {type: float, low: 0.1, high: 0.5}\n")
    result = _run("validate", str(space))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ")[1] for line in lines] == [f"{space}:3", f"{space}:5", f"{space}:6"], lines
    assert all(line.startswith("Error: ") for line in lines)


def test_cli_missing_file_exits_2(tmp_path):
    result = _run("submit", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "nope.yaml" in result.stderr


def test_cli_bad_set_override_exits_2():
    result = _run("validate", str(REPO / "search_spaces/digits_cnn.yaml"), "--set", "budget.trials=0")
    assert result.exit_code == 2
    assert "--set budget.trials=0" in result.stderr and "budget.trials" in result.stderr


def test_cli_unreachable_cluster_exits_2_before_recording_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_HOME", str(tmp_path / "home"))
    result = _run("submit", str(REPO / "search_spaces/digits_mlp.yaml"), "--ray-address", "127.0.0.1:1",
                  "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert result.exit_code == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_cli_unknown_study_exits_2(tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_HOME", str(tmp_path))
    for command in ("status", "resume", "best"):
        result = _run(command, "no-such-study")
        assert result.exit_code == 2, (command, result.output)
        assert "no-such-study" in result.stderr


def test_cli_list_empty_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_HOME", str(tmp_path))
    assert json.loads(_run("list", "--json").stdout) == {"studies": []}


def test_cli_schema_is_json_schema_that_accepts_the_examples():
    import jsonschema
    import yaml

    schema = json.loads(_run("schema").stdout)
    assert "$schema" in schema
    for path in EXAMPLES:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_cli_start_up_imports_no_heavy_library():
    """`--help` and `validate` stay fast because Ray, torch and MLflow are not imported for them."""
    code = (
        "import sys; from click.testing import CliRunner; from service.cli import main; "
        f"r = CliRunner().invoke(main, ['validate', {str(REPO / 'search_spaces/digits_cnn.yaml')!r}]); "
        "assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in ('ray', 'torch', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_ui_with_a_tracking_server_prints_its_url():
    result = _run("ui", "--tracking-uri", "http://mlflow.example:5000")
    assert result.exit_code == 0
    assert "http://mlflow.example:5000" in result.stdout


def test_cli_ui_of_a_study_opens_the_store_it_was_recorded_in(tmp_path, monkeypatch):
    """`hpsearch ui ID` finds the study's own MLflow store, wherever the shell is now."""
    study = _recorded_study(tmp_path, monkeypatch, status="succeeded", mlflow_tracking_uri="http://mlflow.team:5000",
                            mlflow_experiment_id="7")
    result = _run("ui", study.id[:20], "--tracking-uri", "sqlite:///elsewhere.db")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "the MLflow server is at http://mlflow.team:5000/#/experiments/7/runs"


def test_cli_fresh_home_is_created_and_unknown_study_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HPSEARCH_HOME", str(tmp_path / "not" / "yet"))
    result = _run("status", "nope")
    assert result.exit_code == 2
    assert "no study 'nope'" in result.stderr and "hpsearch list" in result.stderr


def test_cli_unreachable_registry_exits_2(monkeypatch):
    monkeypatch.setenv("HPSEARCH_REGISTRY_URL", "postgresql+psycopg2://postgres@127.0.0.1:1/test")
    result = _run("list")
    assert result.exit_code == 2
    assert "cannot open the study registry postgresql+psycopg2://postgres@127.0.0.1:1/test" in result.stderr
    assert "Traceback" not in result.output


# -- the study verbs against the local registry (no Ray needed: rows written as a driver would) -----------
def _recorded_study(tmp_path, monkeypatch, status="running", **fields):
    from service._registry import Registry
    from service._runner import record_study
    from service._settings import resolve_settings
    from service.space import load_space

    monkeypatch.setenv("HPSEARCH_HOME", str(tmp_path / "home"))
    settings = resolve_settings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    registry = Registry(settings.registry_url)
    record = record_study(registry, load_space(REPO / "search_spaces/digits_mlp.yaml"), settings)
    return registry.update(record.id, status=status, **fields)


def test_cli_stop_of_a_study_whose_driver_is_gone_marks_it_stopped(tmp_path, monkeypatch):
    record = _recorded_study(tmp_path, monkeypatch, driver="some-other-host:4242")
    result = _run("stop", record.id[:-2])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"study {record.id}: stopped"
    status = json.loads(_run("status", record.id, "--json").stdout)
    assert status["status"] == "stopped" and status["stop_requested_at"] and status["trials"] == []
    assert "stop requested" in _run("logs", record.id).stdout


@pytest.mark.parametrize("status", ["succeeded", "failed", "stopped"])
def test_cli_stop_of_a_finished_study_exits_2_with_one_line(tmp_path, monkeypatch, status):
    record = _recorded_study(tmp_path, monkeypatch, status=status)
    result = _run("stop", record.id)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"Error: study {record.id} is already {status}; there is nothing to stop"]


def test_cli_best_writes_a_space_that_trains_the_best_configuration_once(tmp_path, monkeypatch):
    """The file `best -o` writes is a complete space: the study's own, its fixed values and the best searched
    ones together under fixed:, nothing searched, one trial, and the study it came from."""
    import yaml

    from service.space import load_space

    params = {"lr": 0.01, "optimizer": "adam", "hidden_layers": 2}
    record = _recorded_study(tmp_path, monkeypatch, status="succeeded", best_value=0.97, best_params=params,
                             best_trial=4)
    out = tmp_path / "best.yaml"
    result = _run("best", record.id, "-o", str(out))
    assert result.exit_code == 0 and "best val_acc = 0.97" in result.stdout
    written = yaml.safe_load(out.read_text())
    original = load_space(REPO / "search_spaces/digits_mlp.yaml")
    assert written["fixed"] == {**original.fixed, **params} and written["params"] == {}
    assert written["retrain_of"] == record.id and written["budget"]["trials"] == 1
    space = load_space(out)  # a valid space as it is
    assert (space.trainable, space.metric, space.data, space.budget.max_epochs) == \
        (original.trainable, original.metric, original.data, original.budget.max_epochs)
    assert json.loads(_run("best", record.id, "--json").stdout)["best_params"] == params


def test_cli_train_refuses_a_space_that_searches(tmp_path):
    result = _run("train", str(REPO / "search_spaces/digits_mlp.yaml"))
    assert result.exit_code == 2 and "trains one configuration" in result.stderr and "hpsearch best" in result.stderr


def test_cli_best_before_a_completed_trial_exits_2(tmp_path, monkeypatch):
    record = _recorded_study(tmp_path, monkeypatch)
    result = _run("best", record.id)
    assert result.exit_code == 2 and "has no completed trial yet (status running)" in result.stderr


def test_cli_logs_of_a_study_that_wrote_none_is_empty(tmp_path, monkeypatch):
    record = _recorded_study(tmp_path, monkeypatch, status="failed")
    result = _run("logs", record.id, "--follow", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"study_id": record.id, "text": "", "offset": 0, "finished": True,
                                         "status": "failed"}


@pytest.mark.parametrize("server,token,expected", [
    ("127.0.0.1:8000", "t" * 32, "--server '127.0.0.1:8000' is not a URL; give it as http://HOST:PORT"),
    ("http://127.0.0.1:1", None, "no token for the hpsearch server at http://127.0.0.1:1: set HPSEARCH_TOKEN"),
    ("http://127.0.0.1:1", "t" * 32, "cannot reach the hpsearch server at http://127.0.0.1:1 (Connection refused)"),
])
def test_cli_server_mistakes_exit_2_with_one_line(monkeypatch, server, token, expected):
    if token:
        monkeypatch.setenv("HPSEARCH_TOKEN", token)
    else:
        monkeypatch.delenv("HPSEARCH_TOKEN", raising=False)
    for args in (["list"], ["status", "x"], ["stop", "x"], ["resume", "x"], ["best", "x"], ["logs", "x"],
                 ["submit", str(REPO / "search_spaces/digits_cnn.yaml")]):
        result = _run(*args, "--server", server)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, lines)


@pytest.mark.parametrize("token", [None, "short"])
def test_cli_serve_refuses_a_missing_or_short_token(monkeypatch, token):
    if token:
        monkeypatch.setenv("HPSEARCH_TOKEN", token)
    else:
        monkeypatch.delenv("HPSEARCH_TOKEN", raising=False)
    result = _run("serve")
    assert result.exit_code == 2 and "HPSEARCH_TOKEN" in result.stderr and "token_hex(32)" in result.stderr


_EXIT_PROBE = """
import atexit, os, sys, threading, time
from pathlib import Path
import click
from service._cli_common import run_then_exit

out = Path(os.environ["PROBE_OUT"])

@click.command()
@click.argument("how")
def probe(how):
    atexit.register(lambda: (out / "atexit").write_text("ran"))
    print("answer")  # left in stdout's buffer: a pipe is block-buffered
    if how == "thread":  # a non-daemon thread still working: Python's own exit waits for it
        threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread").write_text("done"))).start()
    if how == "fail":
        sys.exit(3)
    if how == "message":
        sys.exit("no good")

run_then_exit(probe)
"""


@pytest.mark.parametrize("how,code", [("ok", 0), ("fail", 3), ("message", 1), ("thread", 0)])
def test_cli_exit_keeps_the_exit_code_the_output_and_the_exit_hooks(tmp_path, how, code):
    """`hpsearch` ends without Python's teardown (service._cli_common.run_then_exit), but as Python would:
    the command's exit code, stdout flushed, every atexit hook run, a running non-daemon thread waited for."""
    script = tmp_path / "probe.py"
    script.write_text(_EXIT_PROBE)
    done = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={**os.environ, "PROBE_OUT": str(tmp_path)})
    assert done.returncode == code, done.stderr
    assert done.stdout == "answer\n"
    assert (tmp_path / "atexit").read_text() == "ran"
    if how == "thread":
        assert (tmp_path / "thread").read_text() == "done"
    if how == "message":
        assert done.stderr.strip() == "no good"
