"""PAN's fast paths against the official order: the upsampling convolution (nearest upsampling, then the 3×3
convolution) and the convolutions with their activations fused."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import litesr
from conftest import WEIGHTS, without_paths
from litesr import compat
from litesr.io import read_image
from litesr.ops.conv import fused_activations, nearest_upsample_conv3x3


@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("bias", [True, False])
def test_nearest_upsample_conv_is_the_official_order(factor, bias):
    torch.manual_seed(factor)
    x, weight = torch.randn(2, 7, 13, 10), torch.randn(5, 7, 3, 3)
    b = torch.randn(5) if bias else None
    official = F.conv2d(F.interpolate(x, scale_factor=factor, mode="nearest"), weight, b, padding=1)
    fast = nearest_upsample_conv3x3(x, weight, b, factor)
    assert fast.shape == official.shape
    torch.testing.assert_close(fast, official, rtol=0, atol=2e-5 * official.abs().max().item())


def test_gradients_reach_the_official_weights():
    torch.manual_seed(0)
    x, weight = torch.randn(1, 3, 6, 6), torch.randn(4, 3, 3, 3, requires_grad=True)
    nearest_upsample_conv3x3(x, weight, None, 2).square().sum().backward()
    expected = torch.autograd.grad(F.conv2d(F.interpolate(x, scale_factor=2), weight, padding=1).square().sum(),
                                   weight)[0]
    torch.testing.assert_close(weight.grad, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_forward_gives_the_official_output(scale, monkeypatch):
    """The inference forward (at fp32 on a CPU with oneDNN: convolutions with their activations fused) against the
    official op sequence, run with the fused path off."""
    torch.manual_seed(scale)
    model = litesr.create_model("pan", scale).eval()
    x = torch.rand(1, 3, 12, 9)
    with torch.inference_mode():
        out = model(x)
        assert fused_activations(model.conv_first(x)) == compat.fused_conv_runs(torch.float32, "sigmoid")
        without_paths(monkeypatch, "conv activation", "fused")
        without_paths(monkeypatch, "pan upsampling", "compiled")
        without_paths(monkeypatch, "pan trunk", "compiled")
        fea = model.conv_first(x)
        fea = fea + model.trunk_conv(model.SCPA_trunk(fea))
        for i in (1, 2) if scale == 4 else (1,):
            up = getattr(model, f"upconv{i}")(F.interpolate(fea, scale_factor=2 if scale == 4 else scale))
            fea = model.lrelu(getattr(model, f"HRconv{i}")(model.lrelu(getattr(model, f"att{i}")(up))))
        official = model.conv_last(fea) + F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    assert out.shape == (1, 3, 12 * scale, 9 * scale)
    torch.testing.assert_close(out, official, rtol=0, atol=2e-5 * official.abs().max().item())


def test_fused_path_is_as_exact_as_the_official_order_on_the_published_weights(monkeypatch):
    """The fused path (oneDNN's convolutions with their activations, the compiled kernels where they run) on the
    published x4 weights and a photograph. These weights amplify rounding (pixel-attention gates reach e^-42, unlike
    random ones), so any two fp32 orders differ by more than the conformance tolerance: here the official order is
    1.7e-5 of the output's range from a float64 forward and the fused path 1.2e-5, 2.3e-5 apart; at LR 256² 3.4e-4
    and 6.5e-4, 9.9e-4 apart (Set5 and Set14 within 1e-5 dB either way). So the fused path must be about as near
    float64 as the official order: within twice its distance."""
    path = WEIGHTS / "PAN" / "PANx4_DF2K.pth"
    if not path.is_file():
        pytest.skip(f"needs {path}")
    model = litesr.load_model(path).eval()
    image = Path(__file__).resolve().parents[1] / "examples" / "sample.png"
    x = torch.from_numpy(read_image(image)).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        fused = model(x)
        without_paths(monkeypatch, "conv activation", "fused")
        without_paths(monkeypatch, "pan upsampling", "compiled")
        without_paths(monkeypatch, "pan trunk", "compiled")
        official = model(x)
        exact = model.double()(x.double())
    scale = exact.abs().max().item()
    assert (fused.double() - exact).abs().max().item() <= 2 * (official.double() - exact).abs().max().item()
    assert (official.double() - exact).abs().max().item() <= 1e-4 * scale
