"""Lesson 12's exercise: the reference answer, and the common mistakes the grader recognises.

Try the exercise before reading on. `python lessons/12_scale_invariance.py --solution`
runs the lesson with this answer; `--wrong` runs it with the first mistake.
"""
import numpy as np


def your_scaled_gradients(grad_u: np.ndarray, grad_W: np.ndarray, a: float) -> dict:
    # L(u, V) with V = a W equals L(u, W) = L(u, V / a): u's gradient is unchanged,
    # and the chain rule through V / a gives a factor 1 / a.
    return {"u": grad_u, "W": grad_W / a}


def scaled_by_a(grad_u: np.ndarray, grad_W: np.ndarray, a: float) -> dict:
    return {"u": grad_u, "W": grad_W * a}


def input_scaled_too(grad_u: np.ndarray, grad_W: np.ndarray, a: float) -> dict:
    return {"u": grad_u / a, "W": grad_W / a}


MISTAKES = {
    "your_scaled_gradients": [
        ("multiplied by a: larger weights get SMALLER gradients, dL/d(aW) = dL/dW / a", scaled_by_a),
        ("scaled dL/du too: BN's output, and so the loss, does not change with a for any u", input_scaled_too),
    ],
}
