"""ESRT reproduces the official code's conformance vectors and a real third-party checkpoint, with attention whose
memory no longer grows with the square of the image area (issue #5)."""

import numpy as np
import pytest
import torch

import litesr
from conftest import BENCHMARKS, TOLERANCE, WEIGHTS, assert_conforms, load_vector, relative_error
from litesr.models.esrt import DEFAULT_ATTENTION
from litesr.ops.segments import ATTENTION_MODES, feature_split, split_attention, sdpa_attention

NAMES = ["esrt_x2", "esrt_x3", "esrt_x4"]
THIRD_PARTY_X3 = WEIGHTS / "ESRT-thirdparty" / "ESRT_x3.pth"
#: Official ESRT with the third-party x3 weights, Set5 whole images (shared/data/README.md).
SET5_X3_OFFICIAL = {"baby": 35.5054, "bird": 36.5903, "butterfly": 29.2781, "head": 34.0212, "woman": 32.5290}
SET5_X3_OFFICIAL_MEAN = 33.5848


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("arch", [None, "esrt"])
def test_conformance_default_attention(name, arch):
    state, tensors, meta = load_vector(name)
    model = litesr.load_model(state, arch=arch)
    assert model.scale == meta["scale"] and model.config["n_feats"] == 32
    assert model.attention == DEFAULT_ATTENTION
    # ESRT's natural range is [0, 1], as litesr's: the vectors need no rescaling
    assert_conforms(model, tensors, label=(name, model.attention))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", [m for m in ATTENTION_MODES if m != DEFAULT_ATTENTION])
def test_conformance_other_attention_paths(name, mode):
    state, tensors, _ = load_vector(name)
    model = litesr.load_model(state)
    model.attention = mode
    assert_conforms(model, tensors, label=(name, model.attention))


@pytest.mark.parametrize("name", NAMES)
def test_parameters_and_keys_match_official(name):
    state, _, meta = load_vector(name)
    model = litesr.create_model("esrt", meta["scale"])
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == meta["param_count_trainable"]
    ours = model.state_dict()
    assert len(ours) == meta["state_dict_num_keys"]
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in state.items()}


def test_feature_split_follows_official_torch_split():
    assert feature_split(1961) == [(0, 490), (490, 980), (980, 1470), (1470, 1960), (1960, 1961)]  # 37×53
    assert feature_split(16) == [(0, 4), (4, 8), (8, 12), (12, 16)]
    assert feature_split(4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert feature_split(3) == [(0, 3)]  # official: split size 0, an error; here one segment


@pytest.mark.parametrize("n", [1, 3, 37, 1961])
def test_attention_paths_agree(n):
    gen = torch.Generator().manual_seed(n)
    q, k, v = (torch.randn(2, 8, n, 18, generator=gen) * 3 for _ in range(3))
    ref = split_attention(q.double(), k.double(), v.double(), 1 / 6, "naive")
    for mode in ATTENTION_MODES:
        assert relative_error(split_attention(q, k, v, 1 / 6, mode), ref) <= TOLERANCE, mode
    # the zero-padded head width used off-CPU is exact too
    padded = torch.cat([sdpa_attention(q[..., s:e, :], k[..., s:e, :], v[..., s:e, :], 1 / 6, head_multiple=8)
                        for s, e in feature_split(n)], dim=-2)
    assert relative_error(padded, ref) <= TOLERANCE


def test_attention_mode_is_validated():
    model = litesr.create_model("esrt", 2, attention="naive")
    assert model.attention == "naive"
    with pytest.raises(ValueError, match="attention"):
        model.attention = "flash"


def test_strict_loading_names_the_key():
    state, _, _ = load_vector("esrt_x4")
    dropped = "body.0.encoder2.decoder_low.weight5.scale"
    with pytest.raises(litesr.CheckpointError, match=dropped.replace(".", r"\.")):
        litesr.load_model({k: v for k, v in state.items() if k != dropped})
    reshaped = "body.0.attention.atten.proj.bias"
    with pytest.raises(litesr.CheckpointError, match=reshaped.replace(".", r"\.")):
        litesr.load_model({**state, reshaped: torch.zeros(287)}, arch="esrt")
    extra = "body.0.attention.atten.qkv.bias"
    with pytest.raises(litesr.CheckpointError, match=extra.replace(".", r"\.")):
        litesr.load_model({**state, extra: torch.zeros(432)})


def test_detection_tells_families_apart():
    from litesr.models.esrt import detect_config

    elan_state, _, _ = load_vector("elan_light_x4")
    assert detect_config(elan_state) is None
    with pytest.raises(litesr.CheckpointError, match="not an esrt checkpoint"):
        litesr.load_model(elan_state, arch="esrt")
    esrt_state, _, _ = load_vector("esrt_x3")
    assert detect_config(esrt_state) == {"scale": 3, "n_feats": 32}


def _third_party_model():
    if not THIRD_PARTY_X3.exists():
        pytest.skip(f"{THIRD_PARTY_X3} not available")
    return litesr.load_model(THIRD_PARTY_X3)


def test_third_party_checkpoint_loads_unchanged():
    model = _third_party_model()
    assert model.scale == 3 and model.config == {"scale": 3, "n_feats": 32}
    original = torch.load(str(THIRD_PARTY_X3), map_location="cpu", weights_only=True)
    ours = model.state_dict()
    assert list(ours) == list(original)  # official key order too
    assert all(torch.equal(ours[k], v) for k, v in original.items())


def _psnr_y(sr: np.ndarray, hr: np.ndarray, crop: int) -> float:
    """PSNR on BT.601 studio-swing Y (float64, not rounded), ``crop`` pixels off each border."""
    weights = np.array([65.481, 128.553, 24.966]) / 255.0
    diff = (sr.astype(np.float64) @ weights - hr.astype(np.float64) @ weights)[crop:-crop, crop:-crop]
    return 10 * np.log10(255.0 ** 2 / np.mean(diff ** 2))


def test_third_party_butterfly_x3_matches_official_psnr():
    """End-to-end on real weights, independent of litesr.evaluate: one Set5 image, whole, scored locally."""
    from PIL import Image

    model = _third_party_model()
    s = 3
    hr = np.asarray(Image.open(BENCHMARKS / "Set5" / "HR" / "butterfly.png").convert("RGB"))
    lr = np.asarray(Image.open(BENCHMARKS / "Set5" / "LR_bicubic" / "X3" / "butterflyx3.png").convert("RGB"))
    hr = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
    with torch.inference_mode():
        sr = model(torch.from_numpy(lr.copy()).permute(2, 0, 1)[None].float() / 255)
    sr = sr[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    assert abs(_psnr_y(sr, hr, s) - SET5_X3_OFFICIAL["butterfly"]) < 1e-3


def test_third_party_set5_x3_matches_official_score():
    evaluate = getattr(litesr, "evaluate", None)
    if evaluate is None:
        pytest.skip("litesr.evaluate is not available yet (being written); "
                    "test_third_party_butterfly_x3_matches_official_psnr checks one image meanwhile")
    model = _third_party_model()
    scores = evaluate(model, BENCHMARKS, ["Set5"], 3)
    assert abs(scores["Set5"]["psnr_y"] - SET5_X3_OFFICIAL_MEAN) <= 0.01, scores["Set5"]
