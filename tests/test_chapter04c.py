"""Section 04c's checks beyond the common rules of tests/test_exercises.py, and the science claims
its notebook makes (measured on SmolLM2-135M)."""

from __future__ import annotations

import pytest
import torch

from utils import chapter04c
from utils.chapter04c import STEER_PROMPTS
from utils.grading.checks import CheckFailed
from utils.grading.engine import run_exercise
from utils.paths import STEER_HOOK
from utils.references import chapter04c as ref04c

EXERCISES = {exercise.function: exercise for exercise in chapter04c.EXERCISES}


# ---------------------------------------------------------------------------------------------
# The checks accept other correct implementations


def test_causal_transform_check_accepts_svd_and_torch_cov():
    def via_svd(W_U):
        gamma = W_U.T.double()
        mean = gamma.mean(0)
        _, s, vh = torch.linalg.svd((gamma - mean) / len(gamma) ** 0.5, full_matrices=False)
        return vh.T @ torch.diag(1 / s) @ vh, mean

    def via_torch_cov(W_U):
        cov = torch.cov(W_U.double(), correction=0)
        values, vectors = torch.linalg.eigh(cov)
        return vectors @ torch.diag(values**-0.5) @ vectors.T, W_U.double().mean(1)

    for fn in (via_svd, via_torch_cov):
        result = run_exercise(EXERCISES["causal_transform"], fn)
        assert result.passed, result.message


def test_direction_inner_product_and_probe_checks_accept_loops():
    def direction_loop(g, pairs):
        total = sum(g[b] - g[a] for a, b in pairs.tolist())
        return total / total.norm()

    def inner_products_quadratic_form(directions, A=None):
        M = torch.eye(directions.shape[-1], dtype=directions.dtype) if A is None else A.T @ A
        gram = directions @ M @ directions.T
        norms = gram.diagonal().sqrt()
        return gram / norms[:, None] / norms[None, :]

    def probe_by_masks(g, pairs):
        out = []
        for i in range(len(pairs)):
            others = torch.cat([pairs[:i], pairs[i + 1 :]])
            d = ref04c.concept_direction(g, others)
            out.append(g[pairs[i]] @ d - (g[others.flatten()] @ d).mean())
        return torch.stack(out)

    for name, fn in [
        ("concept_direction", direction_loop),
        ("inner_products", inner_products_quadratic_form),
        ("probe_scores", probe_by_masks),
    ]:
        result = run_exercise(EXERCISES[name], fn)
        assert result.passed, f"{name}: {result.message}"


def test_steer_check_accepts_a_copy_and_every_position():
    def steer_everywhere(model, tokens, direction, alpha):
        hook = (STEER_HOOK, lambda x, hook: x + alpha * direction)  # all positions: the last one is what counts
        return model.run_with_hooks(tokens, fwd_hooks=[hook])[:, -1]

    result = run_exercise(EXERCISES["steer"], steer_everywhere)
    assert result.passed, result.message


def test_check_prints_a_tick_or_raises_one_line(capsys):
    chapter04c.check.concept_direction(ref04c.concept_direction)
    assert "✓ concept_direction" in capsys.readouterr().out
    with pytest.raises(CheckFailed) as failure:
        chapter04c.check.concept_direction(lambda g, pairs: (g[pairs[:, 1]] - g[pairs[:, 0]]).mean(0))
    assert failure.value._render_traceback_()[0].count("\n") == 0


def test_causal_cosines_do_not_depend_on_a_rescaling_of_the_unembedding():
    """Folding the final norm's scale into W_U (W_U -> diag(w) W_U) changes Euclidean cosines, not causal ones."""
    W_U = chapter04c._correlated_unembedding(5, 6, 500)
    w = torch.tensor([-2.1, -0.7, 0.4, 1.3, 2.2, 3.3])  # like SmolLM2's folded norm scale: mixed signs
    pairs = torch.arange(40).reshape(10, 2, 2)
    out = {}
    for name, matrix in [("plain", W_U), ("folded", W_U * w[:, None])]:
        A, _ = ref04c.causal_transform(matrix)
        gamma = matrix.T.double()
        directions = torch.stack([ref04c.concept_direction(gamma, p) for p in pairs[:5]])
        out[name] = (ref04c.inner_products(directions), ref04c.inner_products(directions, A))
    assert not torch.allclose(out["plain"][0], out["folded"][0], atol=1e-3)
    assert torch.allclose(out["plain"][1], out["folded"][1], atol=1e-8)


# ---------------------------------------------------------------------------------------------
# The data and the science claims of the notebook, on SmolLM2


@pytest.fixture(scope="module")
def geometry(model):
    pairs = chapter04c.concept_pairs(model)
    A, mean = ref04c.causal_transform(model.W_U)
    gamma = chapter04c.unembeddings(model)
    g = chapter04c.causal_coordinates(gamma, A, mean)
    return pairs, A, gamma, g


def test_every_concept_word_is_a_single_token(model):
    for name, words in chapter04c.CONCEPTS.items():
        missing = [w for pair in words for w in pair if chapter04c.single_token(model, w) is None]
        assert missing == [], f"{name}: not single tokens: {missing}"
        assert len(words) >= chapter04c.MIN_PAIRS
    assert len({model.to_tokens(p).shape[1] for p in STEER_PROMPTS}) == 1


def test_model_ties_its_embeddings(model):
    _, residual = chapter04c.tied_embedding_scale(model)
    assert residual < 1e-5


def test_whitening_is_well_conditioned_and_exact(geometry):
    _, A, _, g = geometry
    cov = torch.linalg.inv(A @ A)
    eigenvalues = torch.linalg.eigvalsh(cov)
    assert eigenvalues.min() > 1e-4 and eigenvalues.max() / eigenvalues.min() < 1e4
    cov_g = g.T @ g / len(g)
    assert (cov_g - torch.eye(len(cov_g))).abs().max() < 1e-4


def test_separable_concepts_are_closer_to_orthogonal_under_the_causal_inner_product(geometry):
    pairs, A, gamma, _ = geometry
    names = list(pairs)
    directions = torch.stack([ref04c.concept_direction(gamma, pairs[n]) for n in names]).double()
    euclid, causal = ref04c.inner_products(directions), ref04c.inner_products(directions, A)
    mask = chapter04c.separable_mask(names)
    mean_euclid = chapter04c.mean_abs_off_diagonal(euclid, mask)
    mean_causal = chapter04c.mean_abs_off_diagonal(causal, mask)
    assert mean_causal < 0.08 and mean_euclid > 3 * mean_causal  # measured: 0.037 vs 0.261
    assert causal[mask].abs().max() < 0.25  # measured 0.17
    i, j = (names.index(c) for c in chapter04c.CONTROL)
    assert causal[i, j] > 0.3  # the related pair stays far from orthogonal (measured 0.48)


def test_probe_beats_chance_by_a_clear_margin(geometry):
    pairs, _, gamma, g = geometry
    causal = {n: chapter04c.probe_accuracy(ref04c.probe_scores(g, p)) for n, p in pairs.items()}
    euclid = {n: chapter04c.probe_accuracy(ref04c.probe_scores(gamma, p)) for n, p in pairs.items()}
    assert min(causal.values()) >= 0.75  # measured: 0.85 (English⇒French) to 1.00
    assert sum(causal.values()) / len(causal) >= 0.9  # measured 0.97
    assert sum(causal.values()) >= sum(euclid.values())  # measured 0.97 vs 0.90 on average


def test_steering_moves_the_target_log_odds_and_not_the_unrelated_ones(model, geometry):
    pairs, A, _, g = geometry
    tokens = model.to_tokens(STEER_PROMPTS)
    base = model.to_single_token(" king")
    queen, upper, plural = (model.to_single_token(" " + w) for w in ("queen", "King", "kings"))
    kept = chapter04c.without_tokens(pairs["male⇒female"], [base, queen, upper, plural])
    direction = (A @ ref04c.concept_direction(g, kept).double()).float()
    before = ref04c.steer(model, tokens, direction, 0.0)
    after = ref04c.steer(model, tokens, direction, 1.0)

    def change(target):
        return (chapter04c.log_odds(after, target, base) - chapter04c.log_odds(before, target, base)).mean().item()

    target, unrelated = change(queen), max(abs(change(upper)), abs(change(plural)))
    assert target > 5  # measured +8.8
    assert unrelated < target / 5  # measured 0.72 (King) and 0.57 (kings)

