"""The Keras callbacks of training.fit: they measure and show; recording is plain code.

`ValScores` predicts val/ after each epoch, computes loss and per-class precision,
recall and F1, and hands that measurement to a function (`Recorder.record` in
training/run_state.py); `EndOnAverage`, before it, puts the moving average of the
weights (--weight_averaging) in the model. `RunProgbar` is Keras' progress bar, headed "Epoch e/E" of the
whole run although fit is called once per epoch.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from training.metrics import class_table, confusion, cross_entropy, macro, per_class


def measure(probs: np.ndarray, y: np.ndarray, labels: list[str], loss: float) -> dict:
    """An epoch's scores: loss (train), val_loss, val_macro_f1, val_accuracy, classes."""
    pred = probs.argmax(axis=1)
    pc = per_class(confusion(y, pred, len(labels)))
    return {"loss": loss, "val_loss": cross_entropy(probs, y), "val_macro_f1": macro(pc["f1"]),
            "val_accuracy": float((pred == y).mean()) if len(pred) else 0.0, "classes": class_table(pc, labels)}


class ValScores(keras.callbacks.Callback):
    """After each epoch: predict `val`, score it against `y_val`, call `record(epoch, scores, model)`."""

    def __init__(self, val, y_val: np.ndarray, labels: list[str], record):
        super().__init__()
        self.val, self.y_val, self.labels, self.record = val, y_val, labels, record

    def on_epoch_end(self, epoch, logs=None):
        with warnings.catch_warnings():  # Keras warns when a finite dataset ends, as val/ does
            warnings.simplefilter("ignore", UserWarning)
            probs = np.asarray(self.model.predict(self.val, verbose=0))
        loss = float((logs or {}).get("loss", float("nan")))
        self.record(epoch, measure(probs, self.y_val, self.labels, loss), self.model)


class EndOnAverage(keras.callbacks.Callback):
    """At each epoch's end, the model takes the optimizer's moving average of its weights
    (Adam(use_ema=True)); training goes on from there. Without use_ema the weights stay
    as they are (each is only copied).

    Keras itself puts the average in only when fit returns, after the epoch's callbacks
    have scored and saved the last step's weights; with this callback first, what val
    scores, what is saved and what the next epoch starts from are the same weights, and a
    resumed run (the average is an optimizer variable, saved in the checkpoint) goes on
    exactly as an uninterrupted one.

    On JAX that assignment (ours, and Keras' own when fit returns) makes each weight and
    its average share one array, which the next predict or train step donates and so
    deletes under the other: the weights get arrays of their own after each assignment.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._own_arrays()

    def on_epoch_end(self, epoch, logs=None):
        self.model.optimizer.finalize_variable_values(self.model.trainable_weights)
        self._own_arrays()

    def _own_arrays(self):
        for weight in self.model.trainable_weights:
            weight.assign(keras.ops.copy(weight.value))


class RunProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, counting the epochs of the whole run."""

    def __init__(self, epochs: int):
        super().__init__()
        self.run_epochs = epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.run_epochs
