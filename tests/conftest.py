"""Shared test fixtures: the conformance vectors and data in ../shared (beside the clone, as in CI)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning workers slow a forward ~40x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

#: ../shared beside the clone; LITESR_SHARED points elsewhere
SHARED = Path(os.environ.get("LITESR_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
CONFORMANCE = SHARED / "conformance"
DATA = SHARED / "data"
BENCHMARKS = DATA / "benchmarks"
WEIGHTS = DATA / "weights"

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path_factory):
    """Nothing a test converts or compiles (OpenVINO) is written to the user's cache."""
    monkeypatch.setenv("LITESR_CACHE", str(tmp_path_factory.getbasetemp() / "litesr-cache"))


def load_vector(name: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(official state dict, all tensors, json description) of one conformance vector."""
    from safetensors.torch import load_file

    path = CONFORMANCE / f"{name}.safetensors"
    if not path.exists():
        pytest.skip(f"conformance vector {path} not available")
    tensors = load_file(str(path))
    state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
    meta = json.loads((CONFORMANCE / f"{name}.json").read_text())
    return state, tensors, meta


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max|out − ref| / max|ref| — the project's pass rule is ≤ 2e-5."""
    assert out.shape == ref.shape, f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    return ((out.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


TOLERANCE = 2e-5


def assert_conforms(model, tensors, ios: str = "abd", label=None) -> None:
    """``model`` maps each conformance input ``input_<io>`` to the official ``output_<io>`` within TOLERANCE."""
    with torch.inference_mode():
        for io in ios:
            err = relative_error(model(tensors[f"input_{io}"]), tensors[f"output_{io}"])
            assert err <= TOLERANCE, (label, io, err)


#: The constructor arguments that make up a Swin-type model's config (SwinIR, GRFormer).
SWIN_CONFIG_KEYS = ("embed_dim", "depths", "num_heads", "window_size", "mlp_ratio")


def assert_config_matches(model, meta: dict, keys: tuple[str, ...] = SWIN_CONFIG_KEYS) -> None:
    """The configuration litesr read from a checkpoint is the official constructor's (scale and ``keys``)."""
    args = meta["constructor_args"]
    assert model.scale == meta["scale"] == args["upscale"]
    for key in keys:
        assert model.config[key] == args[key], key


def psnr(out: torch.Tensor, ref: torch.Tensor, peak: float | None = None) -> float:
    """PSNR of ``out`` against ``ref`` in dB (tensors or arrays), where the bound is a PSNR (bf16, OpenVINO, tiles
    against the whole image): ``peak`` is the signal's range (1 or 255), by default max|ref|."""
    out, ref = torch.as_tensor(out), torch.as_tensor(ref)
    assert out.shape == ref.shape, f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    peak = ref.double().abs().max().item() if peak is None else peak
    mse = ((out.double() - ref.double()) ** 2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)

#: small configurations of each architecture, so an export or a conversion takes seconds
SMALL = {
    "elan-light": dict(m_elan=4),  # two blocks: unshifted and shifted, attention shared in each
    "esrt": dict(n_feats=16),
    "grformer": dict(depths=[2], num_heads=[3]),  # one group: a plain and a shifted block
    "hitsrf": dict(embed_dim=40, depths=[2], num_heads=[2], hier_win_ratios=[0.5, 2]),  # windows 4 and 16
    "imdn": {},
    "pan": {},
    "span": {},
    "swinir-light": dict(depths=[2], num_heads=[6]),
}


def small_model(variant: str, scale: int = 2) -> torch.nn.Module:
    """A seeded small model of ``variant`` (``SMALL``) with realistic BatchNorm statistics."""
    import litesr

    torch.manual_seed(0)
    model = litesr.create_model(variant, scale, **SMALL[variant]).eval()
    for m in model.modules():  # random init has var 1: a saturated softmax
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(50.0)
    return model


class NearestX4(torch.nn.Module):
    """A stand-in x4 model (nearest upsampling): memory measured with it is the pipeline's, not a network's."""

    scale, size_multiple = 4, 1

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest") * self.w


def without_paths(monkeypatch, op: str, *paths) -> None:
    """``litesr.ops.policy.POLICY[op]`` without the rules that take one of ``paths``, for the rest of the test."""
    from litesr.ops import policy

    monkeypatch.setitem(policy.POLICY, op, tuple(r for r in policy.POLICY[op] if r.take not in paths))
