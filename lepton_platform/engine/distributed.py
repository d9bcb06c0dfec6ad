"""The processes of a run: one, or several started by ``accelerate launch`` (gloo on CPU, NCCL
on GPUs). Everything that writes a file asks :func:`is_main_process` first; the others wait
for it with :func:`wait_for_everyone` and learn its outcome with :func:`broadcast`.

With one process these cost nothing and start no process group. A launched process leaves
its process group when the interpreter exits (:func:`leave_process_group_at_exit`).
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any

__all__ = [
    "Processes",
    "broadcast",
    "is_main_process",
    "leave_process_group_at_exit",
    "num_processes",
    "wait_for_everyone",
]


def _launched() -> bool:
    """Whether this process is one of several (``accelerate launch`` / ``torchrun`` set these)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def leave_process_group() -> None:
    """Leave the process group if this process is in one. Left to the interpreter's exit,
    gloo's threads are now and then destroyed while still joinable and the process aborts
    ("terminate called without an active exception", SIGABRT) after its work was done."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    try:
        dist.destroy_process_group()
    except Exception as exc:  # the work is done; say why the exit may be untidy
        print(f"lepton: warning: could not leave the process group: {exc}", file=sys.stderr)


_leaving = False


def leave_process_group_at_exit() -> None:
    """Under ``accelerate launch``: :func:`leave_process_group` when the interpreter exits
    (registered once; what starts a process group calls this)."""
    global _leaving
    if _launched() and not _leaving:
        atexit.register(leave_process_group)
        _leaving = True


class Processes:
    """The run's processes as :func:`lepton_platform.engine.predict.predict` sees an
    accelerator: ``device``, ``num_processes``, ``process_index`` and ``gather``."""

    def __init__(self) -> None:
        self._state: Any = None
        if _launched():
            import torch
            from accelerate import PartialState
            from accelerate.utils import parse_flag_from_env

            # as the Accelerator decides it: gloo on CPU (ACCELERATE_USE_CPU or no GPU)
            cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
            self._state = PartialState(cpu=cpu)
            leave_process_group_at_exit()

    @property
    def num_processes(self) -> int:
        return 1 if self._state is None else int(self._state.num_processes)

    @property
    def process_index(self) -> int:
        return 0 if self._state is None else int(self._state.process_index)

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0

    @property
    def device(self) -> Any:
        import torch

        return torch.device("cpu") if self._state is None else self._state.device

    def gather(self, tensor: Any) -> Any:
        if self._state is None:
            return tensor
        from accelerate.utils import gather

        return gather(tensor)

    def wait_for_everyone(self) -> None:
        if self._state is not None:
            self._state.wait_for_everyone()

    def broadcast(self, value: Any) -> Any:
        """The main process's ``value`` (any picklable object), on every process."""
        if self._state is None:
            return value
        from accelerate.utils import broadcast_object_list

        box = [value if self.is_main_process else None]
        broadcast_object_list(box, from_process=0)
        return box[0]


_processes: Processes | None = None


def processes() -> Processes:
    """The process-wide :class:`Processes` (made on first use)."""
    global _processes
    if _processes is None:
        _processes = Processes()
    return _processes


def is_main_process() -> bool:
    return processes().is_main_process


def num_processes() -> int:
    return processes().num_processes


def wait_for_everyone() -> None:
    processes().wait_for_everyone()


def broadcast(value: Any) -> Any:
    return processes().broadcast(value)
