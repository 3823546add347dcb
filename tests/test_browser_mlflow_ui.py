"""What a person sees: a real MLflow server on loopback, a tiny study logged to it over HTTP, and the
experiment page opened in headless Chromium (Debian's chromium + chromium-driver, driven by selenium).

.ci/run installs chromium and chromium-driver; elsewhere the test is skipped when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import support

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
USER_TRAINABLES = Path(__file__).parent / "user_trainables"

SPACE = """
name: browser-check
trainable: "flaky:train"
metric: score
budget: {trials: 3, max_epochs: 2, concurrency: 2}
sampler: {type: random, seed: 1}
scheduler: {type: fifo}
params:
  x: {type: float, low: 0.0, high: 0.5}
"""


@pytest.fixture
def mlflow_server(tmp_path):
    with support.mlflow_server(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}") as url:
        yield url


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1600,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(15)
    yield driver
    driver.quit()


def test_mlflow_ui_lists_trials_under_the_study_with_a_parameter_column(mlflow_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    env = dict(os.environ, HPSEARCH_HOME=str(tmp_path / "home"), MLFLOW_TRACKING_URI=mlflow_server,
               PYTHONPATH=str(USER_TRAINABLES))
    done = subprocess.run([sys.executable, "-m", "service.cli", "submit", str(space), "--json", "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)

    browser.get(f"{mlflow_server}/#/experiments/{summary['mlflow_experiment_id']}/runs")
    parent = browser.find_element(By.PARTIAL_LINK_TEXT, summary["study_id"])
    assert browser.find_elements(By.PARTIAL_LINK_TEXT, "trial-") == []  # nested: hidden until expanded
    parent.find_element(By.XPATH, "./ancestor::div[@role='gridcell'][1]").find_element(By.TAG_NAME, "button").click()
    names = sorted(e.text for e in browser.find_elements(By.PARTIAL_LINK_TEXT, "trial-"))
    assert [n.split()[0] for n in names] == ["trial-0000", "trial-0001", "trial-0002"]
    assert all(" x=" in n for n in names)  # run names carry the searched value

    # Add the searched parameter as a column, as a person comparing trials would.
    browser.find_element(By.XPATH, "//button[normalize-space(.)='Columns']").click()
    browser.find_element(By.XPATH, "//*[@role='dialog']//*[normalize-space(text())='x']").click()
    column = "params.`x`"
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)  # close the menu
    header = browser.find_element(By.XPATH, f"//div[@role='columnheader'][@col-id='{column}']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'nearest', inline: 'center'});", header)
    time.sleep(1)
    assert header.is_displayed() and header.text.strip() == "x"
    cells = [c.text for c in browser.find_elements(By.XPATH, f"//div[@role='gridcell'][@col-id='{column}']")]
    assert sum(1 for c in cells if c.strip()) >= 3, cells  # the three trials' values
    browser.save_screenshot(str(tmp_path / "mlflow-ui.png"))
    assert (tmp_path / "mlflow-ui.png").stat().st_size > 10_000


def test_study_report_draws_every_interactive_plot_with_the_network_blocked(tmp_path, browser):
    """report.html carries plotly.js itself: on an air-gapped machine every plot still draws. The browser's
    requests to any host fail (no proxy answers, no name resolves), as they would with no network at all."""
    import optuna
    from selenium.webdriver.common.by import By

    from service._report import HTML_FILE, write_study_report

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="offline", sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        for step in range(3):
            trial.report(x * (step + 1) / 3, step)
        return x - y

    study.optimize(objective, n_trials=8)
    write_study_report(study, tmp_path / "report", metric_names=["score"])
    sections = len(list((tmp_path / "report").glob("*.png")))

    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions",
                            {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    browser.get((tmp_path / "report" / HTML_FILE).as_uri())
    drawn = browser.find_elements(By.CSS_SELECTOR, "section .js-plotly-plot .main-svg")
    figures = {e.find_element(By.XPATH, "./ancestor::section").get_attribute("id") for e in drawn}
    assert len(figures) == sections >= 6, figures
