"""Where the course computes (utils/device.py): a GPU takes activation collection and SAE training where
there is one; grading and the learner's cells stay on the CPU.

This machine has no GPU, so these tests check the plumbing on the CPU: the choice of device, that
asking for the CPU changes nothing, and — on PyTorch's "meta" device, which runs operations without
data, so that only bringing a number back fails — that training and activation collection do run
on the device they are given. Untested here: a run on CUDA itself (meta tensors mix with CPU
tensors where CUDA's would raise a device mismatch, and PyTorch's fake CUDA tensors cannot index
with CPU indices as real CUDA tensors can, so neither can stand in), its speed, and CUDA's own
numerical differences.
"""

from __future__ import annotations

import pytest
import torch

from tests.test_chapter02 import _toy_activations
from utils import data, device, models
from utils.sae import training as sae_training
from utils.sae.base import SAEConfig


@pytest.fixture
def no_overrides(monkeypatch):
    monkeypatch.delenv("COURSE_GRADING", raising=False)
    monkeypatch.delenv("COURSE_DEVICE", raising=False)


def test_a_gpu_is_used_where_there_is_one_and_never_while_grading(monkeypatch, no_overrides):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.default_device() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.default_device() == "cuda"
    monkeypatch.setenv("COURSE_DEVICE", "cuda:1")
    assert device.default_device() == "cuda:1"
    monkeypatch.setenv("COURSE_GRADING", "1")  # set in every grading kernel (utils.grading.sandbox.KERNEL_ENV)
    assert device.default_device() == "cpu"


def test_grading_kernels_are_told_they_grade():
    from utils.grading.sandbox import KERNEL_ENV

    assert KERNEL_ENV["COURSE_GRADING"] == "1"


def test_training_on_the_cpu_asked_for_is_training_as_before(no_overrides):
    h = _toy_activations(2000)
    cfg = SAEConfig(d_sae=16, architecture="topk", k=3, steps=40, batch_size=128, resample="anthropic", resample_every=10,
                    dead_window=5, log_every=10)
    default, default_history = sae_training.train_sae(h, cfg, progress=False)
    asked, asked_history = sae_training.train_sae(h, cfg, progress=False, device="cpu")
    assert all(torch.equal(default[name], asked[name]) for name in default) and default_history == asked_history
    assert all(tensor.device.type == "cpu" for tensor in asked.values())


@pytest.mark.parametrize("architecture", ["relu", "topk", "jumprelu", "gated"])
def test_training_runs_on_the_device_asked_for(architecture, no_overrides):
    """On "meta" the step runs without data, and the first logged number (`.item()`) cannot be given: had the
    trainer stayed on the CPU, it would have finished."""
    cfg = SAEConfig(d_sae=16, architecture=architecture, k=3, steps=5, batch_size=64, dead_window=0, log_every=1)
    with pytest.raises((RuntimeError, NotImplementedError)) as raised:
        sae_training.train_sae(_toy_activations(500), cfg, progress=False, device="meta")
    assert "same device" not in str(raised.value) and "meta" in str(raised.value).lower(), raised.value


def test_activations_are_collected_on_a_copy_of_the_model_on_the_device_and_come_back_on_the_cpu(model, no_overrides):
    tokens = torch.tensor([[model.tokenizer.bos_token_id, 504, 3458, 282, 260]])
    here = data.collect_activations(model, tokens, "blocks.3.hook_resid_pre", desc=None, device="cpu")
    assert here.device.type == "cpu" and here.dtype == torch.float16
    copy = models.on_device(model, "meta")
    assert copy is not model and str(copy.cfg.device) == "meta" and next(model.parameters()).device.type == "cpu"
    assert models.on_device(model, "meta") is copy and models.on_device(model, "cpu") is model
    with pytest.raises(NotImplementedError, match="meta"):  # the forward pass ran on meta; only bringing it back fails
        data.collect_activations(model, tokens, "blocks.3.hook_resid_pre", desc=None, device="meta")
