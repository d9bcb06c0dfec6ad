"""``tune()``: a resumable hyper-parameter search on Optuna, then the best config trained once
more and evaluated once on the test split."""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lepton_platform.api.config import RunConfig, SearchSection, load_config, parse_config
from lepton_platform.api.tuning.space import SearchSpace
from lepton_platform.api.tuning.study import default_storage, open_study
from lepton_platform.errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from lepton_platform.data import DataBundle

__all__ = ["TuneResult", "tune", "worker_seed"]

FINISHED = ("COMPLETE", "PRUNED")
#: How long the final step waits for other workers' running trials (a dead worker's trial is
#: failed by its missed heartbeats well before).
WAIT_FOR_RUNNING_S = 900.0


@dataclass
class TuneResult:
    """What a search found. ``best_params`` maps dotted config keys to the best trial's values;
    ``final`` is the final model's ``result.json`` content (``None`` when it was not trained)."""

    study_name: str
    storage: str
    folder: Path
    metric: str
    direction: str
    best_value: float | None
    best_params: dict[str, Any]
    best_number: int | None
    counts: dict[str, int]
    best_config: Path | None = None
    final: dict[str, Any] | None = None
    report: Path | None = None
    importances: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "study": self.study_name,
            "storage": self.storage,
            "folder": str(self.folder),
            "metric": self.metric,
            "direction": self.direction,
            "best_value": self.best_value,
            "best_params": self.best_params,
            "best_number": self.best_number,
            "counts": self.counts,
            "best_config": None if self.best_config is None else str(self.best_config),
            "final": self.final,
            "report": None if self.report is None else str(self.report),
            "importances": self.importances,
        }


def _as_config(config: RunConfig | str | os.PathLike[str] | Mapping[str, Any]) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, str | os.PathLike):
        return load_config(Path(config))
    if isinstance(config, Mapping):
        if set(config) <= set(RunConfig.SECTIONS):
            return parse_config(dict(config), where="tune() config")
        return RunConfig.from_transfer_kwargs(**dict(config))
    raise ConfigError(
        f"tune(): expected a RunConfig, a YAML path or a mapping, got {type(config).__name__}"
    )


def worker_seed(seed: int | None, worker: str, trials_before: int) -> int | None:
    """The sampler seed of one worker: derived from the study's ``search.seed``, the worker's
    name and how many trials the study held when it joined, so that two workers (or a resumed
    search) never draw the same sequence of settings; ``None`` (random) stays ``None``."""
    from lepton_platform.engine._loop_utils import derive_seed

    if seed is None:
        return None
    return derive_seed(seed, "tune-worker", worker, trials_before) % 2**32  # numpy's range


def _sampler(section: SearchSection, seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    if section.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)


class DuplicateSettings(Exception):
    """A trial drew the settings of a finished (or running) trial; it is failed, not run."""


def _pruner(section: SearchSection) -> optuna.pruners.BasePruner:
    import optuna

    if section.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if section.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def tune(
    config: RunConfig | str | os.PathLike[str] | Mapping[str, Any],
    search_space: SearchSpace | Mapping[str, Any] | None = None,
    n_trials: int | None = None,
    storage: str | None = None,
    *,
    study_name: str | None = None,
    resume: bool = False,
    output_dir: str | os.PathLike[str] | None = None,
    final: bool | None = None,
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
    worker: str | None = None,
) -> TuneResult:
    """Search the config's (or ``search_space``'s) keys for the best validation score.

    ``config`` is a :class:`RunConfig`, a YAML path, or a mapping (config sections, or the
    arguments of :func:`~lepton_platform.transfer`). Trials run until the study holds
    ``n_trials`` finished (complete or pruned) trials, counting those of earlier or parallel
    workers; ``storage`` is any database URL Optuna accepts (default: ``sqlite:///`` in the run
    folder). At the end the best config is written to ``best_config.yaml``, trained into
    ``final/`` and evaluated once on the test split (``final=False`` skips this, e.g. for extra
    workers), and ``report.md``/``report.html`` show the history and the importances.

    Each worker samples with its own seed (:func:`worker_seed`: the search seed, ``worker``,
    by default this host and process, and the trials already in the study), and a trial that
    draws the settings of a finished or running one is failed without training, so no two
    trials train the same settings. With many workers, one trains the final model: the first
    to claim it once no trial is running; the others leave it.

        >>> from lepton_platform import tune                          # doctest: +SKIP
        >>> result = tune("tabular.yaml", {"train.lr": {"low": 1e-3, "high": 0.3, "log": True}},
        ...               n_trials=20)                                        # doctest: +SKIP
        >>> result.best_params, result.final["metrics"]["test"]             # doctest: +SKIP
    """
    import optuna

    from lepton_platform.api.tuning.objective import PruningCallback, monitor_of, run_trial
    from lepton_platform.api.tuning.report import write_tune_report

    say = progress or (lambda message: None)
    run_config = _as_config(config)
    space = SearchSpace.parse(run_config.search if search_space is None else search_space)
    space.check(run_config)
    target = int(n_trials if n_trials is not None else run_config.search.trials)
    if target < 1:
        raise ConfigError(f"--trials must be at least 1, got {target}")
    folder = (
        Path(output_dir)
        if output_dir is not None
        else Path(run_config.output.root) / str(run_config.output.name or "tune")
    )
    folder = folder.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    url = storage or default_storage(folder)
    name = study_name or str(run_config.output.name or folder.name)
    monitor = monitor_of(run_config)
    metric = monitor.name
    direction = "maximize" if monitor.higher_is_better else "minimize"
    snapshot = run_config.snapshot()
    snapshot["search"]["space"] = space.distributions()
    study = open_study(
        storage=url,
        study_name=name,
        snapshot=snapshot,
        direction=direction,
        sampler=_sampler(run_config.search, run_config.search.seed),
        pruner=_pruner(run_config.search),
        resume=resume,
    )
    me = worker or f"{socket.gethostname()}-{os.getpid()}"
    seed = worker_seed(run_config.search.seed, me, len(study.get_trials(deepcopy=False)))
    study.sampler = _sampler(run_config.search, seed)
    bundle = _load_bundle(run_config)
    base = run_config.snapshot()
    base.pop("search", None)

    def objective(trial: optuna.trial.Trial) -> float:
        values = space.suggest(trial)
        twin = _same_settings(study, trial)
        if twin is not None:
            trial.set_user_attr("duplicate_of", twin)
            raise DuplicateSettings(f"trial {trial.number} drew the settings of trial {twin}")
        trial_config = parse_config(space.apply(base, values), where=f"trial {trial.number}")
        pruning = PruningCallback(trial, monitor)
        try:
            outcome = run_trial(trial_config, bundle, callbacks=(pruning,))
        finally:
            trial.set_user_attr("epochs_reported", pruning.step)
        trial.set_user_attr(
            "validation",
            {
                k: _json_value(v)
                for k, v in outcome.validation.items()
                if isinstance(v, int | float)
            },
        )
        trial.set_user_attr("seconds", outcome.seconds)
        return outcome.value

    done = _counts(study)
    remaining = max(0, target - sum(done.get(s, 0) for s in FINISHED))
    attempts = [0]

    def announce(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        twin = trial.user_attrs.get("duplicate_of")
        if twin is not None:
            say(f"trial {trial.number} drew the settings of trial {twin}: not run")
        else:
            value = "" if trial.value is None else f" {metric} {trial.value:.4g}"
            say(f"trial {trial.number} {trial.state.name.lower()}{value} {trial.params}")
        attempts[0] += 1
        if attempts[0] >= 2 * remaining + 10:  # a small space whose settings are all taken
            say("stopping: the sampler keeps drawing settings that were tried already")
            study.stop()

    say(f"study {name!r} in {url}: {sum(done.values())} trials so far, {remaining} to run")
    if remaining:
        study.optimize(
            objective,
            n_trials=None,
            timeout=timeout,
            catch=(DuplicateSettings,),
            callbacks=[
                optuna.study.MaxTrialsCallback(
                    target,
                    states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED),
                ),
                announce,
            ],
            gc_after_trial=True,
        )
    return _finish(
        study,
        space,
        base,
        bundle,
        folder,
        url,
        name,
        metric,
        direction,
        run_config.search.final if final is None else final,
        say,
        write_tune_report,
    )


def _same_settings(study: optuna.Study, trial: optuna.trial.Trial) -> int | None:
    """The number of a finished or running trial with ``trial``'s settings, if any."""
    import optuna

    states = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.RUNNING,
    )
    for other in study.get_trials(deepcopy=False, states=states):
        if other.number != trial.number and other.params == trial.params:
            return other.number
    return None


def _counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def _load_bundle(config: RunConfig) -> DataBundle:
    from lepton_platform.api.job import resolve_data, resolve_domain

    kwargs = config.to_transfer_kwargs()
    domain = resolve_domain(kwargs["domain"], kwargs["domain_options"])
    return resolve_data(domain, kwargs["data"], kwargs["split"], kwargs["on_bad_record"])


def _finish(
    study: optuna.Study,
    space: SearchSpace,
    base: dict[str, Any],
    bundle: DataBundle,
    folder: Path,
    url: str,
    name: str,
    metric: str,
    direction: str,
    final: bool,
    say: Callable[[str], None],
    write_report: Callable[[Path, Mapping[str, Any], optuna.Study], tuple[Path, Path]],
) -> TuneResult:
    import optuna

    from lepton_platform._io import atomic_write_json, atomic_write_text

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    result = TuneResult(name, url, folder, metric, direction, None, {}, None, _counts(study))
    if complete:
        best = study.best_trial
        values = space.suggest(optuna.trial.FixedTrial(best.params, best.number))
        result.best_value, result.best_params, result.best_number = best.value, values, best.number
        raw = space.apply(base, values)
        raw["output"] = {"root": str(folder.absolute()), "name": "final"}
        best_config = parse_config(raw, where=f"best trial {best.number}")
        text = yaml.safe_dump(
            {k: v for k, v in best_config.snapshot().items() if k != "search"}, sort_keys=False
        )
        header = (
            f"# best of study {name!r} (trial {best.number}, validation {metric} {best.value})\n"
        )
        result.best_config = atomic_write_text(folder / "best_config.yaml", header + text)
        if final and _claim_final(study, folder, say):
            say(f"training the best config (trial {best.number}) and evaluating it on test once")
            result.final = _train_final(best_config, bundle, folder / "final")
        elif final:  # the claiming worker writes the summary and report with its final model
            result.report = folder / "report.html"
            return result
        if len(complete) >= 2:
            try:
                importances = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
                )
                result.importances = {k: float(v) for k, v in importances.items()}
            except (RuntimeError, ValueError) as exc:
                say(f"no parameter importances: {exc}")
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value
            if t.value is not None
            else (
                t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
            ),
            "params": {k: _json_value(v) for k, v in t.params.items()},
            "epochs_reported": t.user_attrs.get("epochs_reported"),
            "validation": t.user_attrs.get("validation"),
        }
        for t in study.get_trials(deepcopy=False)
    ]
    summary = {
        **result.to_json(),
        "trials": trials,
        "importances_note": None
        if result.importances
        else ("needs at least two complete trials whose parameters vary"),
        "best": None
        if result.best_number is None
        else {
            "number": result.best_number,
            "value": result.best_value,
            "params": result.best_params,
        },
    }
    atomic_write_json(folder / "tune.json", summary)
    result.report = write_report(folder, summary, study)[1]
    return result


def _claim_final(study: optuna.Study, folder: Path, say: Callable[[str], None]) -> bool:
    """Whether this worker trains the final model: once no trial of the study is running
    (other workers' last trials may still change the best), the first worker to create the
    claim file of the study's finished trials does; the others leave it to that one. A study
    that gains trials later (a resumed search) makes a new claim."""
    import hashlib

    import optuna

    running = (optuna.trial.TrialState.RUNNING,)
    waited = 0.0
    while study.get_trials(deepcopy=False, states=running) and waited < WAIT_FOR_RUNNING_S:
        optuna.storages.fail_stale_trials(study)  # a killed worker's trial, after its grace
        if waited == 0:
            say("waiting for the other workers' running trials before the final model")
        time.sleep(1.0)
        waited += 1.0
    finished = sorted(
        t.number for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED
    )
    digest = hashlib.sha256(repr(finished).encode()).hexdigest()[:16]
    try:
        handle = os.open(folder / f".final-{digest}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        say("another worker trains the final model of these trials")
        return False
    os.close(handle)
    return True


def _train_final(config: RunConfig, bundle: DataBundle, out: Path) -> dict[str, Any]:
    import shutil

    from lepton_platform.api.transfer import result_json, transfer

    if out.is_dir() and (out / "result.json").is_file():
        shutil.rmtree(out)  # an earlier final of this search (a resumed search trains it again)
    kwargs = config.to_transfer_kwargs()
    kwargs["data"] = bundle
    result = transfer(**kwargs, output_dir=out)
    return result_json(result)
