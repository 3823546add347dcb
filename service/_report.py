"""Report of an Optuna study: plots as HTML and PNG, every trial in `trials.csv`, and `report_notes.txt`
(the two tables: service/_report_tables.py).

The driver logs the folder as artifacts of the study's MLflow parent run, at the end of a study and
periodically while it runs. A report may therefore be asked for an empty study, one whose trials all failed,
or one with a single result: plots that cannot be drawn yet are skipped, and the notes say which and why,
rather than the report raising or logging blank figures.

The interactive plots come from `optuna.visualization` (plotly), all in one `report.html` that carries
plotly.js itself, once (about 4 MB): it draws with no network, on an air-gapped cluster and in the MLflow UI's
artifact preview alike. Each plot is also a PNG, from `optuna.visualization.matplotlib`, because rendering
plotly to PNG needs kaleido and Chrome, which the driver machines do not have.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from service._report_tables import param_names, write_notes, write_trials_csv

logger = logging.getLogger(__name__)

# fANOVA rather than Optuna 5's default PED-ANOVA: PED-ANOVA ranks params by what separates the best
# ~10 % of trials, which is 2–4 trials in our studies, and with `target` it assumes lower is better, so a
# maximised metric would need negating. 32 trees instead of 64 halve the time (0.15 s vs 0.27 s for 40
# trials x 10 params; it runs three times: here to pick params, then once per plot) with the same top two,
# and the seed makes the three runs agree.
_IMPORTANCE_TREES = 32
_IMPORTANCE_SEED = 0
_PNG_DPI = 100
# Beyond this many entries a legend (one per trial in the learning curves) is taller than the plot and
# names no line anyone can find; the PNG drops it, the HTML keeps hover labels.
_MAX_LEGEND_ENTRIES = 20

# What drawing a report imports, in the order it needs them (optuna.importance: scikit-learn, for fANOVA). A
# driver imports them only when a redraw is due (service/_report_drawer.py).
PLOTTING_MODULES = ("optuna.importance", "plotly.graph_objects", "plotly.offline", "optuna.visualization",
                    "matplotlib.pyplot", "optuna.visualization.matplotlib")

NOTES_FILE = "report_notes.txt"
TRIALS_FILE = "trials.csv"
HTML_FILE = "report.html"


def write_study_report(
    study: optuna.Study,
    out_dir: str | Path,
    *,
    metric_names: list[str],
    top_params: int = 2,
) -> list[Path]:
    """Write the report of `study` into `out_dir` (created if missing) and return the paths written.

    `metric_names` names the study's objectives, in order; `top_params` is how many of the most important
    params the slice and contour plots show. Paths come in a fixed order: each plot's `.png` in the order of
    `_PLOT_ORDER`, then `report.html` (every interactive plot, in the same order, each in a section
    `id="plot-<name>"`), then `trials.csv`, then `report_notes.txt`. Files from an earlier report into the same
    folder are not removed.
    """
    _check_args(study, metric_names, top_params)
    with _DRAWING:  # pyplot keeps global state: one drawing at a time (service/_report_drawer.py draws too)
        return _write(study, Path(out_dir), metric_names, top_params)


_DRAWING = threading.Lock()


def _write(study: optuna.Study, out: Path, metric_names: list[str], top_params: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)

    trials = study.get_trials(deepcopy=False)
    notes: list[str] = []
    written: list[Path] = []
    sections: list[tuple[str, str]] = []  # (plot name, its plotly div)
    for name, kwargs in _plan_plots(study, trials, metric_names, top_params, notes):
        written += _draw(study, name, kwargs, out, notes, sections)
    written.append(_write_html(study, sections, out / HTML_FILE))
    written.append(write_trials_csv(trials, metric_names, out / TRIALS_FILE))
    written.append(write_notes(study, trials, notes, out / NOTES_FILE))
    return written


def _check_args(study: optuna.Study, metric_names: list[str], top_params: int) -> None:
    n_objectives = len(study.directions)
    if len(metric_names) != n_objectives:
        raise ValueError(
            f"`metric_names` is {metric_names!r}, but study {study.study_name!r} has {n_objectives} "
            f"objective(s); pass one name per objective, in the order of `study.directions`."
        )
    if top_params < 1:
        raise ValueError(f"`top_params` is {top_params}, but must be >= 1.")


# ---------------------------------------------------------------------------------------------- planning

_PLOT_ORDER = (
    "optimization_history",
    "param_importances",
    "parallel_coordinate",
    "intermediate_values",
    "slice",
    "contour",
    "pareto_front",
)


def _plan_plots(
    study: optuna.Study,
    trials: list[FrozenTrial],
    metric_names: list[str],
    top_params: int,
    notes: list[str],
) -> list[tuple[str, dict[str, Any]]]:
    """The plots that can be drawn, in `_PLOT_ORDER`, each with the keyword arguments for both plotters.

    A plot that cannot be drawn goes to `notes` with the reason. Optuna itself would draw most of them
    empty with a log warning, which in MLflow looks like a bug in the report.
    """
    scope = _Scope.of(study, trials, metric_names, top_params)
    plan = []
    for name in _PLOT_ORDER:
        decision = _PLANNERS[name](scope)
        if isinstance(decision, str):
            notes.append(f"{name}: {decision}")
        elif decision is not None:
            plan.append((name, decision))
    return plan


@dataclass
class _Scope:
    """What the plots' decisions read: the scored trials, the importances, the params to show."""

    study: optuna.Study
    trials: list[FrozenTrial]
    metric_names: list[str]
    top_params: int
    scored: list[FrozenTrial]  # completed, with a finite first value
    common: dict[str, Any]  # the target keyword arguments every single-objective plot takes
    importances: dict[str, float]
    importances_skip: Optional[str]  # why there are no importances, or None
    evaluator: Any

    @classmethod
    def of(cls, study, trials, metric_names, top_params) -> "_Scope":
        multi = len(study.directions) > 1
        # Single-objective plots show the first objective of a multi-objective study; Optuna refuses a
        # multi-objective study without `target`.
        target = {"target": _first_value} if multi else {}
        scored = [t for t in trials if t.state == TrialState.COMPLETE and _is_finite(t.values[0])]
        scope = cls(study, trials, metric_names, top_params, scored, {**target, "target_name": metric_names[0]}, {},
                    None, None)
        scope.importances_skip = scope._compute_importances(target)
        return scope

    @property
    def multi(self) -> bool:
        return len(self.study.directions) > 1

    @property
    def target_name(self) -> str:
        return self.metric_names[0]

    @property
    def no_result(self) -> str:
        return f"no completed trial with a finite {self.target_name!r} yet"

    @property
    def too_few(self) -> str:
        return f"needs >= 2 completed trials with a finite {self.target_name!r}, has {len(self.scored)}"

    @property
    def chosen(self) -> list[str]:
        """The `top_params` most important params: what slice and contour show."""
        return _rank_params(self.scored, self.importances)[: self.top_params]

    def _compute_importances(self, target: dict) -> Optional[str]:
        varied = [p for p in _common_params(self.scored) if _varies(self.scored, p)]
        if len(self.scored) < 2:
            return self.too_few
        if not varied:
            return "no param present in every completed trial takes more than one value"
        if len({_first_value(t) for t in self.scored}) == 1:
            return f"every completed trial has the same {self.target_name!r}"
        self.evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=_IMPORTANCE_TREES, seed=_IMPORTANCE_SEED)
        try:
            self.importances = optuna.importance.get_param_importances(self.study, evaluator=self.evaluator, **target)
        except Exception as exc:  # a report must not end the study; the reason goes to the notes
            return f"importances could not be computed: {_describe(exc)}"
        return None


# Each plot's decision: its keyword arguments, a reason it cannot be drawn (str), or None (nothing to note).
def _plan_history(s: _Scope):
    return s.common if s.scored else s.no_result


def _plan_importances(s: _Scope):
    return s.importances_skip or {"evaluator": s.evaluator, **s.common}


def _plan_parallel(s: _Scope):
    if not s.scored:
        return s.no_result
    return s.common if param_names(s.scored) else "the completed trials have no params"


def _plan_intermediate(s: _Scope):
    if s.multi:  # Optuna's `Trial.report` refuses multi-objective trials, so there are no curves to draw
        return "the study has several objectives; Optuna records no intermediate values"
    return {} if any(t.intermediate_values for t in s.trials) else "no trial has reported an intermediate value yet"


def _plan_slice(s: _Scope):
    if not s.scored:
        return s.no_result
    return {"params": s.chosen, **s.common} if s.chosen else "the completed trials have no params"


def _plan_contour(s: _Scope):
    chosen = s.chosen
    if len(s.scored) < 2:
        return s.too_few
    if len(chosen) < 2:
        return f"needs >= 2 params, has {len(chosen)}: {chosen} (top_params={s.top_params})"
    if not _seen_together(s.scored, chosen):
        return f"no two of the params {chosen} were both suggested in >= 2 completed trials"
    return {"params": chosen, **s.common}


def _plan_pareto(s: _Scope):
    if not s.multi:
        return None  # only meaningful for several objectives; nothing to note
    if len(s.study.directions) > 3:
        return f"Optuna draws 2 or 3 objectives, the study has {len(s.study.directions)}"
    if not any(t.state == TrialState.COMPLETE and all(map(_is_finite, t.values)) for t in s.trials):
        return "no completed trial with finite values for every objective yet"
    return {"target_names": list(s.metric_names)}


_PLANNERS = {
    "optimization_history": _plan_history,
    "param_importances": _plan_importances,
    "parallel_coordinate": _plan_parallel,
    "intermediate_values": _plan_intermediate,
    "slice": _plan_slice,
    "contour": _plan_contour,
    "pareto_front": _plan_pareto,
}


def _first_value(trial: FrozenTrial) -> float:
    return trial.values[0]


def _is_finite(value: Optional[float]) -> bool:
    return value is not None and math.isfinite(value)


def _common_params(trials: list[FrozenTrial]) -> list[str]:
    """Params suggested in every one of `trials`: the only ones fANOVA ranks."""
    return [p for p in param_names(trials) if all(p in t.params for t in trials)]


def _varies(trials: list[FrozenTrial], param: str) -> bool:
    # repr, because 1, 1.0 and True are equal as set members but are different choices of a categorical.
    return len({repr(t.params[param]) for t in trials if param in t.params}) > 1


def _rank_params(trials: list[FrozenTrial], importances: dict[str, float]) -> list[str]:
    """Params for the slice and contour plots, best first.

    The most important first. Params fANOVA did not rank (conditional ones, or all of them when the
    importances were skipped) come after; among those, params that vary before constant ones, then those
    suggested in more trials, then in the order they were first suggested (`sorted` is stable).
    """

    def key(param: str) -> tuple[float, bool, int]:
        n_trials_with_param = sum(param in t.params for t in trials)
        return (-importances.get(param, 0.0), not _varies(trials, param), -n_trials_with_param)

    return sorted(param_names(trials), key=key)


def _seen_together(trials: list[FrozenTrial], params: list[str]) -> bool:
    """Whether some pair of `params` was suggested together in >= 2 trials: else every contour is empty."""
    return any(
        sum(a in t.params and b in t.params for t in trials) >= 2
        for i, a in enumerate(params)
        for b in params[i + 1 :]
    )


# ----------------------------------------------------------------------------------------------- drawing


def _draw(study: optuna.Study, name: str, kwargs: dict[str, Any], out: Path, notes: list[str],
          sections: list[tuple[str, str]]) -> list[Path]:
    """Write `<name>.png` and add the interactive plot to `sections`; return the PNG if it was written. A plot
    that fails in either form is noted and costs neither the others nor the study."""
    written = []
    try:
        sections.append((name, _plotly_div(study, name, kwargs)))
    except Exception as exc:  # noqa: BLE001
        logger.warning("Study report: could not draw %s: %s", name, _describe(exc))
        notes.append(f"{name} (interactive): not drawn, {_describe(exc)}")
    path = out / f"{name}.png"
    try:
        _save_png(study, name, kwargs, path)
        written.append(path)
    except Exception as exc:  # noqa: BLE001
        logger.warning("Study report: could not write %s: %s", path.name, _describe(exc))
        notes.append(f"{path.name}: not written, {_describe(exc)}")
    return written


def _plotly_div(study: optuna.Study, name: str, kwargs: dict[str, Any]) -> str:
    import optuna.visualization as plotly_plots

    fig = getattr(plotly_plots, f"plot_{name}")(study, **kwargs)
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{name}")


def _write_html(study: optuna.Study, sections: list[tuple[str, str]], path: Path) -> Path:
    """One page with every interactive plot and plotly.js inlined once: no network needed to draw it."""
    import html

    from plotly.offline import get_plotlyjs

    body = "\n".join(f'<section id="plot-{name}"><h2>{name.replace("_", " ")}</h2>\n{div}</section>'
                     for name, div in sections) or "<p>No plot could be drawn yet; see report_notes.txt.</p>"
    title = html.escape(f"study {study.study_name}")
    path.write_text(
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>\n'
        f"<script>{get_plotlyjs()}</script></head>\n<body><h1>{title}</h1>\n{body}\n</body></html>\n",
        encoding="utf-8",
    )
    return path


def _save_png(study: optuna.Study, name: str, kwargs: dict[str, Any], path: Path) -> None:
    import matplotlib

    # Selected here, not at import: the driver may run where a display exists, and importing this module
    # must not change the backend of a process that plots for itself.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna.visualization.matplotlib as mpl_plots

    _silence_plotting_notes()
    already_open = set(plt.get_fignums())
    try:
        axes = getattr(mpl_plots, f"plot_{name}")(study, **kwargs)
        # Slice and contour plots of several params return a grid of axes that share one figure.
        fig = np.ravel(axes)[0].figure
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is not None and len(legend.get_texts()) > _MAX_LEGEND_ENTRIES:
                legend.remove()
        fig.savefig(path, dpi=_PNG_DPI, bbox_inches="tight")
    finally:
        # Every figure this call opened, including those of a plot that raised half-way: pyplot keeps
        # them alive otherwise, and a periodic report would leak one per plot per report.
        for number in set(plt.get_fignums()) - already_open:
            plt.close(number)


def _silence_plotting_notes() -> None:
    """Silence the warnings of drawing a PNG that are not for the user, by where they come from rather than for
    the time of a call: `warnings.catch_warnings` changes the filters of every thread, and the report is drawn
    on a thread of its own while Tune's loop runs. They are Optuna's notes that its matplotlib plots are
    experimental (raised on the calling line, here), and matplotlib's notes on degenerate axes (one trial, one
    value), which are about the data and which matplotlib attributes to Optuna's plotting modules. Checked for
    each PNG, so that a `catch_warnings` block of another thread that ended meanwhile cannot have dropped them."""
    for category, module in ((optuna.exceptions.ExperimentalWarning, r"service\._report$"),
                             (UserWarning, r"optuna\.(visualization|importance)\.")):
        # Only when missing: adding a filter again resets every module's "warned once" memory.
        if not any(f[0] == "ignore" and f[2] is category and f[3] is not None and f[3].pattern == module
                   for f in warnings.filters):
            warnings.filterwarnings("ignore", category=category, module=module)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
