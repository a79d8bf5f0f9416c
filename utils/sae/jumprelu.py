"""The JumpReLU SAE (Rajamanoharan et al. 2024): z·H(z − θ), trained on L0 through straight-through estimators."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, autograd

from utils.references.chapter02 import jumprelu_backward
from utils.sae.base import Params, SAEConfig, decode, log_threshold, mse, pre_activations


class JumpReLU(autograd.Function):
    """z ↦ z·H(z − θ), with the paper's pseudo-derivative for θ.

    ``backward_fn`` computes the gradients (chapter 02's `jumprelu_backward`; the learner's in the notebook).
    """

    @staticmethod
    def forward(ctx, x: Tensor, threshold: Tensor, bandwidth: float, backward_fn: Callable = jumprelu_backward) -> Tensor:
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth, ctx.backward_fn = bandwidth, backward_fn
        return x * (x > threshold)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, threshold = ctx.saved_tensors
        grad_x, grad_threshold = ctx.backward_fn(x, threshold, ctx.bandwidth, grad_output)
        return grad_x, grad_threshold, None, None


class Step(autograd.Function):
    """H(z − θ) for the L0 penalty: no gradient to z, −(1/ε)·K((z − θ)/ε) to θ."""

    @staticmethod
    def forward(ctx, x: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return (x > threshold).to(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, threshold = ctx.saved_tensors
        rectangle = ((x - threshold) / ctx.bandwidth).abs() < 0.5
        return None, (-(1.0 / ctx.bandwidth) * rectangle * grad_output).sum(0), None


def threshold_of(params: Params) -> Tensor:
    """θ: trained as ``log_threshold`` (it stays positive), saved as ``threshold``."""
    return params["threshold"] if "threshold" in params else params["log_threshold"].exp()


@dataclass(frozen=True)
class JumpReLUSAE:
    """``backward_fn``: chapter 02's `jumprelu_backward` (the notebook passes the learner's)."""

    backward_fn: Callable = jumprelu_backward
    name: str = "jumprelu"
    saelens: str = "jumprelu"

    def init(self, params: Params, cfg: SAEConfig) -> Params:
        return {**params, "log_threshold": log_threshold(cfg.init_threshold, params["b_enc"].shape[0])}

    def encode(self, params: Params, x: Tensor, k: int | None = None) -> Tensor:
        pre = pre_activations(params, x)
        return pre * (pre > threshold_of(params))

    def loss(self, params: Params, x: Tensor, cfg: SAEConfig, dead: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """MSE + l0_coeff · L0, both through the straight-through estimators of width ``bandwidth``."""
        pre = pre_activations(params, x)
        threshold = threshold_of(params)
        acts = JumpReLU.apply(pre, threshold, cfg.bandwidth, self.backward_fn)
        x_hat = decode(params, acts)
        l0 = Step.apply(pre, threshold, cfg.bandwidth).sum(-1).mean()
        return mse(x, x_hat) + cfg.l0_coeff * l0, acts, x_hat
