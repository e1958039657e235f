"""Training and evaluation, one module a job: `config` (TrainConfig, the studies' recipes and budgets),
`loop` (train, devices, augmentation), `inference` (predict, evaluate), `fast` (the FastNet recipe).
The checkpoint store that keeps trained models is `runtime.checkpoints.CheckpointStore`.
"""

from robustbench_bl.training.config import (
    OPTIMIZERS,
    RECIPES,
    SCHEDULES,
    TrainConfig,
    budget,
    build_model,
    load_train_data,
    recipe,
)
from robustbench_bl.training.inference import evaluate, predict
from robustbench_bl.training.loop import augment_batch, check_inputs, resolve_device, train

__all__ = [
    "OPTIMIZERS",
    "RECIPES",
    "SCHEDULES",
    "TrainConfig",
    "augment_batch",
    "budget",
    "build_model",
    "check_inputs",
    "evaluate",
    "load_train_data",
    "predict",
    "recipe",
    "resolve_device",
    "train",
]
