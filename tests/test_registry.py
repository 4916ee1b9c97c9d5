"""Every registered variant at every scale, through one suite: build, any input size, detection, round trip.

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
