"""ops.ffn: the fused feed-forward paths give the separate ops' values, and run only where the policy says."""

import pytest
import torch
from torch import nn

from litesr import compat
from litesr.ops import ffn

needs_fused = pytest.mark.skipif(not compat.fused_ffn_runs(torch.float32),
                                 reason="this PyTorch has no fused oneDNN linear/conv + GELU")


def branch(kind: str, hidden: int) -> nn.Sequential:
    if kind == "hitsrf":
        return nn.Sequential(nn.Conv2d(hidden, hidden, 5, 1, 2, groups=hidden), nn.GELU())
    return nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden), nn.GELU(),
                         nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden))


def layers(kind: str, dim: int = 12, hidden: int = 24):
    torch.manual_seed(0)
    return nn.Linear(dim, hidden), nn.GELU(), branch(kind, hidden), nn.Linear(hidden, dim)


def separate(x, fc1, act, dw, fc2):
    h = act(fc1(x))
    return fc2(h + dw(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


@needs_fused
@pytest.mark.parametrize("kind", ["hitsrf", "grformer"])
def test_fused_conv_ffn_is_the_separate_ops(kind, monkeypatch):
    fc1, act, dw, fc2 = layers(kind)
    x = torch.randn(2, 9, 7, 12)
    calls = []
    real = compat.fused_linear_gelu
    monkeypatch.setattr(compat, "fused_linear_gelu", lambda *a: calls.append(1) or real(*a))
    with torch.inference_mode():
        got, want = ffn.conv_ffn(x, fc1, act, dw, fc2), separate(x, fc1, act, dw, fc2)
    assert calls, "the fused path did not run at fp32 inference"
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5 * want.abs().max().item())


@needs_fused
def test_fused_mlp_is_the_separate_ops():
    fc1, act, _, fc2 = layers("hitsrf")
    x = torch.randn(3, 40, 12)
    with torch.inference_mode():
        torch.testing.assert_close(ffn.mlp(x, fc1, act, fc2), fc2(act(fc1(x))), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["hitsrf", "grformer"])
def test_separate_ops_in_training_autocast_and_other_branches(kind, monkeypatch):
    monkeypatch.setattr(compat, "fused_linear_gelu", lambda *a: pytest.fail("fused path taken"))
    fc1, act, dw, fc2 = layers(kind)
    x = torch.randn(1, 5, 6, 12, requires_grad=True)
    out = ffn.conv_ffn(x, fc1, act, dw, fc2)  # gradients on
    out.sum().backward()
    assert x.grad is not None
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ffn.conv_ffn(x.detach(), fc1, act, dw, fc2)
        ffn.conv_ffn(x.detach(), fc1, nn.GELU(approximate="tanh"), dw, fc2)  # not the exact GELU
        odd = nn.Sequential(nn.Conv2d(24, 24, 3, 1, 1), nn.GELU())  # not depthwise
        torch.testing.assert_close(ffn.conv_ffn(x.detach(), fc1, act, odd, fc2), separate(x.detach(), fc1, act, odd,
                                                                                           fc2))


@needs_fused
def test_linear_runs_onednn_where_the_policy_says(monkeypatch):
    """fp32 inference on contiguous rows takes oneDNN's linear, with F.linear's values; strided rows, gradients and
    autocast take F.linear."""
    torch.manual_seed(0)
    layer = nn.Linear(12, 30)
    calls = []
    real = compat.onednn_linear
    monkeypatch.setattr(compat, "onednn_linear", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(5, 7, 24)
    with torch.inference_mode():
        got = ffn.linear(x[..., :12].contiguous(), layer)
        assert len(calls) == 1
        torch.testing.assert_close(got, layer(x[..., :12]), rtol=0, atol=1e-6)
        ffn.linear(x[..., :12], layer)  # strided rows
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert ffn.linear(x[..., :12].contiguous(), layer).dtype == torch.bfloat16
    ffn.linear(x[..., :12].contiguous(), layer).sum().backward()  # gradients
    assert len(calls) == 1 and layer.weight.grad is not None
