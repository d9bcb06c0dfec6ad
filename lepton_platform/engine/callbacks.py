"""The fine-tune engine's callbacks: the hooks into its loop, and the engine's own behaviours
written as callbacks, so that a strategy or a validator replaces one instead of keeping a second
copy beside it.

- :class:`BestModel`: keeps the weights of the best epoch by one logged value (the monitored
  validation value by default; a label-free validator's score for adaptation) and puts them
  back at the end; the best weights live in the checkpoint folder, so a resumed run has the
  same best model;
- :class:`EarlyStopping`: stops after ``patience`` epochs without a better value;
- :class:`MetricsLog`: the ``metrics.jsonl`` step and epoch records, and the trackers;
- :class:`Checkpointing`: the checkpoint cadence (every N steps, and at every epoch end);
- :class:`KeepFrozenBatchNormInEval`: for strategies that freeze parts of the backbone, keeps
  the running statistics of those parts' batch-norm layers as they were.

A callback that must survive a resume returns its state from :meth:`Callback.state_dict`
(JSON-ready) and takes it back in :meth:`Callback.load_state_dict`; the checkpoint stores it
under the callback's :attr:`Callback.state_key`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch

from lepton_platform.engine import checkpoint as ckpt
from lepton_platform.errors import ArtifactError

if TYPE_CHECKING:
    from lepton_platform.engine.evaluate import Monitor
    from lepton_platform.engine.finetune import FitResult, Trainer

__all__ = [
    "BestModel",
    "Callback",
    "Checkpointing",
    "EarlyStopping",
    "KeepFrozenBatchNormInEval",
    "MetricsLog",
    "log_run_end",
]


class Callback:
    """Hooks into the loop. Freeze schedules, custom logging and stopping rules subclass it.

    On resume from a mid-epoch checkpoint, ``on_epoch_start`` is called again for that epoch,
    so it must depend only on the epoch (which is what a schedule does)."""

    #: Where the checkpoint keeps this callback's state (``None``: it has none to keep).
    state_key: str | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first step (also after a resume)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first batch of ``epoch`` (0-based)."""

    def on_step_end(self, trainer: Trainer, step: int, logs: Mapping[str, float]) -> None:
        """After optimiser step ``step`` (1-based, counted over the whole run)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        """After validation of ``epoch``; ``logs`` is that epoch's history entry (a callback
        may add values to it)."""

    def on_train_end(self, trainer: Trainer, result: FitResult) -> None:
        """After the loop, before :meth:`Trainer.fit` returns."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state that a resumed run needs."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned."""


class BestModel(Callback):
    """Keeps the weights of the epoch with the best ``logs[key]`` and puts them back when
    training ends.

    ``extra(trainer)`` (optional) computes values that are added to each epoch's logs before the
    choice (a label-free validator's scores); ``key`` may name one of them. Without the key in an
    epoch's logs (no validation split), the last epoch is the one returned. The weights are kept
    in ``checkpoints/best`` when the trainer has an output folder (so that a resume has them),
    in memory otherwise."""

    state_key = "best_model"

    def __init__(
        self,
        key: str = "val_loss",
        higher_is_better: bool = False,
        *,
        extra: Callable[[Trainer], Mapping[str, float]] | None = None,
        label: str | None = None,
    ) -> None:
        self.key = key
        self.higher_is_better = higher_is_better
        self.extra = extra
        self.label = label or key.removeprefix("val_")
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.scores: list[dict[str, float]] = []
        self._in_memory: dict[str, torch.Tensor] | None = None

    @classmethod
    def for_monitor(cls, monitor: Monitor) -> BestModel:
        """The default: the monitored validation value in the direction its spec gives."""
        return cls(monitor.history_key, monitor.higher_is_better, label=monitor.name)

    def improved(self, value: float) -> bool:
        if value != value:  # NaN never improves
            return False
        if self.best_score is None:
            return True
        return value > self.best_score if self.higher_is_better else value < self.best_score

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        if self.extra is not None:
            values = {k: float(v) for k, v in self.extra(trainer).items()}
            logs.update(values)
            self.scores.append(values)
        value = logs.get(self.key)
        if value is None:
            self.best_epoch = epoch  # nothing to choose on: the last epoch is returned
            return
        if self.improved(float(value)):
            self.best_score, self.best_epoch = float(value), epoch
            self._save(trainer, epoch)

    def _save(self, trainer: Trainer, epoch: int) -> None:
        folder = trainer.checkpoint_dir
        if folder is None:
            self._in_memory = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            return
        if trainer.is_main_process:
            try:
                with ckpt.CheckpointWriter(folder / "best") as writer:
                    ckpt.save_model_file(writer, "model.safetensors", trainer.model)
                    writer.write_json("best.json", {"epoch": epoch, "key": self.key})
                    writer.commit({"epoch": epoch})
            except OSError as exc:
                raise ArtifactError(
                    f"cannot write the best model to {folder / 'best'} ({exc}); the earlier "
                    "checkpoints are intact. Free space or choose another output_dir"
                ) from exc
        trainer.accelerator.wait_for_everyone()

    def on_train_end(self, trainer: Trainer, result: FitResult) -> None:
        if self.best_score is None:  # no choice was made: the model holds the last epoch
            return
        if self._in_memory is not None:
            trainer.model.load_state_dict(self._in_memory)
            self._in_memory = None
            return
        folder = trainer.checkpoint_dir
        if folder is not None and (folder / "best").is_dir():
            ckpt.verify_checkpoint(folder / "best")
            ckpt.load_model_file(folder / "best" / "model.safetensors", trainer.model)

    def report(self) -> dict[str, Any]:
        """What chose the returned epoch, for a run's details."""
        return {
            "chosen_by": self.label,
            "key": self.key,
            "higher_is_better": self.higher_is_better,
            "chosen_epoch": self.best_epoch,
            "best_score": self.best_score,
            "scores_per_epoch": list(self.scores),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "scores": self.scores,
            "key": self.key,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_score = state.get("best_score")
        self.best_epoch = state.get("best_epoch")
        self.scores = [dict(s) for s in state.get("scores", [])]


class EarlyStopping(Callback):
    """Stops training after ``patience`` epochs in a row in which ``best`` did not improve."""

    state_key = "early_stopping"

    def __init__(self, best: BestModel, patience: int) -> None:
        self.best = best
        self.patience = int(patience)
        self.bad_epochs = 0

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        if self.best.key not in logs:
            return
        self.bad_epochs = 0 if self.best.best_epoch == epoch else self.bad_epochs + 1
        if self.bad_epochs >= self.patience:
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.bad_epochs = int(state.get("bad_epochs", 0))


#: Where a run's output folder records the trackers it logged to (the MLflow run), so that the
#: application layer adds the final test metrics and the model to the same run.
TRACKING_FILE = "tracking.json"


class MetricsLog(Callback):
    """``metrics.jsonl`` in the output folder (a ``step`` record every ``log_every_steps`` and
    an ``epoch`` record per epoch), and the same values to the trackers when they are on
    (``TrainConfig.trackers``: none unless asked for). MLflow logs into the output folder's
    own store (``mlflow.db``, artifacts beside it) unless ``MLFLOW_TRACKING_URI`` names
    another, and the run it logged to is recorded in :data:`TRACKING_FILE`. On resume the
    lines written after the checkpoint are dropped, so the file matches a run that was never
    interrupted."""

    state_key = "metrics_log"

    def __init__(self, path: Path | None, every_steps: int) -> None:
        self.path = path
        self.every_steps = every_steps
        self.offset = 0
        self._handle: IO[str] | None = None

    def open(self, trainer: Trainer, resumed: bool) -> None:
        if self.path is None or not trainer.is_main_process:
            return
        if resumed and self.path.exists():
            with self.path.open("r+") as handle:
                handle.truncate(self.offset)
        elif self.path.exists():
            self.path.unlink()
        self._handle = self.path.open("a")
        if _tracks(trainer, "mlflow") and not os.environ.get("MLFLOW_TRACKING_URI"):
            import mlflow

            # never the current folder's mlflow.db and mlruns/: the run's own store, with the
            # artifacts beside it (the experiment made here, before Accelerate looks for it)
            folder = self.path.parent.absolute()
            mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "lepton")
            if mlflow.get_experiment_by_name(name) is None:
                mlflow.create_experiment(name, artifact_location=(folder / "mlruns").as_uri())

    def on_train_start(self, trainer: Trainer) -> None:
        if self.path is None or not trainer.is_main_process or not _tracks(trainer, "mlflow"):
            return
        import mlflow

        run = trainer.accelerator.get_tracker("mlflow", unwrap=True)
        record = {
            "mlflow": {
                "tracking_uri": mlflow.get_tracking_uri(),
                "run_id": run.info.run_id,
                "experiment_id": run.info.experiment_id,
            }
        }
        (self.path.parent / TRACKING_FILE).write_text(json.dumps(record, indent=2) + "\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _write(self, record: Mapping[str, Any]) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(dict(record)) + "\n")

    def on_step_end(self, trainer: Trainer, step: int, logs: Mapping[str, float]) -> None:
        if step % self.every_steps:
            return
        self._write({"type": "step", **logs})
        if trainer.trackers_on:
            trainer.accelerator.log({"train/loss": logs["loss"], "lr": logs["lr"]}, step=step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        self._write({"type": "epoch", **logs})
        if trainer.trackers_on:
            trainer.accelerator.log(
                {f"epoch/{k}": v for k, v in logs.items() if k != "epoch"},
                step=trainer.global_step,
            )

    def state_dict(self) -> dict[str, Any]:
        if self._handle is not None:
            self._handle.flush()
            self.offset = self._handle.tell()
        return {"offset": self.offset}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.offset = int(state.get("offset", 0))


def _tracks(trainer: Trainer, name: str) -> bool:
    """Whether the trainer's accelerator logs to the tracker ``name``."""
    return any(str(getattr(t, "value", t)) == name for t in trainer.accelerator.log_with or ())


def log_run_end(
    output_dir: Path, metrics: Mapping[str, Any], model_folder: Path | None = None
) -> bool:
    """Add a finished run's final metrics (``{"test": {"accuracy": ...}}``: each number as
    ``test/accuracy``) and its model folder (as the ``model`` artifact) to the MLflow run
    that its training logged to (recorded in ``output_dir``'s :data:`TRACKING_FILE`); whether
    there was one."""
    file = output_dir / TRACKING_FILE
    if not file.is_file():
        return False
    record = json.loads(file.read_text()).get("mlflow")
    if not record:
        return False
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=str(record["tracking_uri"]))
    run_id = str(record["run_id"])
    for split, values in metrics.items():
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                client.log_metric(run_id, f"{split}/{key}", float(value))
    if model_folder is not None and model_folder.is_dir():
        client.log_artifacts(run_id, str(model_folder), artifact_path="model")
    return True


class Checkpointing(Callback):
    """Checkpoints at the end of every epoch and, with ``every_steps``, every so many optimiser
    steps inside an epoch (the newest ``keep`` are kept)."""

    def __init__(self, every_steps: int | None) -> None:
        self.every_steps = every_steps

    def on_step_end(self, trainer: Trainer, step: int, logs: Mapping[str, float]) -> None:
        if self.every_steps and step % self.every_steps == 0 and not trainer.at_epoch_end:
            trainer.save_checkpoint(end_of_epoch=False)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        trainer.save_checkpoint(end_of_epoch=True)


class KeepFrozenBatchNormInEval(Callback):
    """Keeps the batch-norm layers of frozen parts in evaluation mode during training, so
    their running statistics stay those of the pretrained weights."""

    def _apply(self, trainer: Trainer) -> None:
        model = trainer.model
        for module in model.backbone.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in module.parameters(recurse=False)
            ):
                module.eval()

    def on_train_start(self, trainer: Trainer) -> None:
        self._apply(trainer)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._apply(trainer)
