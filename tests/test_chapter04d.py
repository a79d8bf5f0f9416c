"""Chapter 04d's checks beyond the common rules of tests/test_exercises.py, and the science claims
its notebook makes (the gradient-routed autoencoder's halves specialise; without routing they do not)."""

from __future__ import annotations

import functools

import pytest
import torch

from tests.conftest import SOLUTIONS
from utils import chapter04d
from utils.grading.engine import run_exercise
from utils.references import chapter04d as ref04d

EXERCISES = {exercise.function: exercise for exercise in chapter04d.EXERCISES}
NOTEBOOK = SOLUTIONS / "04d_gradient_routing.ipynb"


# ---------------------------------------------------------------------------------------------
# The checks accept other valid implementations


def test_checks_accept_other_valid_implementations():
    def mask_by_indexing(labels, latent_dim):
        mask = torch.zeros(len(labels), latent_dim)
        half = latent_dim // 2
        mask[labels <= 4, :half] = 1.0
        mask[labels >= 5, half:] = 1.0
        return mask

    def route_by_subtraction(h, mask):
        return h.detach() + mask * (h - h.detach())  # the same value, the same gradient

    def gradient_by_autograd_grad(h, mask, upstream):
        h = h.clone().requires_grad_(True)
        with torch.enable_grad():
            return torch.autograd.grad(chapter04d.route_gradients(h, mask), h, grad_outputs=upstream)[0]

    def losses_by_loop(x, x_hat, groups, n_groups):
        return torch.stack([((x - x_hat)[groups == k] ** 2).mean() for k in range(n_groups)])

    def keep_by_cat(z, half):
        d = z.shape[-1] // 2
        first, second = z[:, :d], z[:, d:]
        return torch.cat([first, torch.zeros_like(second)] if half == 0 else [torch.zeros_like(first), second], -1)

    for name, fn in [
        ("routing_mask", mask_by_indexing),
        ("route_gradients", route_by_subtraction),
        ("routed_gradient", gradient_by_autograd_grad),
        ("group_losses", losses_by_loop),
        ("keep_half", keep_by_cat),
    ]:
        result = run_exercise(EXERCISES[name], fn)
        assert result.passed, f"{name}: {result.message}"


def test_routed_gradient_is_the_mask_times_the_upstream_gradient():
    h, mask, upstream = chapter04d._gradient_case(0, 7, 6)
    assert torch.equal(chapter04d.route_gradients(h, mask), h)
    assert torch.allclose(ref04d.routed_gradient(h, mask, upstream), mask * upstream)
    with torch.no_grad():  # the reference is computed under no_grad when grading
        assert torch.allclose(ref04d.routed_gradient(h, mask, upstream), mask * upstream)


def test_group_loss_cases_have_unequal_groups():
    """Dividing by the batch size instead of the group's size must change the answer."""
    for seed, batch, n_groups in [(40, 30, 2), (50, 80, 10)]:
        _, _, groups, _ = chapter04d._loss_case(seed, batch, n_groups)
        counts = torch.bincount(groups, minlength=n_groups)
        assert (counts > 0).all() and len(set(counts.tolist())) > 1


def test_data_split_is_fixed_and_scaled():
    data = chapter04d.load_digits_data()
    assert data.x_train.shape == (1257, 64) and data.x_test.shape == (540, 64)
    assert data.x_train.min() == 0 and data.x_train.max() == 1
    assert torch.bincount(data.y_test).min() >= 50  # stratified: every digit in the test set


# ---------------------------------------------------------------------------------------------
# The science: the notebook's claims, across seeds


@functools.cache
def _ratios(routed: bool, seed: int) -> tuple[float, float]:
    data = chapter04d.load_digits_data()
    model, curve = chapter04d.train_autoencoder(data, routed=routed, seed=seed, desc="test")
    assert curve[-1] < 0.02  # it did learn to reconstruct (the mean image scores ≈ 0.074)
    return chapter04d.split_ratios(chapter04d.certify(model, data, seed=seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_routed_halves_specialise(seed):
    """Each certificate is clearly worse on the other group (measured: 2.06–2.14 for seeds 0–2)."""
    first, second = _ratios(True, seed)
    assert first > 1.6 and second > 1.6, (first, second)


@pytest.mark.parametrize("seed", [0, 1])
def test_unrouted_halves_do_not(seed):
    """Without routing both halves know both groups (measured: 0.94–1.19)."""
    first, second = _ratios(False, seed)
    assert 0.7 < first < 1.4 and 0.7 < second < 1.4, (first, second)
    assert min(_ratios(True, seed)) > max(first, second) + 0.5


def test_routing_without_the_l1_penalty_neither_trains_well_nor_splits():
    """The notebook's claim for seed 0: training MSE 0.058 (vs 0.013 with L1), certificate ratios 0.74 and 1.07."""
    data = chapter04d.load_digits_data()
    model, curve = chapter04d.train_autoencoder(data, routed=True, l1=0.0, seed=0, desc="test")
    assert curve[-1] > 0.03
    assert max(chapter04d.split_ratios(chapter04d.certify(model, data, seed=0))) < 1.4


def test_training_uses_the_learners_functions():
    """A routing that blocks nothing (mask of ones) gives the unrouted model exactly."""
    data = chapter04d.load_digits_data()
    ones = lambda labels, latent_dim: torch.ones(len(labels), latent_dim)  # noqa: E731
    blocked, _ = chapter04d.train_autoencoder(data, routed=True, steps=5, mask_fn=ones, desc="test")
    plain, _ = chapter04d.train_autoencoder(data, routed=False, steps=5, desc="test")
    for p, q in zip(blocked.parameters(), plain.parameters(), strict=True):
        assert torch.allclose(p, q)


# ---------------------------------------------------------------------------------------------
# The grading kernel applies the exercise's probe


def test_grading_kernel_sees_the_gradient_of_route_gradients(tmp_path):
    """`route_gradients` is judged on its gradient too (the exercise's probe runs in the grading kernel):
    the wrong-half routing has the right values but loses the exercise, and `routed_gradient`, built on it."""
    import inspect

    import nbformat

    from utils.grade import grade_notebook
    from utils.mistakes import chapter04d as wrong

    nb = nbformat.read(NOTEBOOK, as_version=4)
    fixture = inspect.getsource(wrong.route_gradients__detach_wrong_part).replace("__detach_wrong_part", "")
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "route_gradients":
            cell.source = fixture
    nbformat.write(nb, tmp_path / NOTEBOOK.name)
    marks = {e["id"]: e["points"] for e in grade_notebook(tmp_path / NOTEBOOK.name)["exercises"]}
    full = {e.function: float(e.points) for e in chapter04d.EXERCISES}
    assert marks == {**full, "route_gradients": 0.0, "routed_gradient": 0.0}
