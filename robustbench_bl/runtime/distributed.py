"""Data-parallel training under torchrun: process-group setup and rank queries.

`torchrun --nproc_per_node N studies/<study>.py ...` sets WORLD_SIZE/RANK/LOCAL_RANK; `setup()`
then joins the process group (nccl on GPUs, gloo on CPUs). Without torchrun everything is rank 0
of 1 and nothing here does any work.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist


def setup() -> bool:
    """Join the process group torchrun describes (once); return whether training is distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    # Left to interpreter finalization, Gloo's worker threads can abort the process (SIGABRT,
    # "terminate called without an active exception"; pytorch issue 190489): leave the group first.
    atexit.register(teardown)
    return True


def teardown() -> None:
    """Leave the process group, if joined (registered by `setup` to run at exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes checkpoints and results."""
    return rank_world()[0] == 0


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if rank_world()[1] > 1:
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few floats over every rank (identity when not distributed)."""
    if rank_world()[1] == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def local_device() -> torch.device:
    """This rank's device: cuda:LOCAL_RANK when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
