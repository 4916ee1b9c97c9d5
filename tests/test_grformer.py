"""GRFormer reproduces the official code's conformance vectors (light x2/x3/x4 and a C=180 two-group file whose
width and depth must be read from the checkpoint); computed/constant buffers are optional on load."""

import pytest
import torch

import litesr
from conftest import assert_config_matches, assert_conforms, load_vector, without_paths
from litesr.checkpoint import detect_architecture
from litesr.ops.attention import set_fused_attention
from litesr.ops.windows import relative_position_index
from litesr.models.grformer import esrpb_coordinates

NAMES = ["grformer_light_x2", "grformer_light_x3", "grformer_light_x4", "grformer_full_x4_d4"]
COORDS = ".attn.relative_position_bias_table"


@pytest.mark.parametrize("name", NAMES)
def test_conformance_auto_detected(name):
    state, tensors, meta = load_vector(name)
    model = litesr.load_model(state)
    assert model.arch_name == "grformer"
    assert_config_matches(model, meta)
    assert_conforms(model, tensors)


@pytest.mark.parametrize("name", NAMES)
def test_conformance_named(name):
    """Named loading builds the same model as auto-detection (outputs checked on the smallest input)."""
    state, tensors, meta = load_vector(name)
    model = litesr.load_model(state, arch="grformer", scale=meta["scale"])
    assert_config_matches(model, meta)
    auto = litesr.load_model(state)
    assert model.config == auto.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), auto.state_dict().values()))
    assert_conforms(model, tensors, "d")


def test_explicit_attention_path_matches_too():
    state, tensors, _ = load_vector("grformer_full_x4_d4")
    model = set_fused_attention(litesr.load_model(state), False)
    assert_conforms(model, tensors, "d")


def test_official_projections_conform_too(monkeypatch):
    """The official grouped residual layers (six half-width layers, adds, concatenations) where the folded ones
    do not run (training, export) give the official outputs too."""
    without_paths(monkeypatch, "grformer projections", "folded")
    state, tensors, _ = load_vector("grformer_full_x4_d4")
    assert_conforms(litesr.load_model(state), tensors, "d")


@pytest.mark.parametrize("changed_keys", [("ESRPB_MLP",), (".attn.q1.", ".attn.proj2.")],
                         ids=["position bias", "folded projections"])
def test_weights_built_for_inference_follow_the_weights(changed_keys):
    """The ES-RPB bias and the folded Q, K, V and output weights are built once at inference: the output still
    follows new weights loaded afterwards."""
    state, tensors, _ = load_vector("grformer_full_x4_d4")
    model = litesr.load_model(state).eval()
    x = tensors["input_d"] / 255.0
    with torch.inference_mode():
        model(x)
        changed = {k: v * 0.5 if any(c in k for c in changed_keys) else v for k, v in model.state_dict().items()}
        model.load_state_dict(changed)
        fresh = litesr.load_model(dict(changed)).eval()
        assert torch.equal(model(x), fresh(x))
        assert not torch.equal(model(x), litesr.load_model(state).eval()(x))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_parameter_count_and_keys_match_official(scale):
    state, _, meta = load_vector(f"grformer_light_x{scale}")
    model = litesr.create_model("grformer", scale)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == meta["param_count_trainable"]
    # our state dict = the stored keys minus the constant ES-RPB coordinate buffers (computed here)
    assert set(model.state_dict()) == {k for k in state if not k.endswith(COORDS)}


def test_block_layout_follows_official_quirks():
    model = litesr.create_model("grformer", 4)
    blocks = model.layers[0].blocks
    assert [b.window for b in blocks] == [(8, 32), (8, 32), (32, 8), (32, 8), (8, 32), (8, 32)]
    assert [b.shift for b in blocks] == [None, (4, 16), None, (4, 16), None, (4, 16)]  # never swapped
    assert model.size_multiple == 32


def test_esrpb_coordinates_equal_the_stored_buffer():
    # equal to one unit in the last place: float32 exp rounds differently on different CPUs' vector paths (bit for
    # bit on an AMD EPYC; 186 of 1,890 values one ulp off on an Intel Xeon with AVX-512)
    state, _, _ = load_vector("grformer_full_x4_d4")
    for key, window in (("layers.0.blocks.0", (8, 32)), ("layers.1.blocks.3", (32, 8))):
        torch.testing.assert_close(esrpb_coordinates(*window), state[key + COORDS], rtol=0, atol=2.0 ** -24)


def official_computed_buffers(meta):
    """relative_position_index from the formula (8×32 or 32×8 by block index) and attn_mask zeros of the
    official shapes: what an official state_dict holds beyond the vector files."""
    out = {}
    for key, spec in meta["not_stored_state_keys"].items():
        if key.endswith("relative_position_index"):
            i = int(key.split(".")[3])
            window = (8, 32) if (i // 2) % 2 == 0 else (32, 8)
            out[key] = relative_position_index(*window).clone()
            assert list(out[key].shape) == spec["shape"]
        else:
            assert key.endswith("attn_mask")
            out[key] = torch.zeros(spec["shape"])
    return out


@pytest.mark.parametrize("with_coords", [True, False])
@pytest.mark.parametrize("with_computed", [True, False])
def test_optional_buffers(with_coords, with_computed):
    state, tensors, meta = load_vector("grformer_full_x4_d4")
    state = dict(state) if with_coords else {k: v for k, v in state.items() if not k.endswith(COORDS)}
    if with_computed:
        state.update(official_computed_buffers(meta))
    if with_coords and with_computed:
        assert len(state) == meta["state_dict_num_keys"]
    for arch in (None, "grformer"):
        model = litesr.load_model(state, arch=arch)
        assert_config_matches(model, meta)
    if with_coords == with_computed:  # the forward does not depend on what was loaded; run it twice, not four times
        assert_conforms(model, tensors, "d")


def test_wrong_shape_names_the_key():
    state, _, _ = load_vector("grformer_light_x2")
    key = "layers.2.blocks.4.attn.q2.weight"
    with pytest.raises(litesr.CheckpointError, match=key.replace(".", r"\.")):
        litesr.load_model({**state, key: torch.zeros(30, 31)})
    key = "layers.1.blocks.2" + COORDS  # a 32×8 block given an 8×32 table
    with pytest.raises(litesr.CheckpointError, match=key.replace(".", r"\.")):
        litesr.load_model({**state, key: esrpb_coordinates(8, 32)})
    key = "layers.0.blocks.1" + COORDS  # right shape, not the ES-RPB constants (e.g. Swin-V2 log coordinates)
    with pytest.raises(litesr.CheckpointError, match=key.replace(".", r"\.")):
        litesr.load_model({**state, key: torch.zeros(1, 15, 63, 2)})
    key = "layers.0.blocks.2.attn.relative_position_index"
    with pytest.raises(litesr.CheckpointError, match=key.replace(".", r"\.")):
        litesr.load_model({**state, key: relative_position_index(8, 32).clone()})


def test_missing_key_is_reported():
    state, _, _ = load_vector("grformer_light_x3")
    key = "layers.3.blocks.5.mlp.dwconv.depthwise_conv.2.bias"
    with pytest.raises(litesr.CheckpointError, match=key.replace(".", r"\.")):
        litesr.load_model({k: v for k, v in state.items() if k != key})


def test_scale_mismatch_is_reported():
    state, _, _ = load_vector("grformer_light_x3")
    with pytest.raises(litesr.CheckpointError, match="scale mismatch"):
        litesr.load_model(state, scale=4)


def test_detect_is_specific():
    from litesr.models import ARCHITECTURES

    state, _, _ = load_vector("grformer_full_x4_d4")
    assert detect_architecture(state)[0].name == "grformer"
    elan_state, _, _ = load_vector("elan_light_x2")
    assert ARCHITECTURES["grformer"].detect(elan_state) is None
    assert ARCHITECTURES["swinir"].detect(state) is None
