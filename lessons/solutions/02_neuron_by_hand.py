"""Lesson 2's exercise: the reference answer, and the common mistakes the grader recognises.

Try the exercise before reading on. `python lessons/02_neuron_by_hand.py --solution`
runs the lesson with this answer; `--wrong` runs it with the first mistake.
"""
import math


def your_weight_gradient(x: list, w: list, b: float, target: float) -> list:
    o = math.tanh(w[0] * x[0] + w[1] * x[1] + b)
    dL_do = 2 * (o - target)  # L = (o - target)^2
    dL_dn = dL_do * (1 - o**2)  # o = tanh(n)
    return [dL_dn * x[0], dL_dn * x[1]]  # n = w1 x1 + w2 x2 + b


def skipped_tanh(x: list, w: list, b: float, target: float) -> list:
    o = math.tanh(w[0] * x[0] + w[1] * x[1] + b)
    return [2 * (o - target) * x[0], 2 * (o - target) * x[1]]


def multiplied_by_the_weights(x: list, w: list, b: float, target: float) -> list:
    o = math.tanh(w[0] * x[0] + w[1] * x[1] + b)
    dL_dn = 2 * (o - target) * (1 - o**2)
    return [dL_dn * w[0], dL_dn * w[1]]


MISTAKES = {
    "your_weight_gradient": [
        ("skipped tanh: forgot its local derivative 1 - o^2", skipped_tanh),
        ("multiplied by w_i: that is dL/dx_i; dn/dw_i is x_i", multiplied_by_the_weights),
    ],
}
