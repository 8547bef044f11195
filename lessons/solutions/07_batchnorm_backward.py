"""Lesson 7's exercise: the reference answer, and the common mistakes the grader recognises.

Try the exercise before reading on. `python lessons/07_batchnorm_backward.py --solution`
runs the lesson with this answer; `--wrong` runs it with the first mistake.
"""


def route_through_mean(dL_dmean: float, m: int) -> float:
    # mean = (x_1 + ... + x_m) / m, so d mean / d x_i = 1/m for every sample
    return dL_dmean / m


def forgot_the_average(dL_dmean: float, m: int) -> float:
    return dL_dmean


def divided_by_m_minus_1(dL_dmean: float, m: int) -> float:
    return dL_dmean / (m - 1)


MISTAKES = {
    "route_through_mean": [
        ("forgot that the mean averages: d mean / d x_i = 1/m, not 1", forgot_the_average),
        ("the mean divides by m; m - 1 belongs to the unbiased variance (Bessel's correction)", divided_by_m_minus_1),
    ],
}
