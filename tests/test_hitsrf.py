"""HiT-SRF reproduces the official code (NTIRE 2025 ESR entry): conformance vectors at every input, module by
module on input a, any input size (the official code raises below 17 pixels), and its inference fast paths (the
position bias built once, the correlations by associativity) against the official order."""

import pytest
import torch
import torch.nn.functional as F

import litesr
from conftest import (BENCHMARKS, CONFORMANCE, TOLERANCE, WEIGHTS, assert_conforms, load_vector, relative_error,
                      without_paths)
from litesr.checkpoint import detect_architecture
from litesr.ops.attention import set_fused_attention
from litesr.models.hitsrf import SCC, mirror_pad

NAME = "hitsrf_x4"
#: The real NTIRE 2025 checkpoint ({"params": state_dict}) and what the official code scores with it, fp32, whole
#: images (../shared/data/weights/NTIRE/README.md): PSNR / SSIM on Y.
CHECKPOINT = WEIGHTS / "NTIRE" / "team54_HITSR.pth"
OFFICIAL_SCORES = {"Set5": (32.5537, 0.8999), "Set14": (28.8734, 0.7880), "B100": (27.7567, 0.7434),
                   "Urban100": (27.3844, 0.8140)}
CONFIG_KEYS = ("embed_dim", "depths", "num_heads", "base_win_size", "hier_win_ratios", "upsampler", "resi_connection")


@pytest.fixture(scope="module")
def vector():
    return load_vector(NAME)


@pytest.fixture(scope="module")
def model(vector):
    state, _, _ = vector
    return litesr.load_model(state).eval()


def test_detected_config_is_the_official_constructor(vector, model):
    _, _, meta = vector
    args = meta["constructor_args"]
    assert model.arch_name == "hitsrf" and model.scale == args["upscale"] == 4
    for key in CONFIG_KEYS:
        expected = args[key][0] if key == "base_win_size" else args[key]
        assert model.config[key] == expected, key
    assert model.config["mlp_ratio"] == meta["constructor_args_effective"]["mlp_ratio"]
    assert [b.window for b in model.layers[0].residual_group.blocks] == \
        meta["constructor_args_effective"]["window_sizes_per_block"]
    assert sum(p.numel() for p in model.parameters()) == meta["param_count_trainable_official_requires_grad"]
    assert set(model.state_dict()) == set(vector[0])


def test_conformance_every_input(vector, model):
    assert_conforms(model, vector[1], "abd")


def test_modules_match_the_official_intermediates(vector, model, monkeypatch):
    """Each hooked official module's output on input a, from the stem through group 0's blocks to the tail (the
    post-norm residual unfused, so that each module's own output exists)."""
    from safetensors.torch import load_file

    without_paths(monkeypatch, "post-norm residual", "compiled")
    path = CONFORMANCE / f"{NAME}.intermediates_a.safetensors"
    if not path.exists():
        pytest.skip(f"{path} not available")
    reference = load_file(str(path))
    names = {k: ("patch_embed.norm" if k == "patch_embed" else k) for k in reference}
    modules = dict(model.named_modules())
    got = {}
    handles = [modules[ours].register_forward_hook(lambda m, i, o, key=key: got.__setitem__(key, o))
               for key, ours in names.items()]
    try:
        with torch.inference_mode():
            model(vector[1]["input_a"])
    finally:
        for h in handles:
            h.remove()
    for key, ref in reference.items():
        out = got[key].reshape(ref.shape)  # litesr keeps tokens as (B, H, W, C): the same memory order
        assert relative_error(out, ref) <= TOLERANCE, key


def test_official_order_matches_too(vector):
    """The official arithmetic (L×L bias gathered every call, scores formed explicitly) on the smallest input."""
    model = set_fused_attention(litesr.load_model(vector[0]).eval(), False)
    assert_conforms(model, vector[1], "d")


@pytest.mark.parametrize("window", [4, 16, 48])
def test_fast_scc_equals_the_official_order(model, window):
    """One block's SCC: bias by box means and correlations by associativity against the official order."""
    block = next(b for b in model.layers[1].residual_group.blocks if b.window == window)
    scc = block.correlation
    torch.manual_seed(0)
    x = torch.randn(2, 60, 2 * window, window)
    assert relative_error(scc.position_bias(), scc.official_position_bias()) <= 1e-6
    with torch.inference_mode():
        fast = scc(x)
        scc.fused_attention = False
        try:
            official = scc(x)
        finally:
            scc.fused_attention = True
    assert relative_error(fast, official) <= 1e-6


def test_position_bias_is_built_once_and_follows_the_weights(vector):
    """Cached per block at inference; rebuilt after an in-place change of the bias MLP (version counter) and after
    load_state_dict; built every call with gradients on."""
    model = litesr.load_model(vector[0]).eval()
    scc: SCC = model.layers[0].residual_group.blocks[5].correlation  # 64-pixel windows
    with torch.inference_mode():
        first = scc.bias(torch.float32)
        assert scc.bias(torch.float32) is first  # reused, not rebuilt
        assert torch.equal(first, scc.position_bias())  # the cached path is the uncached one
    with torch.no_grad():
        scc.pos.pos3[2].weight.mul_(0.5)  # in place: bumps the version
    with torch.inference_mode():
        second = scc.bias(torch.float32)
        assert second is not first and torch.equal(second, scc.position_bias())
        assert not torch.equal(second, first)
    changed = {k: (v * 0.5 if ".pos." in k else v) for k, v in model.state_dict().items()}
    model.load_state_dict(changed)
    x = vector[1]["input_d"][:1, :, :17, :18]
    with torch.inference_mode():
        assert torch.equal(model(x), litesr.load_model(changed).eval()(x))
    with torch.enable_grad():  # training-style call: derived anew, so gradients reach the MLP
        bias = scc.bias(torch.float32)
        assert bias.requires_grad and bias is not scc.bias(torch.float32)


def test_other_dtypes_run(vector):
    """The official coordinate table is cast to float32, so fp64/bf16 models raise there; here they run."""
    state, tensors, _ = vector
    model = litesr.load_model(state).eval().double()
    with torch.inference_mode():
        out = model(tensors["input_d"].double())
    assert relative_error(out, tensors["output_d"]) <= TOLERANCE


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 16), (16, 9)])
def test_inputs_below_17_pixels_run(model, size):
    x = torch.rand(1, 3, *size)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (1, 3, 4 * size[0], 4 * size[1]) and torch.isfinite(y).all()


def _official_pad(x: torch.Tensor, ws: int) -> torch.Tensor:
    """The official block's padding (spec §8): reflect in one step if both pads are below their sides, else
    h−1, w−1 first and the remainder (negative: a crop) after."""
    h, w = x.shape[-2:]
    ph, pw = (ws - h % ws) % ws, (ws - w % ws) % ws
    if ph < h and pw < w:
        return F.pad(x, (0, pw, 0, ph), mode="reflect")
    x = F.pad(x, (0, w - 1, 0, h - 1), mode="reflect")
    return F.pad(x, (0, pw - (w - 1), 0, ph - (h - 1)), mode="reflect")


def _mirror_periodic(n: int, size: int) -> torch.Tensor:
    period = 2 * n - 2
    k = torch.arange(size) % period if period else torch.zeros(size, dtype=torch.long)
    return torch.where(k >= n, period - k, k)


@pytest.mark.parametrize("ws", [4, 8, 16, 32, 48, 64])
def test_padding_is_the_official_mirror_rule_at_every_side(ws):
    """Equal to the official padding wherever it runs, and to the mirror-periodic extension at every side ≥ 1."""
    official_fails_up_to = {4: 1, 8: 2, 16: 4, 32: 8, 48: 12, 64: 16}[ws]  # spec §8
    for n in range(1, 80):
        x = torch.rand(1, 2, n, n)
        padded = mirror_pad(x, ws)
        index = _mirror_periodic(n, n + (-n) % ws)
        assert torch.equal(padded, x[:, :, index][..., index]), n
        if n <= official_fails_up_to:
            with pytest.raises(RuntimeError):
                _official_pad(x, ws)
        else:
            assert torch.equal(padded, _official_pad(x, ws)), n


def test_exported_padding_equals_the_eager_padding():
    """While exporting, the padding is one gather per axis computed from the traced size."""
    traced = torch.jit.trace(lambda t: mirror_pad(t, 16), (torch.rand(1, 2, 19, 23),), check_trace=False)
    for n in (1, 2, 5, 17, 40):
        x = torch.rand(1, 2, n, n + 3)
        assert torch.equal(traced(x), mirror_pad(x, 16)), n


def test_inconsistent_checkpoints_are_refused(vector):
    state = dict(vector[0])
    key = "layers.1.residual_group.blocks.3.correlation.spatial_linear.weight"
    bad = {**state, key: torch.zeros(1, 4)}
    with pytest.raises(litesr.CheckpointError, match="spatial_linear"):
        detect_architecture(bad)
    key = "layers.0.residual_group.blocks.2.correlation.pos.pos3.2.weight"
    bad = {**state, key: torch.zeros(4, 3), key.replace("weight", "bias"): torch.zeros(4)}
    with pytest.raises(litesr.CheckpointError, match="heads"):
        detect_architecture(bad)
    bad = {**state, "conv_before_upsample.0.weight": torch.zeros(64, 60, 3, 3)}
    with pytest.raises(litesr.CheckpointError, match="unsupported"):
        detect_architecture(bad)


def test_official_order_counts_the_official_macs():
    """FlopCounterMode over the official forward at LR 180×320 counts 114.23 GFLOPs (spec §11); the default path
    computes the correlations by associativity and counts fewer."""
    from litesr.efficiency import count_flops, hd_input_size

    model = litesr.create_model("hitsrf", 4)
    fast = count_flops(model, hd_input_size(4))["flops"]
    official = count_flops(set_fused_attention(model, False), hd_input_size(4))["flops"]
    assert official / 1e9 == pytest.approx(114.23, abs=0.01)
    assert fast < official


# --------------------------------------------------------------------------------------------- the real checkpoint


@pytest.fixture(scope="module")
def checkpoint():
    if not CHECKPOINT.exists() or not BENCHMARKS.exists():
        pytest.skip(f"{CHECKPOINT} or {BENCHMARKS} not available")
    return CHECKPOINT


def _scores_official(checkpoint, sets: list[str], tmp_path) -> None:
    """`litesr eval --weights <the official file>` (fp32) gives the official code's PSNR to 0.01 dB."""
    import json

    from litesr.cli import main

    out = tmp_path / "scores.json"
    assert main(["eval", "--weights", str(checkpoint), "--data", str(BENCHMARKS), "--sets", ",".join(sets),
                 "--precision", "fp32", "--device", "cpu", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    for name in sets:
        psnr, ssim = OFFICIAL_SCORES[name]
        assert results[name]["psnr_y"] == pytest.approx(psnr, abs=0.01), name
        assert results[name]["ssim_y"] == pytest.approx(ssim, abs=2e-4), name


def test_real_checkpoint_scores_the_official_set5(checkpoint, tmp_path):
    _scores_official(checkpoint, ["Set5"], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Set14", "B100", "Urban100"])
def test_real_checkpoint_scores_the_official_numbers(checkpoint, name, tmp_path):
    _scores_official(checkpoint, [name], tmp_path)


def test_real_checkpoint_exports_to_onnx(checkpoint, tmp_path):
    """The exported graph matches PyTorch within the export tolerance at the export's own sizes and below the
    official 17-pixel limit (in-graph mirror padding for the 64-pixel windows)."""
    pytest.importorskip("onnxruntime")
    from litesr.onnx import EXPORT_TOLERANCE, OnnxRunner, compare_with_pytorch, export_onnx

    model = litesr.load_model(checkpoint)
    path = export_onnx(model, tmp_path / "hitsrf.onnx")
    errors = compare_with_pytorch(model, OnnxRunner(path), ((20, 24), (9, 13)), EXPORT_TOLERANCE, "onnxruntime")
    assert max(errors) <= EXPORT_TOLERANCE


def test_real_checkpoint_converts_unchanged(checkpoint, tmp_path):
    from litesr.checkpoint import read_state_dict
    from litesr.cli import main

    official = torch.load(checkpoint, map_location="cpu", weights_only=True)["params"]
    for suffix in ("safetensors", "pth"):
        out = tmp_path / f"hitsrf.{suffix}"
        assert main(["convert", str(checkpoint), str(out)]) == 0
        back = read_state_dict(out)
        assert set(back) == set(official) and all(torch.equal(back[k], v) for k, v in official.items())


@pytest.mark.slow
def test_real_checkpoint_tiles_match_the_whole_image(checkpoint):
    """Default tiles (256, aligned to the 64-pixel windows, one window of context): above 45 dB against the whole
    image within 4 LR pixels of a seam. (The 48-pixel windows are off the grid in most tiles whatever the context:
    128 pixels score 43.6 dB there on this crop, 64 pixels 47.3.)"""
    from litesr.io import image_to_tensor, read_image
    from litesr.tiling import InferenceOptions, plan_for, seam_mask, upscale_tensor
    from conftest import psnr

    model = litesr.load_model(checkpoint)
    assert model.size_multiple == 64 and model.tile_context == 64
    x = image_to_tensor(read_image(BENCHMARKS / "Urban100" / "HR" / "img_011.png"))[..., :768, :512]
    full = upscale_tensor(model, x, InferenceOptions(tile=None))
    tiled = upscale_tensor(model, x, InferenceOptions())  # the default tile; the overlap becomes tile_context
    seams = torch.from_numpy(seam_mask(plan_for(model, 768, 512), 768, 512, 4))
    assert seams.any()
    assert psnr(tiled[..., seams].clamp(0, 1), full[..., seams].clamp(0, 1), peak=1.0) > 45.0
