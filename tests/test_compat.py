"""The private PyTorch APIs behind litesr.compat: which this build offers, and that each fallback computes the same."""

import torch
import torch.nn.functional as F

from litesr import compat


def test_report_which_private_apis_this_pytorch_offers(capsys):
    results = compat.probes()
    with capsys.disabled():
        print("\nprivate PyTorch APIs: " + ", ".join(f"{k}: {'yes' if v else 'NO (fallback)'}"
                                                      for k, v in results.items()))
    assert all(isinstance(v, bool) for v in results.values())
    assert results["Tensor._version"] and results["torch._foreach_lerp_"]  # the tested torch has both


def test_softmax_backward_matches_autograd_with_and_without_the_private_kernel(monkeypatch):
    x = torch.randn(3, 5, 7, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(3, 5, 7, dtype=torch.float64)
    out = torch.softmax(x, -1)
    (expected,) = torch.autograd.grad(out, x, grad)
    assert torch.allclose(compat.softmax_backward(grad, out.detach()), expected)
    monkeypatch.setattr(compat, "_softmax_backward_runs", lambda: False)
    assert torch.allclose(compat.softmax_backward(grad, out.detach()), expected)


def test_fallbacks_compute_what_the_private_calls_do(monkeypatch):
    a, c = [torch.zeros(4), torch.ones(2)], [torch.ones(4), torch.full((2,), 3.0)]
    compat.foreach_lerp_(a, c, 0.5)
    monkeypatch.setattr(compat, "_foreach_lerp_runs", lambda: False)
    b = [torch.zeros(4), torch.ones(2)]
    compat.foreach_lerp_(b, c, 0.5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))

    t = torch.zeros(3)
    v = compat.version(t)
    assert compat.version(t) == v
    t.add_(1)
    assert compat.version(t) != v
    monkeypatch.setattr(compat, "_version_runs", lambda: False)
    assert compat.version(t) != compat.version(t)  # no counter: nothing is ever reused


def test_a_cache_keyed_on_versions_recomputes_without_the_counter(monkeypatch):
    from litesr.ops.derived import inference_weights

    owner = torch.nn.Linear(3, 2).eval()
    calls = []

    def build():
        calls.append(1)
        return owner.weight.detach() * 2

    with torch.no_grad():
        inference_weights(owner, "k", torch.float32, build)
        inference_weights(owner, "k", torch.float32, build)
        assert len(calls) == 1
        monkeypatch.setattr(compat, "_version_runs", lambda: False)
        inference_weights(owner, "k", torch.float32, build)
        assert len(calls) == 2


def test_last_lr_and_fused_conv_relu():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    compat.set_last_lr(sched, [0.125])
    assert sched.get_last_lr() == [0.125] or not compat._last_lr_runs()
    if compat.fused_conv_relu_runs(torch.bfloat16):
        x, w, b = torch.randn(1, 4, 5, 5).bfloat16(), torch.randn(3, 4, 1, 1).bfloat16(), torch.randn(3).bfloat16()
        with torch.no_grad():
            assert torch.allclose(compat.fused_conv_relu(x, w, b).float(), F.relu(F.conv2d(x, w, b)).float(),
                                  rtol=2e-2, atol=2e-2)


def test_the_version_probe_answers_the_same_inside_inference_mode():
    """Probed first inside inference mode (as a model's first forward in `litesr upscale` is), the probe must not
    fail on an inference tensor: a failure there made every cached derivation be rebuilt at every call."""
    compat._version_runs.cache_clear()
    try:
        with torch.inference_mode():
            assert compat._version_runs()
        w = torch.zeros(3)
        assert compat.version(w) == compat.version(w)
    finally:
        compat._version_runs.cache_clear()
