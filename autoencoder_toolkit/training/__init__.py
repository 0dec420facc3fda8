"""Training: the loop (fit), run directories, checkpoints and data-parallel training."""

from .loop import (METRICS_COLUMNS, DataSplit, RunDirectory, RunDirectoryError, TrainingDiverged, TrainingState,
                   fit, held_out_losses, loss_kwargs_for, make_optimizers, mlp_model, optimizer_dict,
                   set_learning_rate)

__all__ = ["DataSplit", "TrainingState", "TrainingDiverged", "mlp_model", "make_optimizers", "optimizer_dict",
           "loss_kwargs_for", "set_learning_rate", "held_out_losses", "fit", "RunDirectory", "RunDirectoryError",
           "METRICS_COLUMNS"]
