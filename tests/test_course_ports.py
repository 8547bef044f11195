"""Course code runs with only its import line changed (issue 17's "done when").

Each port below is our own short rewrite, in the course's spelling, of the part of
the course that a learner carries over: the forward pass of Karpathy's makemore
"backprop ninja" exercise (an MLP with a hand-written BatchNorm layer and an
exploded cross-entropy), cs231n's BatchNorm checks (the statistics of the
normalized output, the running averages at test time, a numeric gradient check),
and d2l.ai's BatchNorm chapter (a from-scratch batch_norm and BatchNorm module,
and the concise BNLeNet). Each is written once as a function of the library
module (``lib`` is ``torch`` or ``tinyad``), run with both, and compared.

Spellings that still differ are listed in docs/conventions.md ("Porting PyTorch
code"); the ports below stay inside what runs unchanged.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as torch_F

import tinyad
import tinyad.nn.functional as tinyad_F

LIBRARIES = {"torch": (torch, torch_F), "tinyad": (tinyad, tinyad_F)}


def grad_of(t) -> np.ndarray:
    g = t.grad
    return g.detach().numpy() if isinstance(g, torch.Tensor) else np.asarray(g)


def numbers(t) -> np.ndarray:
    return t.detach().numpy()


# ---------------------------------------------------------------------------
# makemore, "backprop ninja": the forward pass, step by step
# ---------------------------------------------------------------------------

WORDS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail"]


def makemore_dataset(torch, block_size=3):
    chars = sorted(set("".join(WORDS)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0
    X, Y = [], []
    for w in WORDS:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    # makemore writes torch.tensor(X): the one spelling that differs (tinyad makes float64 of Python numbers)
    return torch.tensor(X, dtype=torch.long), torch.tensor(Y, dtype=torch.long), len(stoi)


def makemore_parameters(torch, vocab_size, n_embd=10, block_size=3, n_hidden=64):
    g = torch.Generator().manual_seed(2147483647)
    C = torch.randn((vocab_size, n_embd), generator=g)
    W1 = torch.randn((n_embd * block_size, n_hidden), generator=g) * (5 / 3) / ((n_embd * block_size) ** 0.5)
    b1 = torch.randn(n_hidden, generator=g) * 0.1
    W2 = torch.randn((n_hidden, vocab_size), generator=g) * 0.1
    b2 = torch.randn(vocab_size, generator=g) * 0.1
    bngain = torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0
    bnbias = torch.randn((1, n_hidden), generator=g) * 0.1
    parameters = [C, W1, b1, W2, b2, bngain, bnbias]
    for p in parameters:
        p.requires_grad = True
    return parameters


def makemore_forward(torch, F, parameters, Xb, Yb):
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    n = Xb.shape[0]
    emb = C[Xb]
    embcat = emb.view(emb.shape[0], -1)
    hprebn = embcat @ W1 + b1
    bnmeani = 1 / n * hprebn.sum(0, keepdim=True)
    bndiff = hprebn - bnmeani
    bndiff2 = bndiff**2
    bnvar = 1 / (n - 1) * (bndiff2).sum(0, keepdim=True)
    bnvar_inv = (bnvar + 1e-5) ** -0.5
    bnraw = bndiff * bnvar_inv
    hpreact = bngain * bnraw + bnbias
    h = torch.tanh(hpreact)
    logits = h @ W2 + b2
    logit_maxes = logits.max(1, keepdim=True).values
    norm_logits = logits - logit_maxes
    counts = norm_logits.exp()
    counts_sum = counts.sum(1, keepdims=True)
    counts_sum_inv = counts_sum**-1
    probs = counts * counts_sum_inv
    logprobs = probs.log()
    loss = -logprobs[range(n), Yb].mean()
    intermediates = [logprobs, probs, counts, counts_sum, counts_sum_inv, norm_logits, logit_maxes, logits, h,
                     hpreact, bnraw, bnvar_inv, bnvar, bndiff2, bndiff, hprebn, bnmeani, embcat, emb]
    for p in parameters:
        p.grad = None
    for t in intermediates:
        t.retain_grad()
    loss.backward()
    return loss, logits, intermediates


def test_makemore_backprop_ninja_forward_runs_in_tinyad_and_agrees_with_torch():
    Xtr, Ytr, vocab_size = makemore_dataset(tinyad)
    parameters = makemore_parameters(tinyad, vocab_size)
    assert sum(p.nelement() for p in parameters) == vocab_size * 10 + 30 * 64 + 64 + 64 * vocab_size + vocab_size + 128
    g = tinyad.Generator().manual_seed(42)
    ix = tinyad.randint(0, Xtr.shape[0], (32,), generator=g)
    Xb, Yb = Xtr[ix], Ytr[ix]
    loss, logits, intermediates = makemore_forward(tinyad, tinyad_F, parameters, Xb, Yb)
    # the notebook's own check: the exploded loss equals F.cross_entropy's
    assert abs(loss.item() - tinyad_F.cross_entropy(logits, Yb).item()) < 1e-12
    # the same numbers through torch: same loss, same gradient at every parameter and intermediate
    theirs = [torch.tensor(p.numpy(), requires_grad=True) for p in parameters]
    t_loss, _, t_intermediates = makemore_forward(torch, torch_F, theirs, torch.tensor(Xb.numpy()),
                                                  torch.tensor(Yb.numpy()))
    assert loss.item() == pytest.approx(t_loss.item(), rel=1e-12)
    for ours, them in zip(parameters + intermediates, theirs + t_intermediates):
        np.testing.assert_allclose(grad_of(ours), grad_of(them), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------
# cs231n, assignment 2: the BatchNorm checks, ported to the tensor API
# ---------------------------------------------------------------------------


def cs231n_batchnorm_checks(lib, F, X, W1, W2):
    N, D3 = X.shape[0], W2.shape[1]
    a = lib.relu(X @ W1) @ W2
    before = (a.mean(dim=0), a.std(dim=0, unbiased=False))
    # means should be close to zero and stds close to one
    running_mean, running_var = lib.zeros(D3, dtype=lib.float64), lib.ones(D3, dtype=lib.float64)
    gamma, beta = lib.ones(D3, dtype=lib.float64), lib.zeros(D3, dtype=lib.float64)
    a_norm = F.batch_norm(a, running_mean, running_var, gamma, beta, training=True)
    plain = (a_norm.mean(dim=0), a_norm.std(dim=0, unbiased=False))
    # now means should be close to beta and stds close to gamma
    gamma = lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64)
    beta = lib.tensor([11.0, 12.0, 13.0], dtype=lib.float64)
    a_norm = F.batch_norm(a, running_mean, running_var, gamma, beta, training=True)
    shifted = (a_norm.mean(dim=0), a_norm.std(dim=0, unbiased=False))
    # test time: after many training passes the running averages normalize a fresh batch
    with lib.no_grad():
        for _ in range(50):
            F.batch_norm(lib.relu(lib.randn(N, X.shape[1], dtype=lib.float64) @ W1) @ W2, running_mean, running_var,
                         lib.ones(D3, dtype=lib.float64), lib.zeros(D3, dtype=lib.float64), training=True)
    return before, plain, shifted, running_mean, running_var


def test_cs231n_batchnorm_checks_run_in_tinyad_and_agree_with_torch():
    rng = np.random.default_rng(231)
    X, W1, W2 = rng.normal(size=(200, 50)), rng.normal(size=(50, 60)), rng.normal(size=(60, 3))
    results = {}
    for name, (lib, F) in LIBRARIES.items():
        lib.manual_seed(231)
        results[name] = cs231n_batchnorm_checks(lib, F, lib.tensor(X), lib.tensor(W1), lib.tensor(W2))
    ours, theirs = results["tinyad"], results["torch"]
    for (our_mean, our_std), (their_mean, their_std) in zip(ours[:3], theirs[:3]):
        np.testing.assert_allclose(numbers(our_mean), numbers(their_mean), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(numbers(our_std), numbers(their_std), rtol=1e-9)
    np.testing.assert_allclose(numbers(ours[1][0]), 0, atol=1e-9)
    np.testing.assert_allclose(numbers(ours[1][1]), 1, rtol=1e-4)
    np.testing.assert_allclose(numbers(ours[2][0]), [11, 12, 13], rtol=1e-9)
    np.testing.assert_allclose(numbers(ours[2][1]), [1, 2, 3], rtol=1e-4)
    # the running averages were fed different random batches (NumPy's and torch's generators), so only
    # their scale agrees: both estimate the same population
    np.testing.assert_allclose(numbers(ours[4]), numbers(theirs[4]), rtol=0.5)


def test_cs231n_batchnorm_backward_numeric_gradient_check_in_tinyad():
    rng = np.random.default_rng(231)
    x = tinyad.tensor(5 * rng.normal(size=(4, 5)) + 12)
    gamma, beta = tinyad.tensor(rng.normal(size=5)), tinyad.tensor(rng.normal(size=5))
    dout = tinyad.tensor(rng.normal(size=(4, 5)))
    loss = lambda x, gamma, beta: (tinyad_F.batch_norm(x, None, None, gamma, beta, training=True) * dout).sum()  # noqa: E731
    assert tinyad.check.gradcheck(loss, [x, gamma, beta], eps=1e-5, atol=1e-7, rtol=1e-5)


# ---------------------------------------------------------------------------
# d2l.ai, chapter "Batch Normalization": from scratch, then the concise BNLeNet
# ---------------------------------------------------------------------------


def d2l_batch_norm(torch, X, gamma, beta, moving_mean, moving_var, eps, momentum):
    if not torch.is_grad_enabled():
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        assert len(X.shape) in (2, 4)
        if len(X.shape) == 2:
            mean = X.mean(dim=0)
            var = ((X - mean) ** 2).mean(dim=0)
        else:
            mean = X.mean(dim=(0, 2, 3), keepdim=True)
            var = ((X - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        X_hat = (X - mean) / torch.sqrt(var + eps)
        moving_mean = (1.0 - momentum) * moving_mean + momentum * mean
        moving_var = (1.0 - momentum) * moving_var + momentum * var
    Y = gamma * X_hat + beta
    return Y, moving_mean.detach(), moving_var.detach()


def d2l_batch_norm_module(torch, nn):
    class BatchNorm(nn.Module):
        def __init__(self, num_features, num_dims):
            super().__init__()
            shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
            self.gamma = nn.Parameter(torch.ones(shape, dtype=torch.float64))
            self.beta = nn.Parameter(torch.zeros(shape, dtype=torch.float64))
            self.moving_mean = torch.zeros(shape, dtype=torch.float64)
            self.moving_var = torch.ones(shape, dtype=torch.float64)

        def forward(self, X):
            Y, self.moving_mean, self.moving_var = d2l_batch_norm(
                torch, X, self.gamma, self.beta, self.moving_mean, self.moving_var, eps=1e-5, momentum=0.1)
            return Y

    return BatchNorm


def d2l_bn_lenet(nn):
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5), nn.BatchNorm2d(6), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.BatchNorm2d(16), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(),
        nn.Linear(256, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(),
        nn.Linear(84, 10))


def test_d2l_batch_norm_from_scratch_runs_in_tinyad_and_agrees_with_torch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 3, 5, 5)) * 2 + 1
    outputs = {}
    for name, (lib, _) in LIBRARIES.items():
        layer = d2l_batch_norm_module(lib, lib.nn)(3, 4)
        x = lib.tensor(X, requires_grad=True)
        Y = layer(x)
        (Y**2).sum().backward()
        with lib.no_grad():
            Y_eval = layer(lib.tensor(X))
        outputs[name] = (numbers(Y), grad_of(x), grad_of(layer.gamma), numbers(layer.moving_var),
                         numbers(Y_eval))
    for ours, theirs in zip(outputs["tinyad"], outputs["torch"]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-11)


def test_d2l_bn_lenet_runs_in_tinyad_and_agrees_with_torch():
    from nn_oracle import assert_runs_match, run_both, torch_twin

    tinyad.manual_seed(0)
    net = d2l_bn_lenet(tinyad.nn)
    X = np.random.default_rng(1).normal(size=(8, 1, 28, 28))
    assert net(tinyad.tensor(X)).shape == (8, 10)
    twin = torch_twin(net)
    assert str(twin) == str(d2l_bn_lenet(torch.nn)), "the twin is d2l's BNLeNet"
    dy = np.random.default_rng(2).normal(size=(8, 10))
    assert_runs_match(run_both(net, twin, X, dy), rtol=1e-8, atol=1e-10, what="BNLeNet train")
    net.eval(), twin.eval()
    assert_runs_match(run_both(net, twin, X, dy), rtol=1e-8, atol=1e-10, what="BNLeNet eval")
    loss = tinyad.nn.CrossEntropyLoss(reduction="none")(net(tinyad.tensor(X)), np.arange(8))
    assert loss.shape == (8,)
