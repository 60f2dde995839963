"""Counting the tensor operations a piece of code dispatches: a device-independent measure of launch overhead.

On a GPU in eager mode every non-view operation is (at least) one kernel launch, and a launch costs a few
microseconds of CPU time whatever its size, so the number of operations per generated token tells, on any machine,
whether a code path will be launch-bound on an accelerator (``bench/dispatch_count.py``, the tests of the
``"whole"`` metrics strategy).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode


class DispatchCounter(TorchDispatchMode):
    """A dispatch mode that counts the ATen operations run inside it.

    Attributes:
        ops: Every operation dispatched.
        compute_ops: Those that are not views (on a GPU: the kernel launches, roughly).
        by_name: ``compute_ops`` per operator name.

    Example:
        >>> import torch
        >>> with DispatchCounter() as counter:
        ...     _ = (torch.ones(3) * 2).sum()
        >>> counter.compute_ops
        3
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.compute_ops = 0
        self.by_name: Counter[str] = Counter()

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        self.ops += 1
        if not func.is_view:
            self.compute_ops += 1
            self.by_name[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))
