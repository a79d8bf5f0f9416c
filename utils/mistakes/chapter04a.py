"""Plausible wrong implementations of section 04a's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``; each docstring completes "This is what you get when …",
which a learner whose output matches the mistake reads in the check's message.
"""

import torch

from utils.references.chapter04a import attribution


def logit_diff__first_position(logits, correct, wrong):
    """the logits are read at the first position instead of the last."""
    rows = torch.arange(len(logits))
    return logits[:, 0][rows, correct] - logits[:, 0][rows, wrong]


def logit_diff__sign_flipped(logits, correct, wrong):
    """the difference is taken the wrong way round: the wrong verb's logit minus the right verb's."""
    rows = torch.arange(len(logits))
    return logits[:, -1][rows, wrong] - logits[:, -1][rows, correct]


def logit_diff__all_pairs(logits, correct, wrong):
    """the token ids index only the columns (`[:, correct]`): each prompt's verbs are scored on all prompts' logits, averaged."""
    return (logits[:, -1][:, correct] - logits[:, -1][:, wrong]).mean(0)


def logit_diff__mean_over_prompts(logits, correct, wrong):
    """the prompts are averaged into one number instead of one difference per prompt."""
    rows = torch.arange(len(logits))
    return (logits[:, -1][rows, correct] - logits[:, -1][rows, wrong]).mean()


def attribution__clean_minus_patch(grad, clean, patch):
    """the change is taken the wrong way round (clean − patch), so every score has the wrong sign."""
    return attribution(grad, patch, clean)


def attribution__mean_over_positions(grad, clean, patch):
    """the effects are averaged over positions instead of summed."""
    latents = (grad["latents"] * (patch["latents"] - clean["latents"])).mean(1).mean(0)
    error = (grad["error"] * (patch["error"] - clean["error"])).sum(2).mean(1).mean(0)
    return torch.cat([latents, error[None]])


def attribution__sum_over_prompts(grad, clean, patch):
    """the effects are summed over the prompts instead of averaged."""
    latents = (grad["latents"] * (patch["latents"] - clean["latents"])).sum((0, 1))
    error = (grad["error"] * (patch["error"] - clean["error"])).sum()
    return torch.cat([latents, error[None]])


def attribution__error_node_first(grad, clean, patch):
    """the error node's score is put first instead of last."""
    scores = attribution(grad, clean, patch)
    return torch.cat([scores[-1:], scores[:-1]])


def attribution__error_norm_not_dot(grad, clean, patch):
    """the error node's score multiplies the lengths of the gradient and of the change instead of taking their dot product."""
    latents = (grad["latents"] * (patch["latents"] - clean["latents"])).sum(1).mean(0)
    error = (grad["error"].norm(dim=-1) * (patch["error"] - clean["error"]).norm(dim=-1)).sum(1).mean(0)
    return torch.cat([latents, error[None]])


def _ig(grad_fn, clean, patch, alphas):
    points = {k: clean[k] + alphas.view(-1, *[1] * clean[k].ndim) * (patch[k] - clean[k]) for k in clean}
    grads = grad_fn(points)
    return attribution({k: g.mean(0) for k, g in grads.items()}, clean, patch)


def integrated_gradients__linspace_includes_patch(grad_fn, clean, patch, steps):
    """the points come from `torch.linspace(0, 1, steps)`: the patch end is included and the steps are 1/(N − 1), not 1/N."""
    return _ig(grad_fn, clean, patch, torch.linspace(0, 1, steps))


def integrated_gradients__right_riemann(grad_fn, clean, patch, steps):
    """the points are α = 1/N, …, 1 (a right Riemann sum: patch end included, clean end left out), not 0, …, (N − 1)/N."""
    return _ig(grad_fn, clean, patch, torch.arange(1, steps + 1) / steps)


def integrated_gradients__path_from_patch(grad_fn, clean, patch, steps):
    """the path is counted from the patch end (α = 1, (N − 1)/N, …, 1/N): the patch end is included and the clean end left out."""
    return _ig(grad_fn, clean, patch, 1 - torch.arange(steps) / steps)


def integrated_gradients__sum_not_mean(grad_fn, clean, patch, steps):
    """the gradients are summed over the steps instead of averaged, so every score is N times too large."""
    alphas = torch.arange(steps) / steps
    points = {k: clean[k] + alphas.view(-1, *[1] * clean[k].ndim) * (patch[k] - clean[k]) for k in clean}
    grads = grad_fn(points)
    return attribution({k: g.sum(0) for k, g in grads.items()}, clean, patch)


def integrated_gradients__gradient_at_clean_only(grad_fn, clean, patch, steps):
    """every step takes the gradient at the clean point (α = 0), which is attribution patching, not integrated gradients."""
    return _ig(grad_fn, clean, patch, torch.zeros(steps))


def top_nodes__per_layer(scores, n):
    """the top n are chosen in each layer separately instead of across all layers together."""
    return {layer: torch.zeros_like(s, dtype=torch.bool).index_fill(0, s.abs().topk(min(n, len(s))).indices, True)
            for layer, s in scores.items()}


def top_nodes__signed(scores, n):
    """the nodes are ranked by their signed score, so large negative effects are left out."""
    flat = torch.cat(list(scores.values()))
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.topk(n).indices] = True
    return dict(zip(scores, keep.split([len(s) for s in scores.values()])))


def top_nodes__smallest(scores, n):
    """the n smallest |scores| are kept instead of the n largest."""
    flat = torch.cat(list(scores.values())).abs()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.topk(n, largest=False).indices] = True
    return dict(zip(scores, keep.split([len(s) for s in scores.values()])))


def top_nodes__threshold_mean(scores, n):
    """every node above the mean |score| is kept, whatever n is."""
    flat = torch.cat(list(scores.values())).abs()
    return dict(zip(scores, (flat > flat.mean()).split([len(s) for s in scores.values()])))


def mean_ablate__zero_ablation(acts, mean, keep):
    """the nodes outside the circuit are set to zero instead of to their mean."""
    latents = torch.where(keep[:-1], acts["latents"], 0.0)
    error = acts["error"] if keep[-1] else torch.zeros_like(acts["error"])
    return {"latents": latents, "error": error}


def mean_ablate__keep_inverted(acts, mean, keep):
    """the mask is read the wrong way round: the circuit's nodes take the mean and the others keep their activation."""
    latents = torch.where(~keep[:-1], acts["latents"], mean["latents"])
    error = mean["error"].expand_as(acts["error"]) if keep[-1] else acts["error"]
    return {"latents": latents, "error": error}


def mean_ablate__error_always_kept(acts, mean, keep):
    """the error node always keeps its activation, even when keep[-1] is False."""
    return {"latents": torch.where(keep[:-1], acts["latents"], mean["latents"]), "error": acts["error"]}


def mean_ablate__mask_includes_error_entry(acts, mean, keep):
    """the latents read `keep[1:]` instead of `keep[:-1]`, so each latent follows its neighbour's entry of the mask."""
    latents = torch.where(keep[1:], acts["latents"], mean["latents"])
    error = acts["error"] if keep[-1] else mean["error"].expand_as(acts["error"])
    return {"latents": latents, "error": error}


def faithfulness__no_baseline(m_circuit, m_empty, m_full):
    """m(∅) is left out: the result is m(C) / m(M)."""
    return m_circuit / m_full


def faithfulness__inverted(m_circuit, m_empty, m_full):
    """the circuit is measured from the full model, (m(M) − m(C)), instead of from the empty circuit."""
    return (m_full - m_circuit) / (m_full - m_empty)


def faithfulness__wrong_denominator(m_circuit, m_empty, m_full):
    """the denominator is m(M) instead of m(M) − m(∅)."""
    return (m_circuit - m_empty) / m_full
