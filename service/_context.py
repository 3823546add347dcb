"""One study as the runner's rooms see it: what does not change while the study runs.

The runner builds a `StudyContext` once the study's records are open and hands it to the Tuner's parts (the
searcher, the MLflow logger, the progress callback) and to the code that closes the records. It is frozen and
picklable: Tune pickles the callbacks that hold it into its experiment state and unpickles them on resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from service._settings import Settings

if TYPE_CHECKING:
    from service.space import SearchSpace


@dataclass(frozen=True)
class StudyContext:
    study_id: str  # also the Optuna study's name and the MLflow parent run's name
    space: "SearchSpace"
    stores: Settings  # the study's own stores: its MLflow and Optuna never move, whatever today's defaults
    experiment_id: str  # MLflow experiment (one per space name)
    parent_run_id: str  # MLflow run of the study; every trial's run is nested under it
    tune_path: Path  # Tune's experiment folder: checkpoints and the state `resume` restores
    ray_address: Optional[str] = None  # None: an embedded Ray
    show_progress: bool = True  # progress on stderr (the study log is written either way)
    register: Optional[str] = None  # Model Registry name for the best model

    @property
    def metric(self) -> str:
        """The primary metric: what ASHA acts on and what "best" means."""
        return self.space.metrics[0]

    @property
    def mode(self) -> str:
        return self.space.modes[0]

    @property
    def objectives(self) -> tuple[Any, Any]:
        """(metric, mode) as Optuna and the searcher take them: plain for one objective, lists for several."""
        if self.space.is_multi_objective:
            return list(self.space.metrics), list(self.space.modes)
        return self.metric, self.mode

    @property
    def optuna_storage(self) -> str:
        return self.stores.optuna_storage

    @property
    def log_path(self) -> str:
        return str(self.stores.log_path(self.study_id))
