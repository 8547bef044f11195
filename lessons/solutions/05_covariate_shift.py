"""Lesson 5's exercise: the reference answer, and the common mistakes the grader recognises.

Try the exercise before reading on. `python lessons/05_covariate_shift.py --solution`
runs the lesson with this answer; `--wrong` runs it with the first mistake.
"""
import numpy as np


def your_sigmoid_derivative(z: np.ndarray) -> np.ndarray:
    s = 1 / (1 + np.exp(-z))  # the output of the sigmoid
    return s * (1 - s)


def used_the_input(z: np.ndarray) -> np.ndarray:
    return z * (1 - z)


def forgot_one_minus_s(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


MISTAKES = {
    "your_sigmoid_derivative": [
        ("used the input z where the output s = sigmoid(z) belongs: z * (1 - z)", used_the_input),
        ("returned sigmoid(z) itself: the slope is s * (1 - s)", forgot_one_minus_s),
    ],
}
