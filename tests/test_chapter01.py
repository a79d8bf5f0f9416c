"""Chapter 01's checks beyond the common rules of tests/test_exercises.py."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import wrong_implementations
from utils import chapter01, toy_models
from utils.grading.checks import CheckFailed
from utils.grading.engine import run_exercise
from utils.references import chapter01 as ref01

EXERCISES = {exercise.function: exercise for exercise in chapter01.EXERCISES}
WRONG = wrong_implementations("01")


@pytest.mark.parametrize("seed", range(5))
def test_generate_batch_check_accepts_other_random_streams(seed):
    """The statistical check must not depend on the learner drawing the reference's random numbers."""
    generator = torch.Generator().manual_seed(1000 + seed)

    def other_stream(n_batch, feature_probability, generator_=None):
        shape = (n_batch, *feature_probability.shape)
        present = torch.rand(shape, generator=generator) < feature_probability  # mask drawn first, then values
        return torch.rand(shape, generator=generator) * present

    result = run_exercise(EXERCISES["generate_batch"], other_stream)
    assert result.passed, result.message


@pytest.mark.parametrize("function", ["generate_correlated_batch", "generate_anticorrelated_batch"])
@pytest.mark.parametrize("seed", range(5))
def test_pair_batch_checks_accept_other_random_streams(function, seed):
    """The reference with other random numbers (and the global generator) must pass its own check."""
    reference = getattr(ref01, function)
    generator = torch.Generator().manual_seed(2000 + seed)
    result = run_exercise(EXERCISES[function], lambda n, p, g=None: reference(n, p, generator))
    assert result.passed, result.message
    torch.manual_seed(3000 + seed)
    result = run_exercise(EXERCISES[function], reference)
    assert result.passed, result.message


def test_pair_batches_have_the_stated_statistics():
    p = torch.tensor([[0.3, 0.1]])
    x = ref01.generate_correlated_batch(50_000, p, torch.Generator().manual_seed(0))
    present = (x != 0).reshape(50_000, 1, 2, 2)
    assert (present[..., 0] == present[..., 1]).all()
    assert torch.allclose(present.float().mean(0)[0, :, 0], p[0], atol=0.01)
    y = ref01.generate_anticorrelated_batch(50_000, p, torch.Generator().manual_seed(0))
    present = (y != 0).reshape(50_000, 1, 2, 2)
    assert not (present[..., 0] & present[..., 1]).any()
    assert torch.allclose(present.float().mean(0)[0], p[0, :, None].expand(2, 2), atol=0.01)


def test_check_prints_a_tick_or_raises_one_line(capsys):
    chapter01.check.toy_forward(ref01.toy_forward)
    assert "✓ toy_forward" in capsys.readouterr().out
    with pytest.raises(CheckFailed) as failure:
        chapter01.check.generate_batch(lambda n, p, g=None: torch.rand(n, *p.shape))
    assert failure.value._render_traceback_()[0].count("\n") == 0
    assert "should be (1 - p" in str(failure.value)


def test_train_toy_models_smoke():
    model, loss = toy_models.train_toy_models(5, 2, torch.tensor([1.0, 0.1]), 0.9 ** torch.arange(5), steps=20)
    assert model.W.shape == (2, 2, 5) and model.b.shape == (2, 5) and loss.shape == (2,)
    assert torch.isfinite(loss).all()


def test_features_computed_counts_exact_absolute_values():
    """A hand-made |x| network: features 0..k-1 computed exactly with two neurons each, the rest not."""
    k, n, m = 3, 8, 8
    model = toy_models.AbsModel(1, n, m)
    with torch.no_grad():
        model.W1.zero_(), model.W2.zero_(), model.b1.zero_(), model.b2.zero_()
        for i in range(k):
            model.W1[0, 2 * i, i], model.W1[0, 2 * i + 1, i] = 1.0, -1.0
            model.W2[0, i, 2 * i], model.W2[0, i, 2 * i + 1] = 1.0, 1.0
        model.W1[0, 2 * k, k] = 1.0  # feature k: only the positive half (ReLU(x), not |x|)
        model.W2[0, k, 2 * k] = 1.0
    assert toy_models.features_computed(model) == [k]
    x = toy_models.signed(ref01.generate_batch)(10_000, torch.full((1, n), 0.5), torch.Generator().manual_seed(0))
    assert (x < 0).any() and (x > 0).any() and x.abs().max() <= 1
    assert torch.allclose(model(x)[..., :k], x.abs()[..., :k])
