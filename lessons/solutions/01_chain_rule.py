"""Lesson 1's exercise: the reference answer, and the common mistakes the grader recognises.

Try the exercise before reading on. `python lessons/01_chain_rule.py --solution`
runs the lesson with this answer; `--wrong` runs it with the first mistake.
"""
import math


def your_chain_rule(x: float) -> float:
    v = math.tanh(x**2)
    dL_dv = math.exp(v)  # L = exp(v)
    dv_du = 1 - v**2  # v = tanh(u)
    du_dx = 2 * x  # u = x**2
    return dL_dv * dv_du * du_dx


def stopped_one_link_early(x: float) -> float:
    v = math.tanh(x**2)
    return math.exp(v) * (1 - v**2)


def tanh_slope_of_its_input(x: float) -> float:
    u = x**2
    return math.exp(math.tanh(u)) * (1 - u**2) * 2 * x


MISTAKES = {
    "your_chain_rule": [
        ("stopped one link early: forgot du/dx = 2x", stopped_one_link_early),
        ("tanh's slope is 1 - tanh(u)^2 = 1 - v^2, not 1 - u^2", tanh_slope_of_its_input),
    ],
}
