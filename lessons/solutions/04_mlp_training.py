"""Lesson 4's exercise: the reference answer, and the common mistakes the grader recognises.

Try the exercise before reading on. `python lessons/04_mlp_training.py --solution`
runs the lesson with this answer; `--wrong` runs it with the first mistake.
"""
import numpy as np


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))  # shifting by the row max changes nothing but overflow
    return exp / exp.sum(axis=1, keepdims=True)


def your_logits_gradient(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    one_hot = np.eye(logits.shape[1])[targets]
    return (_softmax(logits) - one_hot) / len(targets)  # the loss is a mean over the N rows


def forgot_the_mean(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return _softmax(logits) - np.eye(logits.shape[1])[targets]


def one_hot_minus_softmax(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return (np.eye(logits.shape[1])[targets] - _softmax(logits)) / len(targets)


MISTAKES = {
    "your_logits_gradient": [
        ("forgot that the loss is a MEAN over the batch: divide by N", forgot_the_mean),
        ("the sign is flipped: it is softmax - one_hot (raising the target's score lowers the loss)",
         one_hot_minus_softmax),
    ],
}
