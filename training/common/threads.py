"""Torch's intra-op thread count for a block of code."""
from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with `count` torch intra-op threads. Acting in an env loop (collection, evaluation) acts on a few
    observations at a time while the env workers hold every core: more threads only take CPU from them."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
