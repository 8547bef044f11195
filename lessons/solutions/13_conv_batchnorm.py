"""Lesson 13's exercise: the reference answer, and the common mistakes the grader recognises.

Try the exercise before reading on. `python lessons/13_conv_batchnorm.py --solution`
runs the lesson with this answer; `--wrong` runs it with the first mistake.
"""
import numpy as np


def your_channel_statistics(x: np.ndarray) -> dict:
    batch_mean = x.mean(axis=(0, 2, 3))  # over the batch and every position: m = N * H * W values
    batch_var = ((x - batch_mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))  # biased: divides by m
    return {"batch_mean": batch_mean, "batch_var": batch_var}


def over_the_batch_only(x: np.ndarray) -> dict:
    return {"batch_mean": x.mean(axis=0), "batch_var": x.var(axis=0)}


def unbiased_variance(x: np.ndarray) -> dict:
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = x.mean(axis=(0, 2, 3))
    return {"batch_mean": mean, "batch_var": ((x - mean[None, :, None, None]) ** 2).sum(axis=(0, 2, 3)) / (count - 1)}


MISTAKES = {
    "your_channel_statistics": [
        ("averaged over the batch only: BatchNorm2d also averages over every position (H, W) of the channel",
         over_the_batch_only),
        ("divided the variance by m - 1: in training BatchNorm normalizes with the biased variance (divides by m)",
         unbiased_variance),
    ],
}
