"""IMDN and PAN with the authors' weights reproduce what the official code scores (``reference_scores.json``).

The reference is per image, so a mean within 0.01 dB that hides offsetting per-image errors would still fail.
Set5 and Set14 at x2/x3/x4 take about 1.5 min on 2 free cores; B100 (5× Set14) runs with ``-m slow``.
"""

from __future__ import annotations

import functools
import hashlib
import json

import pytest
import torch
from torch import nn

import litesr
from litesr.evaluate import self_ensemble_forward
from litesr.models.imdn import detect_config as detect_imdn
from litesr.models.pan import detect_config as detect_pan

from conftest import BENCHMARKS, DATA, WEIGHTS

TOL_DB = 0.01
TOL_SSIM = 1e-4
WEIGHT_FILES = {"imdn": "IMDN/IMDN_x{s}.pth", "pan": "PAN/PANx{s}_DF2K.pth"}


@functools.lru_cache(maxsize=None)
def reference() -> dict:
    path = DATA / "reference_scores.json"
    if not path.exists():
        pytest.skip(f"{path} not available")
    return json.loads(path.read_text())


def weights(family: str, scale: int):
    path = WEIGHTS / WEIGHT_FILES[family].format(s=scale)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


class Memo(nn.Module):
    """Caches the wrapped model's output per input, so scoring again under the other gray convention is free."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.scale, self.cache = model, model.scale, {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), hashlib.sha1(x.cpu().numpy().tobytes()).hexdigest())
        if key not in self.cache:
            self.cache[key] = self.model(x)
        return self.cache[key]


@functools.lru_cache(maxsize=None)
def scores(family: str, scale: int, set_name: str) -> tuple[dict, dict]:
    """(default-convention, raw-gray) results of one model on one set; each model runs once per set."""
    model = Memo(litesr.load_model(weights(family, scale), scale=scale))
    rgb = litesr.evaluate(model, BENCHMARKS, [set_name], scale, progress=False)[set_name]
    raw = litesr.evaluate(model, BENCHMARKS, [set_name], scale, gray="raw", progress=False)[set_name]
    return rgb, raw


def _case(family, scale, set_name):
    return pytest.param(family, scale, set_name, marks=[pytest.mark.slow] if set_name == "B100" else [],
                        id=f"{family}-x{scale}-{set_name}")


CASES = [_case(f, s, n) for f in ("imdn", "pan") for n in ("Set5", "Set14", "B100") for s in (2, 3, 4)]


@pytest.mark.parametrize("family,scale,set_name", CASES)
def test_reproduces_official_scores(family, scale, set_name):
    ref = reference()[family][f"x{scale}"][set_name]
    got, _ = scores(family, scale, set_name)
    assert got["images"] == ref["images"]
    assert set(got["per_image"]) == set(ref["per_image"])
    worst = max(got["per_image"], key=lambda n: abs(got["per_image"][n]["psnr_y"] - ref["per_image"][n]["psnr"]))
    worst_diff = got["per_image"][worst]["psnr_y"] - ref["per_image"][worst]["psnr"]
    assert abs(worst_diff) < TOL_DB, f"{worst}: {worst_diff:+.4f} dB from the official code"
    assert abs(got["psnr_y"] - ref["psnr"]) < TOL_DB
    assert abs(got["ssim_y"] - ref["ssim"]) < TOL_SSIM


@pytest.mark.parametrize("family,scale,set_name", [c for c in CASES if c.values[2] != "Set5"])
def test_gray_raw_convention_reproduces_variant(family, scale, set_name):
    variants = reference()["variants"]
    rgb, raw = scores(family, scale, set_name)
    assert abs(raw["psnr_y"] - variants["gray_raw"][family][f"x{scale}"][set_name]) < TOL_DB
    assert abs(raw["ssim_y"] - variants["gray_raw_ssim"][family][f"x{scale}"][set_name]) < TOL_SSIM
    if set_name == "Set14":  # bridge is the only grayscale image: 1.32 dB on it, 0.094 dB on the mean
        assert rgb["psnr_y"] - raw["psnr_y"] == pytest.approx(0.094, abs=0.002)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_imdn_is_auto_detected(scale):
    model = litesr.load_model(weights("imdn", scale))
    assert model.arch_name == "imdn" and model.scale == scale
    assert model.config == {"scale": scale, "nf": 64, "num_modules": 6}


def test_pan_is_auto_detected_and_x2_x3_need_the_scale(tmp_path):
    x4 = litesr.load_model(weights("pan", 4))
    assert x4.arch_name == "pan" and x4.config == {"scale": 4, "nf": 40, "unf": 24, "nb": 16}
    for scale in (2, 3):  # identical keys and shapes: the scale comes from the file name (PANx3_DF2K.pth) ...
        assert litesr.load_model(weights("pan", scale)).scale == scale
        assert litesr.load_model(weights("pan", scale), scale=scale).scale == scale
        saved = litesr.save_model(litesr.load_model(weights("pan", scale)), tmp_path / "pan.safetensors")
        assert litesr.load_model(saved).scale == scale  # ... or from litesr's metadata
        anonymous = tmp_path / "weights.pth"  # ... and without either, the user must say it
        anonymous.write_bytes(weights("pan", scale).read_bytes())
        with pytest.raises(litesr.CheckpointError, match="cannot be read from its weights.*--scale"):
            litesr.load_model(anonymous)
    with pytest.raises(litesr.CheckpointError, match="scale mismatch"):
        litesr.load_model(weights("pan", 4), scale=2)


def test_detectors_ignore_each_others_keys():
    imdn = litesr.read_state_dict(weights("imdn", 4))
    pan = litesr.read_state_dict(weights("pan", 4))
    assert detect_imdn(pan) is None and detect_pan(imdn) is None


def test_wrong_architecture_is_named():
    with pytest.raises(litesr.CheckpointError, match="not a pan checkpoint; it looks like an imdn checkpoint"):
        litesr.load_model(weights("imdn", 2), arch="pan")


def test_self_ensemble_is_flip_and_transpose_equivariant():
    torch.manual_seed(0)
    model = litesr.create_model("imdn", 2).eval()
    x = torch.rand(1, 3, 6, 9)
    with torch.inference_mode():
        y = self_ensemble_forward(model, x)
        assert y.shape == (1, 3, 12, 18)
        torch.testing.assert_close(self_ensemble_forward(model, x.flip(-1)), y.flip(-1), rtol=0, atol=1e-5)
        torch.testing.assert_close(self_ensemble_forward(model, x.transpose(-2, -1)), y.transpose(-2, -1),
                                   rtol=0, atol=1e-5)
