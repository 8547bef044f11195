"""Lesson 3's exercise: the reference answer, and the common mistakes the grader recognises.

Try the exercise before reading on. `python lessons/03_scalars_to_tensors.py --solution`
runs the lesson with this answer; `--wrong` runs it with the first mistake.
"""
import numpy as np


def your_bias_gradient(upstream: np.ndarray) -> np.ndarray:
    return upstream.sum(axis=0)  # b_j is used once per row: one message per row, added up


def averaged_the_rows(upstream: np.ndarray) -> np.ndarray:
    return upstream.mean(axis=0)


def summed_the_wrong_axis(upstream: np.ndarray) -> np.ndarray:
    return upstream.sum(axis=1)


MISTAKES = {
    "your_bias_gradient": [
        ("averaged the rows: right shape, but 1/N too small; the messages add", averaged_the_rows),
        ("summed over axis 1 (the features): b is stretched along axis 0, the rows", summed_the_wrong_axis),
    ],
}
