"""Lesson 11's exercises: the reference answers, and the common mistakes the grader recognises.

Try the exercises before reading on. `python lessons/11_backprop_ninja.py --solution`
runs the lesson with these answers; `--wrong` runs it with the first mistake of each.
"""
import numpy as np


def your_backward(cache: dict, targets: np.ndarray, correction: int) -> dict:
    c, eps = cache, cache["eps"]
    m = c["x"].shape[0]
    grad = {}
    # loss = mean over rows of -log softmax(logits)[target]
    probs = np.exp(c["logits"] - c["logits"].max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    grad["logits"] = (probs - np.eye(probs.shape[1])[targets]) / m
    # logits = h @ W2 + b2
    grad["W2"] = c["h"].T @ grad["logits"]
    grad["b2"] = grad["logits"].sum(axis=0)
    grad["h"] = grad["logits"] @ c["W2"].T
    # h = tanh(h_bn):  d tanh(z)/dz = 1 - tanh(z)^2
    grad["h_bn"] = grad["h"] * (1 - c["h"] ** 2)
    # h_bn = gamma * x_hat + beta  (gamma and beta broadcast over the rows: sum them)
    grad["gamma"] = (grad["h_bn"] * c["x_hat"]).sum(axis=0)
    grad["beta"] = grad["h_bn"].sum(axis=0)
    grad["x_hat"] = grad["h_bn"] * c["gamma"]
    # x_hat = centered * inv_std  (inv_std broadcast over the rows)
    grad["inv_std"] = (grad["x_hat"] * c["centered"]).sum(axis=0, keepdims=True)
    # inv_std = (batch_var + eps)^(-1/2)
    grad["batch_var"] = grad["inv_std"] * -0.5 * (c["batch_var"] + eps) ** -1.5
    # centered is used twice: in x_hat, and in batch_var = sum(centered^2) / (m - correction)
    grad["centered"] = grad["x_hat"] * c["inv_std"] + grad["batch_var"] * 2 * c["centered"] / (m - correction)
    # centered = h_pre - batch_mean  (batch_mean broadcast over the rows)
    grad["batch_mean"] = -grad["centered"].sum(axis=0, keepdims=True)
    # h_pre reaches the loss directly and through batch_mean = mean(h_pre)
    grad["h_pre"] = grad["centered"] + grad["batch_mean"] / m
    # h_pre = x @ W1 + b1
    grad["W1"] = c["x"].T @ grad["h_pre"]
    grad["b1"] = grad["h_pre"].sum(axis=0)
    return grad


def your_compact_batchnorm_backward(dh_bn, x_hat, inv_std, gamma, correction):
    m = x_hat.shape[0]
    return gamma * inv_std / m * (m * dh_bn - dh_bn.sum(axis=0)
                                  - m / (m - correction) * x_hat * (dh_bn * x_hat).sum(axis=0))


def centered_used_once(cache: dict, targets: np.ndarray, correction: int) -> dict:
    grad = your_backward(cache, targets, correction)
    m = cache["x"].shape[0]
    grad["centered"] = grad["x_hat"] * cache["inv_std"]  # only the route through x_hat
    grad["batch_mean"] = -grad["centered"].sum(axis=0, keepdims=True)
    grad["h_pre"] = grad["centered"] + grad["batch_mean"] / m
    grad["W1"] = cache["x"].T @ grad["h_pre"]
    grad["b1"] = grad["h_pre"].sum(axis=0)
    return grad


def forgot_the_mean_of_the_loss(cache: dict, targets: np.ndarray, correction: int) -> dict:
    return {name: value * cache["x"].shape[0] for name, value in your_backward(cache, targets, correction).items()}


def compact_without_bessel_factor(dh_bn, x_hat, inv_std, gamma, correction):
    m = x_hat.shape[0]
    return gamma * inv_std / m * (m * dh_bn - dh_bn.sum(axis=0) - x_hat * (dh_bn * x_hat).sum(axis=0))


def compact_without_the_mean_term(dh_bn, x_hat, inv_std, gamma, correction):
    m = x_hat.shape[0]
    return gamma * inv_std / m * (m * dh_bn - m / (m - correction) * x_hat * (dh_bn * x_hat).sum(axis=0))


MISTAKES = {
    "your_backward": [
        ("centered is used twice (in x_hat and in batch_var): dcentered needs both routes, "
         "+ dbatch_var * 2 centered / (m - correction)", centered_used_once),
        ("forgot that the loss is a MEAN over the batch: dlogits is (softmax - one_hot) / N",
         forgot_the_mean_of_the_loss),
    ],
    "your_compact_batchnorm_backward": [
        ("dropped - sum(dh_bn): the route through the batch mean", compact_without_the_mean_term),
        ("dropped the factor m / (m - correction): right for the biased variance only (--check finds it)",
         compact_without_bessel_factor),
    ],
}
