"""Lesson 10's exercise: the reference answer, and the common mistakes the grader recognises.

Try the exercise before reading on. `python lessons/10_paper_claims.py --quick --solution`
runs the lesson with this answer; `--wrong` runs it with the first mistake.
"""
import numpy as np

EPS = 1e-5


def your_detached_gradient(x: np.ndarray, gamma: np.ndarray, dy: np.ndarray) -> np.ndarray:
    inv_std = 1.0 / np.sqrt(x.var(axis=0) + EPS)  # the biased batch variance, per feature
    return dy * gamma * inv_std  # the mean and the variance are constants: only the direct route


def kept_the_mean_route(x: np.ndarray, gamma: np.ndarray, dy: np.ndarray) -> np.ndarray:
    direct = dy * gamma / np.sqrt(x.var(axis=0) + EPS)
    return direct - direct.mean(axis=0)


def unbiased_variance(x: np.ndarray, gamma: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return dy * gamma / np.sqrt(x.var(axis=0, ddof=1) + EPS)


MISTAKES = {
    "your_detached_gradient": [
        ("kept the route through the mean: with detached statistics the mean is a constant in backward", kept_the_mean_route),
        ("normalized with the unbiased variance: training-mode BatchNorm divides by m, not m - 1", unbiased_variance),
    ],
}
