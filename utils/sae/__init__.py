"""The course's SAE library: what chapter 02 builds, and what chapters 04a, 04b and bench/ use.

An SAE is a dict of tensors with SAELens's key names (``W_enc [d_in, d_sae]``, ``b_enc``,
``W_dec [d_sae, d_in]`` — row i is latent i's decoder direction —, ``b_dec``; JumpReLU adds
``threshold``; Gated uses ``b_gate, r_mag, b_mag`` instead of ``b_enc``).

- `base`       the config (`SAEConfig`), the architecture interface, initialisation, decoding;
- `relu`, `topk`, `jumprelu`, `gated`  one architecture each: its encoder and training loss;
- `model`      which architecture an SAE is; `encode`, `run_sae` for any of them;
- `training`   `train_sae`: chapter 02's training loop, with the objective of any architecture;
- `metrics`    L0, variance explained, dead/dense fractions, CE loss with the SAE spliced in;
- `saelens`    SAELens's on-disk format (save, load);
- `pretrained` chapter 02's language-model SAE, trained once and cached;
- `latents`    a latent's activations over text, and its top-activating contexts.

The pieces are chapter 02's exercises (`utils/references/chapter02.py`): the library calls them,
it never re-implements them.
"""
