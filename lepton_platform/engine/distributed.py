"""The processes of a run: one, or several started by ``accelerate launch`` (gloo on CPU, NCCL
on GPUs). Everything that writes a file asks :func:`is_main_process` first; the others wait
for it with :func:`wait_for_everyone` and learn its outcome with :func:`broadcast`.

With one process these cost nothing and start no process group.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["Processes", "broadcast", "is_main_process", "num_processes", "wait_for_everyone"]


def _launched() -> bool:
    """Whether this process is one of several (``accelerate launch`` / ``torchrun`` set these)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


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
