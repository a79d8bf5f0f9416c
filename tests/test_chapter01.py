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


# The numbers `train_toy_models` gave before its loop became the learner's exercise (`optimize`): the same
# seeds must give the same models, so the chapter's figures (and chapter 02's toy model) do not move.
BEFORE = {
    "toy": [5.859248, 0.254998, 0.130499, -0.096326, 0.226803, 0.042789],
    "neurons": [17.532595, 9.689137, 1.291694, 0.762323, 0.079866, 0.022894],
    "W_init": [3.172142, 1.2328, 0.01104, -0.059318, 0.015461, 0.00467],
    "abs": [1.657473, 0.6361, 0.101085, 1.299504, 1.147603, 0.199678],
}


def _fingerprint(model, loss, names):
    return [float(v) for n in names for v in ((getattr(model, n) ** 2).sum(), getattr(model, n).sum())] + loss.tolist()


def test_train_toy_models_gives_the_same_models_as_before():
    runs = {
        "toy": lambda: toy_models.train_toy_models(5, 2, torch.tensor([1.0, 0.1]), 0.9 ** torch.arange(5), steps=300, seed=1),
        "neurons": lambda: toy_models.train_toy_models(
            10, 5, torch.tensor([1.0, 0.1]), 0.75 ** torch.arange(10), steps=200, lr=0.01, seed=0, forward_fn=ref01.neuron_forward
        ),
        "W_init": lambda: toy_models.train_toy_models(
            2, 1, torch.tensor([0.1, 0.1]), torch.tensor([[1.0, 0.5], [1.0, 2.0]]), steps=200, lr=0.01,
            W_init=torch.tensor([[[0.3, 0.3]], [[0.3, -0.3]]]),
        ),
        "abs": lambda: toy_models.train_toy_models(
            10, 6, torch.tensor([1.0, 0.1]), 0.9 ** torch.arange(10), steps=200, decay=True, model=toy_models.AbsModel(2, 10, 6),
            target_fn=torch.abs, batch_fn=toy_models.signed(ref01.generate_batch),
        ),
    }
    for name, run in runs.items():
        model, loss = run()
        got = _fingerprint(model, loss, ["W1", "b2"] if name == "abs" else ["W", "b"])
        assert got == pytest.approx(BEFORE[name], rel=1e-4, abs=1e-5), name


def test_train_toy_models_uses_the_functions_it_is_given():
    """The notebook passes the learner's parameters and loop; the library must call them, with the loop's interface."""
    calls = {}

    def params(n_inst, n_features, d_hidden, generator):
        calls["params"] = (n_inst, n_features, d_hidden)
        return ref01.toy_parameters(n_inst, n_features, d_hidden, generator)

    def loop(model, probability, importance, batch_fn, loss_fn, steps, batch_size, lr, seed, decay, desc):
        calls["loop"] = (tuple(probability.shape), tuple(importance.shape), steps, batch_size, lr, seed, decay, desc)
        return torch.zeros(len(probability))

    model, loss = toy_models.train_toy_models(
        5, 2, torch.tensor([1.0, 0.5, 0.1]), 0.9 ** torch.arange(5), steps=7, batch_size=32, lr=0.5, seed=3, desc="x",
        params_fn=params, train_fn=loop,
    )
    assert calls == {"params": (3, 5, 2), "loop": ((3, 5), (3, 5), 7, 32, 0.5, 3, False, "x")}
    assert isinstance(model.W, torch.nn.Parameter) and loss.shape == (3,)


def _other_loop(model, feature_probability, importance, batch_fn, loss_fn, steps, batch_size=1024, lr=1e-3, seed=0, decay=False,
                desc="training"):
    """A correct loop written differently from the reference: its own random stream, Adam, the mean of the
    losses, a scheduler for the decay, zero_grad after the step, and the last step's loss returned."""
    generator = torch.Generator().manual_seed(seed + 4242)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1 - t / steps if decay else 1.0)
    losses = []
    for _ in range(steps):
        x = batch_fn(batch_size, feature_probability, generator)
        loss = loss_fn(x, model(x), importance)
        loss.mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        losses.append(loss.detach())
    return torch.stack(losses[-100:]).mean(0)


def _other_parameters(n_inst, n_features, d_hidden, generator=None):
    """Correct parameters drawn another way: Xavier-uniform per instance, values drawn in another order."""
    W = torch.empty(n_inst, d_hidden, n_features)
    for k in range(n_inst):
        torch.nn.init.xavier_uniform_(W[k], generator=generator)
    return torch.nn.Parameter(W), torch.nn.Parameter(torch.zeros(n_inst, n_features))


@pytest.mark.parametrize(("function", "implementation"), [("optimize", _other_loop), ("toy_parameters", _other_parameters)])
def test_statistical_checks_accept_other_correct_implementations(function, implementation):
    result = run_exercise(EXERCISES[function], implementation)
    assert result.passed, result.message


def test_loop_check_is_quiet_and_names_what_the_loop_did_wrong(capsys):
    """The check's training runs print no progress bar in a terminal, and a loop that skips steps is told so."""

    def half_the_steps(model, feature_probability, importance, batch_fn, loss_fn, steps, **options):
        return ref01.optimize(model, feature_probability, importance, batch_fn, loss_fn, steps // 2, **options)

    result = run_exercise(EXERCISES["optimize"], half_the_steps)
    assert not result.passed and "the optimizer took 250 steps; expected 500" in result.message
    assert "check:" not in capsys.readouterr().err


def test_feature_phase_reads_the_phase_diagram_rule():
    """In 2 features in 1 dimension the extra feature's phase is the old rule: kept (|w| > 0.5) alone or with feature 0."""
    w = torch.rand(200, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    kept = w.abs() > 0.5
    rule = torch.where(kept[:, 0] & kept[:, 1], 2, torch.where(kept[:, 1], 1, 0))
    assert torch.equal(ref01.feature_phase(w[:, None, :])[:, 1], rule)


def test_toy_parameters_fans_claim():
    """The hint's claim: `nn.init.xavier_normal_` on the 3-D tensor uses fans d_hidden·n and n_inst·n, not n and m."""
    W = torch.nn.init.xavier_normal_(torch.empty(50, 20, 40), generator=torch.Generator().manual_seed(0))
    assert W.std().item() == pytest.approx((2 / (20 * 40 + 50 * 40)) ** 0.5, rel=0.02)


def test_solution_notebook_gets_full_marks_where_the_references_are_withheld():
    """The new checks' probes run in the grading kernel, where `utils.references.chapter01` is withheld."""
    from tests.conftest import SOLUTIONS
    from utils.grade import grade_notebook

    report = grade_notebook(SOLUTIONS / "01_superposition.ipynb")
    assert report["score"] == report["max_score"] == sum(e.points for e in chapter01.EXERCISES), report
