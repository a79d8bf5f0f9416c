"""Plausible wrong implementations of section 04a's exercises; every one must lose its points.

Named ``<exercise function>__<mistake>``.
"""

import torch

from utils.references.chapter04a import attribution


def logit_diff__first_position(logits, correct, wrong):
    rows = torch.arange(len(logits))
    return logits[:, 0][rows, correct] - logits[:, 0][rows, wrong]


def logit_diff__sign_flipped(logits, correct, wrong):
    rows = torch.arange(len(logits))
    return logits[:, -1][rows, wrong] - logits[:, -1][rows, correct]


def logit_diff__all_pairs(logits, correct, wrong):
    # indexing with two index tensors separately gives [batch, batch], then a mean over the wrong axis
    return (logits[:, -1][:, correct] - logits[:, -1][:, wrong]).mean(0)


def logit_diff__mean_over_prompts(logits, correct, wrong):
    rows = torch.arange(len(logits))
    return (logits[:, -1][rows, correct] - logits[:, -1][rows, wrong]).mean()


def attribution__clean_minus_patch(grad, clean, patch):
    return attribution(grad, patch, clean)


def attribution__mean_over_positions(grad, clean, patch):
    latents = (grad["latents"] * (patch["latents"] - clean["latents"])).mean(1).mean(0)
    error = (grad["error"] * (patch["error"] - clean["error"])).sum(2).mean(1).mean(0)
    return torch.cat([latents, error[None]])


def attribution__sum_over_prompts(grad, clean, patch):
    latents = (grad["latents"] * (patch["latents"] - clean["latents"])).sum((0, 1))
    error = (grad["error"] * (patch["error"] - clean["error"])).sum()
    return torch.cat([latents, error[None]])


def attribution__error_node_first(grad, clean, patch):
    scores = attribution(grad, clean, patch)
    return torch.cat([scores[-1:], scores[:-1]])


def attribution__error_norm_not_dot(grad, clean, patch):
    latents = (grad["latents"] * (patch["latents"] - clean["latents"])).sum(1).mean(0)
    error = (grad["error"].norm(dim=-1) * (patch["error"] - clean["error"]).norm(dim=-1)).sum(1).mean(0)
    return torch.cat([latents, error[None]])


def _ig(grad_fn, clean, patch, alphas):
    points = {k: clean[k] + alphas.view(-1, *[1] * clean[k].ndim) * (patch[k] - clean[k]) for k in clean}
    grads = grad_fn(points)
    return attribution({k: g.mean(0) for k, g in grads.items()}, clean, patch)


def integrated_gradients__linspace_includes_patch(grad_fn, clean, patch, steps):
    return _ig(grad_fn, clean, patch, torch.linspace(0, 1, steps))


def integrated_gradients__right_riemann(grad_fn, clean, patch, steps):
    return _ig(grad_fn, clean, patch, torch.arange(1, steps + 1) / steps)


def integrated_gradients__path_from_patch(grad_fn, clean, patch, steps):
    return _ig(grad_fn, clean, patch, 1 - torch.arange(steps) / steps)


def integrated_gradients__sum_not_mean(grad_fn, clean, patch, steps):
    alphas = torch.arange(steps) / steps
    points = {k: clean[k] + alphas.view(-1, *[1] * clean[k].ndim) * (patch[k] - clean[k]) for k in clean}
    grads = grad_fn(points)
    return attribution({k: g.sum(0) for k, g in grads.items()}, clean, patch)


def integrated_gradients__gradient_at_clean_only(grad_fn, clean, patch, steps):
    return _ig(grad_fn, clean, patch, torch.zeros(steps))


def top_nodes__per_layer(scores, n):
    return {layer: torch.zeros_like(s, dtype=torch.bool).index_fill(0, s.abs().topk(min(n, len(s))).indices, True)
            for layer, s in scores.items()}


def top_nodes__signed(scores, n):
    flat = torch.cat(list(scores.values()))
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.topk(n).indices] = True
    return dict(zip(scores, keep.split([len(s) for s in scores.values()])))


def top_nodes__smallest(scores, n):
    flat = torch.cat(list(scores.values())).abs()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.topk(n, largest=False).indices] = True
    return dict(zip(scores, keep.split([len(s) for s in scores.values()])))


def top_nodes__threshold_mean(scores, n):
    # a threshold instead of a count: keeps everything above the mean |score|
    flat = torch.cat(list(scores.values())).abs()
    return dict(zip(scores, (flat > flat.mean()).split([len(s) for s in scores.values()])))


def mean_ablate__zero_ablation(acts, mean, keep):
    latents = torch.where(keep[:-1], acts["latents"], 0.0)
    error = acts["error"] if keep[-1] else torch.zeros_like(acts["error"])
    return {"latents": latents, "error": error}


def mean_ablate__keep_inverted(acts, mean, keep):
    latents = torch.where(~keep[:-1], acts["latents"], mean["latents"])
    error = mean["error"].expand_as(acts["error"]) if keep[-1] else acts["error"]
    return {"latents": latents, "error": error}


def mean_ablate__error_always_kept(acts, mean, keep):
    return {"latents": torch.where(keep[:-1], acts["latents"], mean["latents"]), "error": acts["error"]}


def mean_ablate__mask_includes_error_entry(acts, mean, keep):
    # uses keep[1:] for the latents: off by one
    latents = torch.where(keep[1:], acts["latents"], mean["latents"])
    error = acts["error"] if keep[-1] else mean["error"].expand_as(acts["error"])
    return {"latents": latents, "error": error}


def faithfulness__no_baseline(m_circuit, m_empty, m_full):
    return m_circuit / m_full


def faithfulness__inverted(m_circuit, m_empty, m_full):
    return (m_full - m_circuit) / (m_full - m_empty)


def faithfulness__wrong_denominator(m_circuit, m_empty, m_full):
    return (m_circuit - m_empty) / m_full
