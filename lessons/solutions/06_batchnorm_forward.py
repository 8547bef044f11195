"""Lesson 6's exercise: the reference answer, and the common mistakes the grader recognises.

Try the exercise before reading on. `python lessons/06_batchnorm_forward.py --solution`
runs the lesson with this answer; `--wrong` runs it with the first mistake.
"""
import numpy as np


def your_batch_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    batch_mean = x.mean(axis=0)
    batch_var = ((x - batch_mean) ** 2).mean(axis=0)  # biased: the batch's own variance
    x_hat = (x - batch_mean) / np.sqrt(batch_var + eps)
    return gamma * x_hat + beta


def unbiased_variance(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    return gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0, ddof=1) + eps) + beta


def eps_outside_the_root(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    return gamma * (x - x.mean(axis=0)) / (np.sqrt(x.var(axis=0)) + eps) + beta


def statistics_over_features(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


MISTAKES = {
    "your_batch_norm": [
        ("the unbiased variance (ddof=1, divide by m - 1): right for running_var, wrong for the batch itself",
         unbiased_variance),
        ("eps added outside the square root: the paper adds it to the variance", eps_outside_the_root),
        ("statistics over the features of each sample (axis 1): that is LayerNorm; BatchNorm uses axis 0",
         statistics_over_features),
    ],
}
