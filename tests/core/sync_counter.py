"""Counting the calls that make the host wait for an accelerator (used by the no-sync tests)."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode


class SyncCounter(TorchFunctionMode):
    """Counts the calls that make a host wait for an accelerator: reading values (``tolist``, ``item``,
    ``int``/``bool``/``float`` of a tensor), data-dependent shapes (``nonzero``, ``unique``, boolean indexing)."""

    READS = {"tolist", "item", "__int__", "__bool__", "__float__", "__index__", "nonzero", "unique",
             "unique_consecutive", "masked_select", "any", "all"}

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []
        self.ignore: list[torch.Tensor] = []  # tensors kept on the host by design (e.g. an optimizer's step counts)
        self.paused = False  # set while host-side work runs (e.g. the data loader collating a batch)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if self.paused or (args and any(args[0] is t for t in self.ignore)):
            pass
        elif name in self.READS and name not in ("any", "all"):
            self.calls.append(name)
        elif name == "__getitem__" and len(args) > 1:
            idx = args[1] if isinstance(args[1], tuple) else (args[1],)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in idx):
                self.calls.append("bool-index")
        return func(*args, **(kwargs or {}))
