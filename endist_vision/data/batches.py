"""Sequential, unaugmented batches of a data set (evaluation, teacher caching), decoded in parallel
DataLoader workers when ``num_workers > 0`` (order is preserved)."""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
import torch


class _BatchView(torch.utils.data.Dataset):
    """Item ``i`` = ``ds.get(range(i·B, (i+1)·B))``: one whole batch per worker task."""

    def __init__(self, ds: Any, batch_size: int) -> None:
        self.ds, self.bs = ds, int(batch_size)

    def __len__(self) -> int:
        return math.ceil(len(self.ds) / self.bs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ds.get(np.arange(i * self.bs, min((i + 1) * self.bs, len(self.ds))))


def iterate_batches(ds: Any, batch_size: int, num_workers: int = 0, pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` for consecutive batches of ``ds`` in order; ``num_workers`` decoding processes."""
    view = _BatchView(ds, batch_size)
    if num_workers <= 0 or len(view) <= 1:
        yield from (view[i] for i in range(len(view)))
        return
    yield from torch.utils.data.DataLoader(view, batch_size=None, shuffle=False, num_workers=min(int(num_workers), len(view)),
                                           pin_memory=pin_memory, generator=torch.Generator().manual_seed(0))
