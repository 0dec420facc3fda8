"""Training: the loop (fit), its callbacks, checkpoints, run directories and data-parallel training."""

from ..data.splits import DataSplit
from .callbacks import Callback, EarlyStopping, History, TensorBoardLogger
from .loop import (TrainingDiverged, TrainingState, fit, held_out_losses, loss_kwargs_for, make_optimizers,
                   mlp_model, optimizer_dict, set_learning_rate)
from .run_directory import METRICS_COLUMNS, RunDirectory, RunDirectoryError

__all__ = ["DataSplit", "TrainingState", "TrainingDiverged", "mlp_model", "make_optimizers", "optimizer_dict",
           "loss_kwargs_for", "set_learning_rate", "held_out_losses", "fit", "Callback", "EarlyStopping",
           "TensorBoardLogger", "History", "RunDirectory", "RunDirectoryError", "METRICS_COLUMNS"]
