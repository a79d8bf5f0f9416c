"""SAELens's on-disk format: ``cfg.json`` and ``sae_weights.safetensors`` (what ``SAE.save_model`` writes).

`save_sae` writes the course's SAEs so that SAELens 6 loads them with ``SAE.load_from_disk``;
`load_sae` reads them (or SAELens's own) back as a dict of tensors and the config.
"""

from __future__ import annotations

import json
from pathlib import Path

from utils.sae.base import Params
from utils.sae.model import architecture_of

SAELENS_VERSION = "6.54.12"
KEYS = {
    "standard": {"W_enc", "b_enc", "W_dec", "b_dec"},
    "topk": {"W_enc", "b_enc", "W_dec", "b_dec"},
    "jumprelu": {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"},
    "gated": {"W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"},
}


def save_sae(params: Params, path: str | Path, k: int | None = None, metadata: dict | None = None) -> Path:
    """Write ``cfg.json`` and ``sae_weights.safetensors`` as SAELens 6 does; ``k`` for a TopK SAE."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arch = architecture_of(params, k).saelens
    weights = {name: value.detach().float().contiguous() for name, value in params.items()}
    if "log_threshold" in weights:
        weights["threshold"] = weights.pop("log_threshold").exp()
    if set(weights) != KEYS[arch]:
        raise ValueError(f"a {arch} SAE has tensors {sorted(KEYS[arch])}, got {sorted(weights)}")
    d_sae, d_in = weights["W_dec"].shape
    cfg = {
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"sae_lens_version": SAELENS_VERSION, "sae_lens_training_version": SAELENS_VERSION, **(metadata or {})},
        "architecture": arch,
    }
    if k is not None:
        cfg.update(k=k, rescale_acts_by_decoder_norm=False)
    save_file(weights, path / "sae_weights.safetensors")
    (path / "cfg.json").write_text(json.dumps(cfg, indent=2))
    return path


def load_sae(path: str | Path) -> tuple[Params, dict]:
    """Read an SAE saved by `save_sae` (or by SAELens): (tensors, cfg)."""
    from safetensors.torch import load_file

    path = Path(path)
    return load_file(path / "sae_weights.safetensors"), json.loads((path / "cfg.json").read_text())
