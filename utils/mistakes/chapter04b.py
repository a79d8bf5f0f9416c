"""Plausible wrong implementations of chapter 04b's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``; each docstring completes "This is what you get when …",
which a learner whose output matches the mistake reads in the check's message.
"""

import torch
import torch.nn.functional as F

from utils.sae.model import encode


def pool__mean_includes_padding(acts, mask, how="mean"):
    """the mean is taken over every position of the row, padding and sinks included, not only over the real tokens."""
    if how == "max":
        return acts.masked_fill(~mask[..., None], -torch.inf).amax(dim=1)
    return acts.mean(dim=1)


def pool__divides_by_sequence_length(acts, mask, how="mean"):
    """the padding is zeroed but the sum is divided by the row's number of positions instead of its number of real tokens."""
    if how == "max":
        return acts.masked_fill(~mask[..., None], -torch.inf).amax(dim=1)
    return (acts * mask[..., None]).sum(dim=1) / acts.shape[1]


def pool__max_of_zeroed_padding(acts, mask, how="mean"):
    """for the max, the masked-out positions are set to 0 instead of −∞, so a padding 0 beats negative activations."""
    if how == "max":
        return (acts * mask[..., None]).amax(dim=1)
    return (acts * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)


def pool__mask_as_prefix_length(acts, mask, how="mean"):
    """the mask is read as a length ("the first n tokens are real"), which is wrong when the real tokens have holes."""
    lengths = mask.sum(dim=1)
    prefix = torch.arange(acts.shape[1])[None, :] < lengths[:, None]
    if how == "max":
        return acts.masked_fill(~prefix[..., None], -torch.inf).amax(dim=1)
    return (acts * prefix[..., None]).sum(dim=1) / lengths[:, None]


def _mean(x, mask):
    return (x * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)


def sae_features__padding_counted(params, acts, mask, k):
    """the firing fraction is taken over every position, padding included, not only over the real tokens."""
    return (encode(params, acts, k=k) > 0).float().mean(dim=1)


def sae_features__activations_not_binarised(params, acts, mask, k):
    """the latents' activation values are averaged instead of whether they fired (1.0 where a latent is > 0)."""
    return _mean(encode(params, acts, k=k), mask)


def sae_features__relu_instead_of_topk(params, acts, mask, k):
    """the SAE is run without k (`encode(params, x)`), so any latent with a positive pre-activation fires, not only the top k."""
    return _mean((encode(params, acts) > 0).float(), mask)


def sae_features__fired_anywhere(params, acts, mask, k):
    """a latent gets 1.0 if it fires on any real token of the row, instead of the fraction of real tokens on which it fires."""
    return ((encode(params, acts, k=k) > 0) & mask[..., None]).any(dim=1).float()


def sae_features__no_decoder_bias_subtracted(params, acts, mask, k):
    """the decoder bias b_dec is not subtracted from the activations before they are encoded."""
    pre = acts @ params["W_enc"] + params["b_enc"]
    top = pre.topk(k, dim=-1)
    latents = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    return _mean((latents > 0).float(), mask)


def _fit(X, y, l1, steps, lr, loss_fn, optimizer=torch.optim.Adam, init=None, penalise_bias=False):
    w = torch.zeros(X.shape[1]) if init is None else init.clone()
    w.requires_grad_(True)
    b = torch.zeros((), requires_grad=True)
    opt = optimizer([w, b], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = loss_fn(X @ w + b, y) + l1 * (w.abs().sum() + (b.abs() if penalise_bias else 0))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return w.detach(), b.detach()


def train_probe__no_l1_penalty(X, y, l1, steps=300, lr=0.01):
    """the L1 penalty is left out: the probe is fitted as if l1 were 0."""
    return _fit(X, y, 0.0, steps, lr, F.binary_cross_entropy_with_logits)


def train_probe__l2_instead_of_l1(X, y, l1, steps=300, lr=0.01):
    """the penalty is on the squared weights (`l1 * (w**2).sum()`, an L2 penalty) instead of their absolute values."""
    def loss(logits, y_):
        return F.binary_cross_entropy_with_logits(logits, y_)

    w = torch.zeros(X.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            total = loss(X @ w + b, y) + l1 * (w**2).sum()
            opt.zero_grad()
            total.backward()
            opt.step()
    return w.detach(), b.detach()


def train_probe__summed_cross_entropy(X, y, l1, steps=300, lr=0.01):
    """the cross-entropy is summed over the rows instead of averaged, so the penalty counts n times less."""
    return _fit(X, y, l1, steps, lr, lambda z, t: F.binary_cross_entropy_with_logits(z, t, reduction="sum"))


def train_probe__plain_sgd(X, y, l1, steps=300, lr=0.01):
    """the optimiser is plain SGD instead of Adam."""
    return _fit(X, y, l1, steps, lr, F.binary_cross_entropy_with_logits, optimizer=torch.optim.SGD)


def train_probe__random_initialisation(X, y, l1, steps=300, lr=0.01):
    """the weights start from small random values instead of zeros."""
    init = torch.randn(X.shape[1], generator=torch.Generator().manual_seed(0)) * 0.1
    return _fit(X, y, l1, steps, lr, F.binary_cross_entropy_with_logits, init=init)


def train_probe__labels_flipped(X, y, l1, steps=300, lr=0.01):
    """the probe is trained on flipped labels (1 − y), so its weights point the other way."""
    return _fit(X, 1 - y, l1, steps, lr, F.binary_cross_entropy_with_logits)


def accuracy__threshold_half_on_logits(w, b, X, y):
    """the logit is compared with 0.5 (a threshold for the probability) instead of 0."""
    return ((X @ w + b > 0.5).float() == y).float().mean().item()


def accuracy__forgets_bias(w, b, X, y):
    """the bias b is left out of the logit."""
    return ((X @ w > 0).float() == y).float().mean().item()


def accuracy__counts_instead_of_fraction(w, b, X, y):
    """the number of correct rows is returned instead of their fraction."""
    return int(((X @ w + b > 0).float() == y).sum())


def accuracy__sigmoid_compared_with_zero(w, b, X, y):
    """the sigmoid of the logit is compared with 0, which it always exceeds, so every row is predicted as class 1."""
    return ((torch.sigmoid(X @ w + b) > 0).float() == y).float().mean().item()


def select_latents__no_absolute_value(X, y, k):
    """columns are ranked by the signed difference of the class means, so a column whose mean drops for class 1 ranks last."""
    return (X[y == 1].mean(0) - X[y == 0].mean(0)).topk(k).indices


def select_latents__class_one_mean_only(X, y, k):
    """columns are ranked by the size of their class-1 mean alone, without subtracting the class-0 mean."""
    return X[y == 1].mean(0).abs().topk(k).indices


def select_latents__smallest_first(X, y, k):
    """the k columns with the smallest difference of the class means are returned instead of the largest."""
    return (X[y == 1].mean(0) - X[y == 0].mean(0)).abs().topk(k, largest=False).indices


def select_latents__unsorted(X, y, k):
    """the right k columns are returned, but sorted by index instead of best first."""
    return (X[y == 1].mean(0) - X[y == 0].mean(0)).abs().topk(k).indices.sort().values
