"""Lesson 9's exercise: the reference answer, and the common mistakes the grader recognises.

Try the exercise before reading on. `python lessons/09_figure1.py --solution`
runs the lesson with this answer; `--wrong` runs it with the first mistake.
"""
import numpy as np


def _softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)  # the same softmax, without overflow
    return np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)


def your_logits_gradient(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    onehot = np.eye(z.shape[1])[y]
    return (_softmax(z) - onehot) / len(z)  # the loss is a mean over the N rows


def gradient_of_the_sum(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _softmax(z) - np.eye(z.shape[1])[y]


def forgot_the_one_hot(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _softmax(z) / len(z)


MISTAKES = {
    "your_logits_gradient": [
        ("forgot the 1/N of the mean: that is the gradient of the SUM of the losses", gradient_of_the_sum),
        ("forgot to subtract onehot(y): d(-log softmax(z)_y)/dz = softmax(z) - onehot(y)", forgot_the_one_hot),
    ],
}
