"""How work runs and is kept: the append-only results store, sweeps over cells (local or Ray),
torchrun / DistributedDataParallel training, and time and memory profiling.

Modules are imported where used (`from robustbench_bl.runtime import sweep`).
"""
