"""Train one TopK SAE on cached activations and print its figures as JSON (one process per run).

    python bench/sae_runner.py ours|saelens|chapter ACTIVATIONS.safetensors --d-sae 4608 --k 32 --steps 600

Run by `bench/sae.py`, one process per run, for ``ours`` (the course's `train_sae`) and for
``saelens`` (SAELens's own `SAETrainer` and `TopKTrainingSAE`). Both sides read the same
activations, draw batches from the course's one batch iterator (same seed), use
the same width, k, AuxK dead-latent window, learning rate and schedule (constant, linear decay over
the last 20 % of steps), and are scored by the same `score` function (chapter 02's `firing_stats`
and `variance_explained`) on the same held-out activations. The SAELens side trains with SAELens's
code only. ``chapter`` scores chapter 02's own SAE (`utils.sae.pretrained.pretrained_sae`, from the course's
cache) the same way: the figures issue 18 asks of the chapter.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from safetensors.torch import load_file

from utils.data import batches
from utils.references.chapter02 import firing_stats, variance_explained
from utils.sae.pretrained import HELD_OUT  # the last activations, never trained on


def score(x: torch.Tensor, x_hat: torch.Tensor, acts: torch.Tensor) -> dict[str, float]:
    """L0, fraction of variance explained, and the fraction of latents that never fire on ``x``."""
    stats = firing_stats(acts)
    return {"l0": stats["l0"], "variance_explained": variance_explained(x, x_hat), "dead_fraction": stats["dead_fraction"]}


def _train_course(train: torch.Tensor, cfg: object) -> tuple[float, object]:
    """The course's `train_sae` on ``cfg``: (training seconds, the SAE as a function of x → (latents, x̂))."""
    from utils.sae.model import run_sae
    from utils.sae.training import train_sae

    start = time.perf_counter()
    params, _ = train_sae(train, cfg, progress=False)
    seconds = time.perf_counter() - start
    return seconds, lambda x: run_sae(params, x, k=cfg.k)


def train_ours(train: torch.Tensor, args: argparse.Namespace) -> tuple[float, object]:
    from utils.sae.base import SAEConfig

    cfg = SAEConfig(
        d_sae=args.d_sae, architecture="topk", k=args.k, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, dead_window=args.dead_window,
    )
    return _train_course(train, cfg)


def train_chapter(train: torch.Tensor, args: argparse.Namespace) -> tuple[None, object]:
    """Chapter 02's own SAE as chapters 04a, 04b and 05 load it: `pretrained_sae`, trained once per machine with
    the chapter's recipe on the chapter's activations (these) and then read from the course's cache. Not timed
    here: the notebook trains the same recipe with the learner's loop, inside its own time end to end (the
    chapters section's row). The command line's width, k and steps are not used."""
    from utils.models import load_model
    from utils.sae.model import run_sae
    from utils.sae.pretrained import pretrained_sae, recipe

    cfg = recipe()
    args.d_sae, args.k, args.steps, args.batch_size = cfg.d_sae, cfg.k, cfg.steps, cfg.batch_size  # what the row reports
    params, _ = pretrained_sae(load_model(verbose=False), d_sae=cfg.d_sae, k=cfg.k, steps=cfg.steps, verbose=False)
    return None, lambda x: run_sae(params, x, k=cfg.k)


def train_saelens(train: torch.Tensor, args: argparse.Namespace) -> tuple[float, object]:
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(args.seed)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=train.shape[1], d_sae=args.d_sae, k=args.k, aux_loss_coefficient=1 / 32))
    cfg = SAETrainerConfig(
        total_training_samples=args.steps * args.batch_size,
        train_batch_size_samples=args.batch_size,
        lr=args.lr,
        lr_decay_steps=args.steps // 5,
        lr_end=args.lr / 10,  # required by the config; unused by the constant schedule
        dead_feature_window=args.dead_window,  # AuxK's notion of dead, as in ours
        device="cpu",
    )
    trainer = SAETrainer(cfg, sae, batches(train, args.batch_size, torch.Generator().manual_seed(args.seed)))
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        acts = sae.encode(x)
        return acts, sae.decode(acts)

    return seconds, run


def ce_loss_recovered(run: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], seen: int, n_seqs: int) -> float:
    """CE loss recovered with the SAE spliced in at the chapter's hook, on ``n_seqs`` corpus sequences past
    the ``seen`` ones the activations came from (text neither trainer saw), scored by the course's `ce_losses_of`."""
    from utils.data import token_sequences
    from utils.models import load_model
    from utils.paths import SAE_HOOK
    from utils.sae.metrics import ce_losses_of

    model = load_model(verbose=False)
    tokens = token_sequences(model, 128, seen + n_seqs)[seen:]
    return ce_losses_of(model, tokens, SAE_HOOK, lambda x: run(x)[1].to(x.dtype))["ce_recovered"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trainer", choices=["ours", "saelens", "chapter"])
    parser.add_argument("activations")
    parser.add_argument("--d-sae", type=int, default=4608)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--tokens", type=int, default=0, help="train on only the first N activations (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus-seqs", type=int, default=0, help="corpus sequences the activations came from")
    parser.add_argument("--ce-seqs", type=int, default=0, help="CE loss recovered on this many later sequences (0: not measured)")
    parser.add_argument("--dead-window", type=int, default=500, help="steps without firing before AuxK treats a latent as dead")
    args = parser.parse_args()
    acts = load_file(args.activations)["activations"]
    train, held_out = acts[:-HELD_OUT], acts[-HELD_OUT:].float()
    if args.tokens:
        train = train[: args.tokens]
    seconds, run = {"ours": train_ours, "saelens": train_saelens, "chapter": train_chapter}[args.trainer](train, args)
    with torch.no_grad():
        acts_out, x_hat = run(held_out)
    figures = {
        "trainer": args.trainer,
        "d_sae": args.d_sae,
        "k": args.k,
        "tokens_trained": args.steps * args.batch_size,
        **({"train_seconds": round(seconds, 1), "tokens_per_s": round(args.steps * args.batch_size / seconds)}
           if seconds else {}),  # the chapter's SAE is read, not trained
        **{name: round(value, 4) for name, value in score(held_out, x_hat, acts_out).items()},
    }
    if args.ce_seqs:
        figures["ce_loss_recovered"] = round(ce_loss_recovered(run, args.corpus_seqs, args.ce_seqs), 4)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
