"""A short human summary of a space, with a few configurations it would try (for `hpsearch validate`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import num, show
from ._rungs import first_checked, first_trained_in_full, judged_epochs, max_brackets

if TYPE_CHECKING:
    from ._model import SearchSpace


def preview(space: "SearchSpace", n: int = 3) -> str:
    """Parameters with their distributions and conditions, the settings in one line each, and `n` sampled
    configurations (random sampling through the same define-by-run code the study uses, so conditionals
    show up as they will in trials)."""
    lines = [f"{space.name}: {space.trainable} on {_data(space)}; {_objective(space)}"]
    if space.description:
        lines.append(f"  {space.description.strip().splitlines()[0]}")
    width = max(len(name) for name in space.params)
    lines.append(f"params ({len(space.params)} searched):")
    for name, param in space.params.items():
        condition = ""
        if param.when:
            condition = "  when " + " and ".join(
                f"{parent} = {_values(values)}" for parent, values in param.when.items()
            )
        lines.append(f"  {name:<{width}}  {param.describe()}{condition}")
    if space.fixed:
        lines.append("fixed:     " + ", ".join(f"{k}={_plain(v)}" for k, v in space.fixed.items()))
    lines.append(f"budget:    {_budget(space)}")
    lines.append(f"resources: {num(space.resources.cpu)} cpu, {num(space.resources.gpu)} gpu per trial")
    lines.append(f"sampler:   {_sampler(space)}")
    lines.append(f"scheduler: {_scheduler(space)}")
    if n > 0:
        lines.append(f"{n} sampled configurations (random):")
        for index, config in enumerate(_samples(space, n), start=1):
            lines.append(f"  {index}. " + " ".join(f"{k}={_plain(v)}" for k, v in config.items()))
    return "\n".join(lines)


def _data(space: "SearchSpace") -> str:
    data = space.data
    where = data.path or data.root
    text = f"{data.dataset}" + (f" ({where})" if where else "")
    return f"{text}, {num(data.val_fraction)} held out"


def _objective(space: "SearchSpace") -> str:
    return ", ".join(f"{'maximize' if mode == 'max' else 'minimize'} {metric}" for metric, mode in zip(space.metrics, space.modes))


def _budget(space: "SearchSpace") -> str:
    budget = space.budget
    parts = [f"{budget.trials} trials x up to {budget.max_epochs} epochs", f"{budget.concurrency} at a time"]
    parts.append(f"time limit {budget.time_text}" if budget.time_text else "no time limit")
    if budget.max_failed_trials is not None:
        parts.append(f"stop after {budget.max_failed_trials} failed trials")
    return ", ".join(parts)


def _sampler(space: "SearchSpace") -> str:
    sampler = space.sampler
    details = [f"seed {sampler.seed}" if sampler.seed is not None else "unseeded"]
    if sampler.deterministic:
        details.append(f"deterministic: trial k starts after trials 0..k-{space.budget.concurrency} finished")
    details += [f"{k}={_plain(v)}" for k, v in sampler.options.items()]
    return f"{sampler.type} ({', '.join(details)})"


def _scheduler(space: "SearchSpace") -> str:
    s = space.scheduler
    grace = _grace(space)
    if s.type == "asha":
        max_epochs = space.budget.max_epochs
        judged = [judged_epochs(max_epochs, space.grace_epochs, s.reduction_factor, b) for b in range(s.brackets)]
        if s.brackets == 1:
            where = f"judged at epoch{'s' if len(judged[0]) > 1 else ''} {', '.join(map(str, judged[0]))}, "
        else:  # one bracket's epochs after another, and the rest on a line of its own under them
            where = ("trials dealt in turn, judged at epochs "
                     + " | ".join(", ".join(map(str, epochs)) if epochs else "never" for epochs in judged)
                     + ",\n" + " " * len("           rungs: "))
        rungs = (f"{where}keeping the best 1/{num(s.reduction_factor)} at each; survivors run to {max_epochs}"
                 if any(judged) else f"no rung before max_epochs {max_epochs}: no trial is stopped")
        brackets = f", {s.brackets} brackets" if s.brackets > 1 else ", rung check" if s.rung_check else ""
        text = (f"asha (grace_period {grace}, reduction_factor {num(s.reduction_factor)}{brackets}, on {space.metrics[0]})"
                f"\n           rungs: {rungs}")
        if s.rung_check and judged[0]:
            full = ", ".join(str(k + 1) for k in first_trained_in_full(6))
            text += ("\n           rung check: trials " + full + ", ... train in full; a rung at which the best"
                     "\n           of them would have been stopped is skipped, with the rungs before it, by the trials"
                     "\n           after (curves that cross move the study to later rungs, or to none)")
            first = first_checked(space.budget.concurrency if space.sampler.deterministic else None)
            if space.budget.trials <= first:
                text += (f"\n           note: budget.trials {space.budget.trials} is too few for it: the first trial it"
                         f"\n           can check is trial {first + 1}; raise budget.trials or drop rung_check")
        quarter = s.model_copy(update={"grace_period": "25%"}).grace_epochs(max_epochs)  # as "25%" resolves
        if judged[0] and judged[0][0] < quarter and all(judged) and not s.rung_check:
            most = max_brackets(max_epochs, space.grace_epochs, s.reduction_factor)
            text += ("\n           note: judging before a quarter of max_epochs stops slow starters; if your curves"
                     "\n           cross (warm-up, cosine or step schedules, wide models), prefer rung_check: true"
                     "\n           (skips the rungs that would have stopped the best of a few trials trained in full),"
                     f"\n           grace_period: \"25%\", brackets: {most} (a share of trials never stopped) or fifo"
                     "\n           (README: Choosing a sampler and scheduler)")
        return text
    if s.type == "median":
        return f"median (grace_period {grace}, min_samples_required {s.min_samples_required})"
    return "fifo (every trial runs max_epochs)"


def _grace(space: "SearchSpace") -> str:
    given = space.scheduler.grace_period
    epochs = space.grace_epochs
    if isinstance(given, int):
        return str(given)
    share = given if isinstance(given, str) else num(given)
    return f"{share} of {space.budget.max_epochs} = {epochs} epoch{'s' if epochs > 1 else ''}"


def _samples(space: "SearchSpace", n: int) -> list[dict[str, Any]]:
    import optuna

    from ._compile import suggest_params

    sampler = optuna.samplers.RandomSampler(seed=space.sampler.seed if space.sampler.seed is not None else 0)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
    try:
        study = optuna.create_study(sampler=sampler, directions=["maximize"] * len(space.metrics))
    finally:
        optuna.logging.set_verbosity(verbosity)
    return [suggest_params(space, study.ask()) for _ in range(n)]


def _values(values: tuple) -> str:
    return _plain(values[0]) if len(values) == 1 else "[" + ", ".join(_plain(v) for v in values) + "]"


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return show(value)
