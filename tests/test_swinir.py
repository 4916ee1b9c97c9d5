"""SwinIR-light reproduces the official code's conformance vectors; checkpoints load with or without the
official computed buffers; the shared shifted-window machinery matches the official mask."""

import pytest
import torch

import litesr
from conftest import assert_config_matches, assert_conforms, load_vector, without_paths
from litesr.checkpoint import detect_architecture
from litesr.ops.attention import WindowGeometry, set_fused_attention
from litesr.ops.windows import relative_position_index, shifted_window_mask

NAME = "swinir_light_x4"


def test_conformance_auto_detected():
    state, tensors, meta = load_vector(NAME)
    model = litesr.load_model(state)
    assert model.arch_name == "swinir"
    assert_config_matches(model, meta)
    assert_conforms(model, tensors)


@pytest.mark.parametrize("arch", ["swinir", "swinir-light", "SwinIR_light"])
def test_conformance_named(arch):
    state, tensors, meta = load_vector(NAME)
    model = litesr.load_model(state, arch=arch, scale=4)
    assert_config_matches(model, meta)
    assert_conforms(model, tensors, "d")


def test_explicit_attention_path_matches_too():
    state, tensors, _ = load_vector(NAME)
    model = set_fused_attention(litesr.load_model(state), False)
    assert_conforms(model, tensors, "d")


def test_parameter_count_and_keys_match_official():
    state, _, meta = load_vector(NAME)
    model = litesr.create_model("swinir-light", 4)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == meta["param_count_trainable"]
    assert set(model.state_dict()) == set(state)  # the computed buffers are not part of our state dict


def official_computed_buffers(meta):
    """The buffers an official state_dict holds beyond the vector files, built as the official code does
    (index from the formula; masks as zeros of the official shape: their values are never used)."""
    out = {}
    for key, spec in meta["not_stored_state_keys"].items():
        if key.endswith("relative_position_index"):
            n = spec["shape"][0]
            ws = int(round(n ** 0.5))
            out[key] = relative_position_index(ws, ws).clone()
            assert list(out[key].shape) == spec["shape"]
        else:
            assert key.endswith("attn_mask")
            out[key] = torch.zeros(spec["shape"])
    return out


def test_loads_full_official_state_dict_with_computed_buffers():
    state, tensors, meta = load_vector(NAME)
    full = {**state, **official_computed_buffers(meta)}
    assert len(full) == meta["state_dict_num_keys"]
    model = litesr.load_model(full)
    assert_conforms(model, tensors, "d")
    named = litesr.load_model(full, arch="swinir")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), named.state_dict().values()))


def test_wrong_shape_names_the_key():
    state, _, _ = load_vector(NAME)
    key = "layers.1.residual_group.blocks.2.attn.qkv.weight"
    bad = {**state, key: torch.zeros(180, 59)}
    with pytest.raises(litesr.CheckpointError, match=key.replace(".", r"\.")):
        litesr.load_model(bad)
    key = "layers.0.residual_group.blocks.0.attn.relative_position_bias_table"
    bad = {**state, key: torch.zeros(224, 6)}
    with pytest.raises(litesr.CheckpointError, match=key.replace(".", r"\.")):
        litesr.load_model(bad)
    key = "layers.0.residual_group.blocks.3.attn.relative_position_index"
    bad = {**state, key: torch.zeros(64, 64, dtype=torch.long)}
    with pytest.raises(litesr.CheckpointError, match=key.replace(".", r"\.")):
        litesr.load_model(bad)


def test_missing_key_is_reported():
    state, _, _ = load_vector(NAME)
    key = "layers.2.residual_group.blocks.5.mlp.fc2.bias"
    bad = {k: v for k, v in state.items() if k != key}
    with pytest.raises(litesr.CheckpointError, match=key.replace(".", r"\.")):
        litesr.load_model(bad)


def test_detect_is_specific():
    from litesr.models import ARCHITECTURES

    swinir_state, _, _ = load_vector(NAME)
    grformer_state, _, _ = load_vector("grformer_light_x2")
    assert ARCHITECTURES["swinir"].detect(grformer_state) is None
    assert ARCHITECTURES["grformer"].detect(swinir_state) is None
    assert detect_architecture(swinir_state)[0].name == "swinir"
    with pytest.raises(litesr.CheckpointError, match="not a swinir"):
        litesr.load_model(grformer_state, arch="swinir")


@pytest.mark.parametrize("h, w, window, shift", [
    (64, 64, (8, 8), (4, 4)), (8, 8, (8, 8), (4, 4)), (40, 56, (8, 8), (4, 4)),
    (64, 64, (8, 32), (4, 16)), (64, 64, (32, 8), (4, 16)), (32, 32, (8, 32), (4, 16)), (32, 64, (32, 8), (4, 16)),
])
def test_grouped_masks_equal_the_official_mask(h, w, window, shift):
    geom = WindowGeometry(h, w, window, shift, -100.0)
    full = shifted_window_mask(h, w, window, shift, -100.0)
    rebuilt = torch.zeros(geom.n_rows, geom.n_cols, geom.tokens, geom.tokens)
    for rows, cols, mask in geom.groups:
        if mask is not None:
            rebuilt[rows, cols] = mask
    assert torch.equal(rebuilt.view_as(full), full)


@pytest.mark.parametrize("window, shift", [((8, 8), (4, 4)), ((8, 32), (4, 16)), ((32, 8), (4, 16))])
def test_shifted_windows_gathered_at_inference_are_the_official_roll(window, shift, monkeypatch):
    """At CPU inference the roll and the window partition run as one gather of token rows (and back): the same
    values, in the same order, as the official roll → partition and reverse → roll back."""
    from litesr.ops import policy

    geom = WindowGeometry(64, 96, window, shift, -100.0)
    x = torch.randn(2, 64, 96, 5)
    with torch.inference_mode():
        assert policy.choose("swin shifted windows", x.device, x.dtype) == "gather"
        windows = geom.partition(x)
        back = geom.reverse(windows * 2)
        without_paths(monkeypatch, "swin shifted windows", "gather")
        assert torch.equal(windows, geom.partition(x))
        assert torch.equal(back, geom.reverse(windows * 2)) and torch.equal(back, x * 2)


def test_fused_attention_equals_explicit_with_index_groups(monkeypatch):
    """The fused path, also with non-contiguous window groups (index tensors), equals the explicit one."""
    without_paths(monkeypatch, "swin attention", "chunked")  # SDPA, not the chunked path fp32 8×8 windows take
    torch.manual_seed(0)
    geom = WindowGeometry(24, 32, (8, 8), (4, 4), -100.0)
    # regroup as index tensors to exercise the general gather/scatter path
    geom.groups = [(torch.tensor(list(range(r.start, r.stop))), torch.tensor(list(range(c.start, c.stop))), m)
                   for r, c, m in geom.groups]
    q, k, v = (torch.randn(2 * geom.num_windows, 3, 64, 5) for _ in range(3))
    bias = torch.randn(3, 64, 64)
    ref = geom.attend(q, k, v, bias, fused=False)
    assert torch.allclose(geom.attend(q, k, v, bias, fused=True), ref, atol=1e-5)


def test_explicit_attention_without_bias_masks_each_window(monkeypatch):
    """A shifted map's mask without a position bias goes to the windows, not across heads (the explicit path once
    viewed the logits as (B, nW, 1, N, N)): explicit equals SDPA."""
    without_paths(monkeypatch, "swin attention", "chunked")
    torch.manual_seed(0)
    geom = WindowGeometry(24, 32, (8, 8), (4, 4), -100.0)
    q, k, v = (torch.randn(2 * geom.num_windows, 3, 64, 5) for _ in range(3))
    assert torch.allclose(geom.attend(q, k, v, None, fused=False), geom.attend(q, k, v, None), atol=1e-5)


@pytest.mark.parametrize("shift, with_bias", [(None, True), ((4, 4), True), ((4, 4), False)])
@pytest.mark.parametrize("index_groups", [False, True])
@pytest.mark.parametrize("width", [5, 10])
def test_chunked_attention_is_the_explicit_arithmetic(monkeypatch, shift, with_bias, index_groups, width):
    """fp32 inference on 8×8 windows runs the explicit arithmetic a chunk of windows at a time ("swin attention"):
    the same result as the explicit path, with chunks that cut across label patterns and across images; with
    SwinIR-light's 10-wide heads V zero-padded to 16 columns ("swin padded v"), other widths as they are."""
    from litesr.ops import attention, policy

    without_paths(monkeypatch, "swin attention", "native")  # the eager path, which the compiled kernel replaces
    torch.manual_seed(0)
    geom = WindowGeometry(24, 32, (8, 8), shift, -100.0)  # 3×4 windows an image
    if index_groups:
        geom.groups = [(torch.tensor(range(24 // 8))[r], torch.tensor(range(32 // 8))[c], m) for r, c, m in geom.groups]
    q, k, v = (torch.randn(2 * geom.num_windows, 3, 64, width) for _ in range(3))
    padded_to = []
    pad = attention.zero_padded_columns
    monkeypatch.setattr(attention, "zero_padded_columns", lambda t, w: padded_to.append(w) or pad(t, w))
    bias = torch.randn(3, 64, 64) if with_bias else None
    ref = geom.attend(q, k, v, bias, fused=False)
    monkeypatch.setattr(policy, "CHUNK_ELEMENTS", 5 * 3 * 64 * 64)  # chunks of 5 windows: 5, 5, 5, 5, 4
    chunked = []
    run = attention.WindowGeometry._chunked
    monkeypatch.setattr(attention.WindowGeometry, "_chunked", lambda self, *a: chunked.append(1) or run(self, *a))
    with torch.inference_mode():
        out = geom.attend(q, k, v, bias)
    assert chunked and torch.allclose(out, ref, rtol=0, atol=1e-6), (out - ref).abs().max()
    assert out.shape == v.shape and padded_to == [16 if width == 10 else width]
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        geom.attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), bias)
    assert len(chunked) == 1  # bf16 keeps SDPA


@pytest.mark.parametrize("shift", [None, (4, 4)])
def test_explicit_attention_has_the_gradients_of_the_fused_one(shift):
    """The explicit path (which bf16 CPU training takes) adds bias and mask in one pass: its output and the
    gradients of q, k, v and the bias equal SDPA's."""
    torch.manual_seed(0)
    geom = WindowGeometry(16, 16, (8, 8), shift, -100.0)
    inputs = [torch.randn(2 * geom.num_windows, 3, 64, 5) for _ in range(3)] + [torch.randn(3, 64, 64)]
    results = []
    for fused in (False, True):
        leaves = [t.clone().requires_grad_() for t in inputs]
        out = geom.attend(*leaves, fused=fused)
        out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
        results.append([out.detach()] + [t.grad for t in leaves])
    for explicit, fused in zip(*results):
        assert torch.allclose(explicit, fused, atol=1e-5), (explicit - fused).abs().max()


def test_bf16_cpu_training_takes_the_explicit_attention():
    """Under CPU bf16 (autocast or bf16 tensors) with gradients, attend runs the explicit path (faster there than
    SDPA's math fallback); inference, and fp32 training, stay fused."""
    from litesr.ops.attention import _swin_path

    def _explicit_is_faster(q):
        return _swin_path(q, q, q) == "explicit"

    q = torch.randn(4, 3, 64, 5)
    assert not _explicit_is_faster(q.clone().requires_grad_())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _explicit_is_faster(q.clone().requires_grad_())
        assert not _explicit_is_faster(q)
        with torch.no_grad():
            assert not _explicit_is_faster(q.clone().requires_grad_())
    assert _explicit_is_faster(q.bfloat16().requires_grad_())
    assert not _explicit_is_faster(q.bfloat16())
