"""Every registered variant at every scale, through one suite: build, any input size, detection, round trip; and
every architecture's training backward, its custom paths against the eager ones and against finite differences.

A new variant or architecture is covered by registering it; a non-default width/depth per architecture
(``OTHER_SIZES``) proves its detector reads the sizes from the weights instead of assuming the published ones.
"""

import pytest
import torch

import litesr
from litesr.checkpoint import detect_architecture
from litesr.models.registry import ARCHITECTURES, VARIANTS

CASES = [(name, scale) for name, v in sorted(VARIANTS.items()) for scale in v.scales]

#: One non-published configuration per architecture: other widths, depths, heads, sharing.
OTHER_SIZES = {
    "elan": dict(c_elan=30, m_elan=6, n_share=2, r_expand=3),
    "esrt": dict(n_feats=16),
    "swinir": dict(embed_dim=24, depths=[2, 3], num_heads=[2, 4], window_size=4, mlp_ratio=1.5),
    "grformer": dict(embed_dim=24, depths=[2, 2], num_heads=[2, 2], mlp_ratio=1.5),
    "hitsrf": dict(embed_dim=40, depths=[2, 3], num_heads=[2, 4], hier_win_ratios=[0.5, 2, 1], mlp_ratio=1.5),
    "imdn": dict(nf=32, num_modules=3),
    "pan": dict(nf=20, unf=12, nb=3),
    "span": dict(feature_channels=16, fusion_channels=12, num_blocks=4),
}


def test_every_architecture_has_a_non_default_size():
    assert set(OTHER_SIZES) == set(ARCHITECTURES)


def _rebuilds(arch: str, detected: dict, built) -> None:
    """The detected config builds the same model (same config, same keys and shapes)."""
    if detected["scale"] is None:  # weights that do not tell their scale (PAN x2/x3)
        detected = {**detected, "scale": built.scale}
    rebuilt = ARCHITECTURES[arch].build(**detected)
    assert rebuilt.config == built.config and rebuilt.scale == built.scale
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in built.state_dict().items()}


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}-x{s}" for n, s in CASES])
def model(request):
    name, scale = request.param
    torch.manual_seed(0)
    return litesr.create_model(name, scale).eval()


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (5, 7), (17, 33)])
def test_any_input_size(model, size):
    x = torch.rand(1, 3, *size)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (1, 3, size[0] * model.scale, size[1] * model.scale)
    assert torch.isfinite(y).all()


def test_detection_reads_the_config_back(model):
    arch, config = detect_architecture(model.state_dict())
    assert arch.name == model.arch_name
    _rebuilds(arch.name, config, model)


def test_save_and_load_round_trip(model, tmp_path):
    path = litesr.save_model(model, tmp_path / "m.safetensors")
    back = litesr.load_model(path)
    assert type(back) is type(model) and back.scale == model.scale and back.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, back.state_dict()[key]), key


@pytest.mark.parametrize("arch", sorted(OTHER_SIZES))
@pytest.mark.parametrize("scale", [2, 3])
def test_non_default_sizes_are_detected(arch, scale):
    torch.manual_seed(0)
    built = ARCHITECTURES[arch].build(scale=scale, **OTHER_SIZES[arch])
    family, config = detect_architecture(built.state_dict())
    assert family.name == arch
    _rebuilds(arch, config, built)
    loaded = litesr.load_model(built.state_dict(), scale=scale)
    x = torch.rand(1, 3, 9, 11)
    with torch.inference_mode():
        assert torch.equal(loaded(x), built.eval()(x))


def test_the_constructor_contract():
    from litesr.models.base import SRModel

    with pytest.raises(TypeError, match="keyword-only"):
        class Positional(SRModel):  # noqa: F841 - refused at class creation
            def __init__(self, scale: int, width: int) -> None:
                super().__init__()

    class Tiny(SRModel):
        runtime_options = ("kernel",)

        def __init__(self, *, scale: int, widths: tuple[int, ...], kernel: str = "fast") -> None:
            super().__init__()

    tiny = Tiny(scale=3, widths=(4, 8))
    assert tiny.scale == 3 and tiny.config == {"scale": 3, "widths": [4, 8]}  # recorded once, runtime option out


@pytest.mark.parametrize("arch, key", [("imdn", "IMDB3."), ("pan", "SCPA_trunk.5."), ("span", "block_3.")])
def test_a_gap_in_the_module_numbering_is_refused(arch, key):
    state = {k: v for k, v in litesr.create_model(arch, 4).state_dict().items() if not k.startswith(key)}
    with pytest.raises(litesr.CheckpointError, match="non-consecutive modules"):
        litesr.load_model(state)


# ------------------------------------------------------------------ backward: custom training paths against eager

#: The SMALL variant (tests/conftest.py) that stands for each architecture in the backward checks.
BACKWARD_VARIANTS = {"elan": "elan-light", "esrt": "esrt", "grformer": "grformer", "hitsrf": "hitsrf",
                     "imdn": "imdn", "pan": "pan", "span": "span", "swinir": "swinir-light"}


def test_every_architecture_has_a_backward_check():
    assert set(BACKWARD_VARIANTS) == set(ARCHITECTURES)


class _PlainPermutation:
    """``windows.take_tokens`` without its custom autograd Function: index_select and its scatter-add backward."""

    @staticmethod
    def apply(tokens, index, inverse):
        from litesr.ops import windows

        return windows._gather_rows(tokens, index)


def _set_esrt_attention(model, mode: str) -> int:
    """Set the attention mode of every ESRT attention module of ``model``; returns how many there are."""
    from litesr.models.esrt import EMHA

    modules = [m for m in model.modules() if isinstance(m, EMHA)]
    for m in modules:
        m.mode = mode
    return len(modules)


def _eager(model, monkeypatch) -> None:
    """Every custom training path of ``model`` off: the explicit attention of the official order (ESRT's official
    loop), ELAN's window attention through autograd's whole-map ops, token permutations through index_select."""
    from conftest import without_paths
    from litesr.ops import attention, windows

    attention.set_fused_attention(model, False)
    _set_esrt_attention(model, "naive")
    without_paths(monkeypatch, "elan attention", "chunked training")
    monkeypatch.setattr(windows, "_Permutation", _PlainPermutation)


def _training_model(arch: str) -> torch.nn.Module:
    from conftest import small_model

    return small_model(BACKWARD_VARIANTS[arch], scale=2).double().train()


def _gradients(model, x, weight) -> list[torch.Tensor]:
    x = x.clone().requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    (model(x) * weight).sum().backward(inputs=[x, *params])
    grads = [x.grad, *(p.grad for p in params)]
    model.zero_grad(set_to_none=True)
    return grads


@pytest.fixture
def count_calls(monkeypatch):
    """Wrap ``owner.name`` to count its calls; returns the counter."""
    def spy(owner, name):
        calls = []
        original = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, **k: calls.append(1) or original(*a, **k))
        return calls
    return spy


def _assert_same_gradients(model, fast, eager, label) -> None:
    """Equal to float64 rounding, relative to the largest gradient (a bias before a training-mode BatchNorm has a
    zero gradient, which each path rounds to its own ~1e-19)."""
    scale = max(g.abs().max().item() for g in eager if g is not None)
    names = ["input", *(n for n, p in model.named_parameters() if p.requires_grad)]
    assert len(names) == len(fast) == len(eager)
    for name, a, b in zip(names, fast, eager):
        assert (a is None) == (b is None), (label, name)  # None: a parameter the forward does not use
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12 * scale, msg=lambda m: f"{label} {name}: {m}")


@pytest.mark.parametrize("arch", sorted(BACKWARD_VARIANTS))
def test_training_gradients_equal_the_eager_paths(arch, monkeypatch, count_calls):
    """In training mode, the gradients of the input and of every parameter through litesr's forward (custom
    autograd Functions, fused attention, ESRT's attention modes) equal those of the eager path of the official
    order (float64)."""
    from litesr.ops import attention, windows

    torch.manual_seed(1)
    model = _training_model(arch)
    x = torch.rand(2, 3, 13, 18, dtype=torch.float64)
    weight = torch.randn(2, 3, 26, 36, dtype=torch.float64)
    window_attention = count_calls(attention._WindowAttention, "apply")
    permutation = count_calls(windows._Permutation, "apply")
    sdpa = count_calls(attention.F, "scaled_dot_product_attention")
    fast = {"default": _gradients(model, x, weight)}
    custom = {"window attention Function": len(window_attention), "permutation Function": len(permutation),
              "SDPA": len(sdpa), "fused flag": sum(hasattr(m, "fused_attention") for m in model.modules()),
              "ESRT attention": _set_esrt_attention(model, "sdpa")}
    if custom["ESRT attention"]:  # the selectable chunked mode too
        _set_esrt_attention(model, "chunked")
        fast["chunked"] = _gradients(model, x, weight)
    if not any(custom.values()):
        pytest.skip(f"{arch} has no custom training path (its backward is checked against finite differences)")
    _eager(model, monkeypatch)
    eager = _gradients(model, x, weight)
    assert len(window_attention) == custom["window attention Function"], "the eager path ran the custom Function"
    assert len(permutation) == custom["permutation Function"]
    for label, grads in fast.items():
        _assert_same_gradients(model, grads, eager, f"{arch} {label} ({custom})")


@pytest.mark.parametrize("arch", sorted(BACKWARD_VARIANTS))
def test_training_gradients_are_the_derivatives(arch):
    """litesr's training backward (custom paths on) against float64 central differences of its forward, along a
    random direction of the input and of each run of 4 parameter tensors (gradcheck's fast mode in spirit, done
    here so that a failure reports at once instead of building the whole Jacobian). The step is small enough that
    no ReLU kink is crossed (1e-6 crossed some in ELAN and IMDN)."""
    torch.manual_seed(2)
    model = _training_model(arch)
    params = [p for p in model.parameters() if p.requires_grad]
    x = torch.rand(1, 3, 9, 10, dtype=torch.float64)
    weight = torch.randn(1, 3, 18, 20, dtype=torch.float64)
    grads = _gradients(model, x, weight)
    pairs = [(t, g) for t, g in zip([x, *params], grads) if g is not None]
    eps = 1e-7
    with torch.no_grad():
        rounding = 1e-8 * (model(x) * weight).abs().sum().item()  # of the difference quotient: ~1e-16·Σ|terms|/eps
        for group in [pairs[:1]] + [pairs[i:i + 4] for i in range(1, len(pairs), 4)]:
            directions = [torch.randn_like(t) for t, _ in group]
            originals = [t.clone() for t, _ in group]
            values = []
            for sign in (1, -1):
                for (t, _), u, o in zip(group, directions, originals):
                    t.copy_(o).add_(u, alpha=sign * eps)
                values.append((model(x) * weight).sum().item())
            for (t, _), o in zip(group, originals):
                t.copy_(o)
            numeric = (values[0] - values[1]) / (2 * eps)
            analytic = sum((g * u).sum().item() for (_, g), u in zip(group, directions))
            assert abs(numeric - analytic) <= 1e-6 * abs(analytic) + rounding, (arch, len(group), numeric, analytic)
