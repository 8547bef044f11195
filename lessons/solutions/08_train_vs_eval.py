"""Lesson 8's exercise: the reference answer, and the common mistakes the grader recognises.

Try the exercise before reading on. `python lessons/08_train_vs_eval.py --solution`
runs the lesson with this answer; `--wrong` runs it with the first mistake.
"""
import numpy as np


def your_running_update(running: np.ndarray, batch_statistic: np.ndarray, momentum: float) -> np.ndarray:
    return (1 - momentum) * running + momentum * batch_statistic  # momentum weighs the NEW batch (PyTorch)


def keras_convention(running: np.ndarray, batch_statistic: np.ndarray, momentum: float) -> np.ndarray:
    return momentum * running + (1 - momentum) * batch_statistic


def plain_average(running: np.ndarray, batch_statistic: np.ndarray, momentum: float) -> np.ndarray:
    return (running + batch_statistic) / 2


MISTAKES = {
    "your_running_update": [
        ("Keras' convention: momentum on the OLD value; PyTorch (and tinyad) put it on the new batch",
         keras_convention),
        ("a plain average of the two: momentum sets how much the new batch counts", plain_average),
    ],
}
