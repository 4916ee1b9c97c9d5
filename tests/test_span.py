"""SPAN (NTIRE 2025 ESR entry, folded form): the official code's vectors, and its real checkpoint in every command.

SPAN scales its input by 255 and never rescales its output, so fp32 noise reaches 1.5e-5 of max|output|; its pass
rule is 1e-4 · max|ref| (``../shared/conformance/README.md``), the smallest deliberate mistake measured 1.4e-3.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

import litesr
from litesr.cli import main
from litesr.efficiency import count_flops, count_parameters
from litesr.io import image_to_tensor, read_image
from litesr.tiling import InferenceOptions, upscale_tensor
from conftest import BENCHMARKS, WEIGHTS, load_vector, psnr, relative_error

TOLERANCE = 1e-4  # SPAN's rule (see the module docstring)
NTIRE = WEIGHTS / "NTIRE"
REAL = NTIRE / "team46_span.pth"
LR_IMAGE = BENCHMARKS / "Set14" / "LR_bicubic" / "X4" / "baboonx4.png"
#: the official scores' rows in NTIRE/README.md, by litesr's set folder names
SET_ROWS = {"Set5": "Set5", "Set14": "Set14", "B100": "B100", "Urban100": "Urban100 subset (10)"}


@pytest.fixture(scope="module")
def vector():
    return load_vector("span_x4")


def real_weights():
    if not REAL.exists():
        pytest.skip(f"{REAL} not available")
    return REAL


def _conforms(model, tensors):
    with torch.inference_mode():
        return {io: relative_error(model(tensors[f"input_{io}"]), tensors[f"output_{io}"]) for io in "abd"}


@pytest.mark.parametrize("arch", [None, "span"])
def test_conformance(vector, arch):
    state, tensors, meta = vector
    model = litesr.load_model(state, arch=arch)
    errors = _conforms(model, tensors)
    assert max(errors.values()) <= TOLERANCE, errors


def test_config_and_weights_are_the_official_ones(vector):
    state, _, meta = vector
    model = litesr.load_model(state)
    args = meta["constructor_args"]
    assert model.scale == meta["scale"] == args["upscale"]
    assert model.config["feature_channels"] == args["feature_channels"]
    assert model.config["fusion_channels"] == args["hard_coded"]["conv_cat_out_channels"]
    assert model.config["num_blocks"] == args["hard_coded"]["num_blocks"]
    assert set(model.state_dict()) == set(state) and len(state) == meta["state_dict_num_keys"]
    # every weight counts, the frozen folded convs included (the official requires_grad count gives 10,948)
    assert count_parameters(model) == meta["state_dict_numel"] == 146_328
    assert model.config == litesr.create_model("span", 4).config  # the variant is this configuration


def test_every_module_matches_the_official_intermediates(vector):
    """conv_1, each block's output, conv_2, conv_cat and the upsampler for input a, module by module."""
    from safetensors.torch import load_file

    from conftest import CONFORMANCE

    state, tensors, _ = vector
    refs = load_file(str(CONFORMANCE / "span_x4.intermediates_a.safetensors"))
    model = litesr.load_model(state)
    got = {}
    for name in refs:
        module = model.get_submodule(name)
        module.register_forward_hook(lambda m, i, out, name=name: got.__setitem__(
            name, out[0] if isinstance(out, tuple) else out))
    with torch.inference_mode():
        model(tensors["input_a"])
    assert set(got) == set(refs) and len(refs) == 10
    for name, ref in refs.items():
        assert relative_error(got[name], ref) <= TOLERANCE, name


def test_the_quirks_matter(vector, monkeypatch):
    """The vectors tell the quirks apart: each plausible misreading fails the rule by far."""
    from litesr.models import span

    state, tensors, _ = vector
    model = litesr.load_model(state)
    original = span.SPAB.forward

    def raw_first_conv(self, x):  # concatenating block 6's raw c1_r output, not its in-place SiLU
        out, _ = original(self, x)
        return out, self.c1_r(x)

    with monkeypatch.context() as patch:
        patch.setattr(span.SPAB, "forward", raw_first_conv)
        assert min(_conforms(model, tensors).values()) > 100 * TOLERANCE
    model.mean.copy_(torch.tensor([0.449, 0.437, 0.404]).view(1, 3, 1, 1))  # the mean rounded to 3 decimals
    assert min(_conforms(model, tensors).values()) > 10 * TOLERANCE


def test_macs_per_pixel_are_the_specs(vector):
    state, _, _ = vector
    model = litesr.load_model(state)
    assert count_flops(model, (18, 32))["macs"] == 145_700 * 18 * 32


def test_detection_refuses_inconsistent_shapes_and_the_training_form(vector):
    state, _, _ = vector
    bad = dict(state, **{"conv_cat.weight": state["conv_cat.weight"][:, :100]})
    with pytest.raises(litesr.CheckpointError, match="conv_cat.weight has shape"):
        litesr.load_model(bad)
    bad = dict(state, **{"upsampler.0.weight": state["upsampler.0.weight"][:, :12]})
    with pytest.raises(litesr.CheckpointError, match="upsampler.0.weight has shape"):
        litesr.load_model(bad)
    bad = dict(state, **{"upsampler.0.weight": state["upsampler.0.weight"][:40]})
    with pytest.raises(litesr.CheckpointError, match="not 3·s²"):
        litesr.load_model(bad)
    training = {k: v for k, v in state.items() if not k.startswith("conv_2.")}
    training.update({"conv_2.sk.weight": torch.zeros(28, 28, 1, 1), "conv_2.conv.0.weight": torch.zeros(56, 28, 1, 1)})
    with pytest.raises(litesr.CheckpointError, match="training form of Conv3XC"):
        litesr.load_model(training)


def test_a_file_holding_params_and_params_ema_loads_params_ema(vector, tmp_path):
    """As the official test script: the EMA copy, whatever order the file lists them in."""
    state, tensors, _ = vector
    other = {k: v + 0.01 * v.std() for k, v in state.items()}
    x = tensors["input_b"]
    for wrapped in ({"params": other, "params_ema": state}, {"params_ema": state, "params": other}):
        path = tmp_path / "both.pth"
        torch.save(wrapped, path)
        with torch.inference_mode():
            assert relative_error(litesr.load_model(path)(x), tensors["output_b"]) <= TOLERANCE


def test_train_refuses_span_in_one_line(tmp_path, capsys):
    rc = main(["train", "--arch", "span", "--scale", "4", "--train-data", str(tmp_path), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "folded (inference) form only" in err[0], err
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------------------------- the real checkpoint


def test_real_checkpoint_is_its_params_ema():
    raw = torch.load(str(real_weights()), map_location="cpu", weights_only=True)
    model = litesr.load_model(real_weights())
    assert model.config == {"scale": 4, "feature_channels": 28, "fusion_channels": 20, "num_blocks": 6}
    for key, value in model.state_dict().items():
        assert torch.equal(value, raw["params_ema"][key]), key
    x = image_to_tensor(read_image(LR_IMAGE))[..., :40, :40]
    with torch.inference_mode():
        ema, plain = model(x), litesr.load_model(raw["params"])(x)
    assert relative_error(plain, ema) > 10 * TOLERANCE  # the other copy would be seen


def test_the_fused_path_is_the_official_order(vector, monkeypatch):
    """At fp32 inference on a CPU with oneDNN the SiLUs run inside the convolutions and the attention in place: the
    vectors' input and the real checkpoint on a photograph, against the official op sequence (the path off)."""
    from litesr import compat
    from litesr.ops.conv import fused_activations
    from conftest import without_paths

    state, tensors, _ = vector
    models = [litesr.load_model(state)] + ([litesr.load_model(REAL)] if REAL.exists() else [])
    x = image_to_tensor(read_image(LR_IMAGE))
    with torch.inference_mode():
        assert fused_activations(x, ("swish",)) == compat.fused_conv_runs(torch.float32, "swish")
        fused = [m(t) for m in models for t in (tensors["input_a"], x)]
        without_paths(monkeypatch, "conv activation", "fused")
        official = [m(t) for m in models for t in (tensors["input_a"], x)]
    for a, b in zip(fused, official):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-5 * b.abs().max().item())


def test_tiled_matches_whole_image_above_45db():
    model = litesr.load_model(real_weights())
    x = image_to_tensor(read_image(LR_IMAGE))
    full = upscale_tensor(model, x, InferenceOptions(tile=None))
    tiled = upscale_tensor(model, x, InferenceOptions(tile=64))  # default overlap; 4 tiles on a 120×125 image
    assert tiled.shape == full.shape == (1, 3, 480, 500)
    assert psnr(tiled.clamp(0, 1), full.clamp(0, 1), peak=1.0) > 45.0


def test_cli_upscale_convert_export_bench(tmp_path):
    """The released file, unchanged, through every command that takes weights."""
    import numpy as np
    from PIL import Image

    from litesr.onnx import EXPORT_TOLERANCE, OnnxRunner, check_export

    weights = real_weights()
    model = litesr.load_model(weights)
    out = tmp_path / "baboon_x4.png"
    assert main(["upscale", str(LR_IMAGE), "-o", str(out), "--weights", str(weights), "--precision", "fp32",
                 "--device", "cpu", "--quiet"]) == 0
    with torch.inference_mode():
        want = (model(image_to_tensor(read_image(LR_IMAGE))).clamp(0, 1) * 255)[0].permute(1, 2, 0).numpy()
    got = np.asarray(Image.open(out)).astype(np.float64)
    assert got.shape == (480, 500, 3) and np.abs(got - want).max() <= 0.5 + 1e-3  # rounding only

    converted = tmp_path / "span_x4.safetensors"
    assert main(["convert", str(weights), str(converted)]) == 0
    back = litesr.load_model(converted)
    assert back.config == model.config
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in back.state_dict().items())

    onnx_path = tmp_path / "span_x4.onnx"
    pytest.importorskip("onnxruntime")
    assert main(["export", "--weights", str(weights), "-o", str(onnx_path)]) == 0
    errors = check_export(model, onnx_path, sizes=((40, 72), (21, 35)))
    assert max(errors) <= EXPORT_TOLERANCE
    assert OnnxRunner(onnx_path).scale == 4

    bench = tmp_path / "bench.json"
    assert main(["bench", str(weights), "--sizes", "16", "--runs", "1", "--warmup", "1", "--json", str(bench)]) == 0
    row = json.loads(bench.read_text())["results"][0]
    assert row["arch"] == "span" and row["params"] == 146_328 and row["macs"] == 145_700 * 180 * 320


# --------------------------------------------------------------------------------------------- official scores


def official_scores() -> dict[str, tuple[float, float]]:
    """SPAN's (PSNR, SSIM) per set as the official code scores the real checkpoint (NTIRE/README.md)."""
    path = NTIRE / "README.md"
    if not path.exists():
        pytest.skip(f"{path} not available")
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in next(line for line in lines if "SPAN PSNR" in line).strip("|").split("|")]
    column = header.index("SPAN PSNR / SSIM")
    rows = {cells[0]: cells[column] for line in lines
            if len(cells := [c.strip() for c in line.strip("|").split("|")]) == len(header)}
    found = {}
    for name, row in SET_ROWS.items():
        psnr_value, ssim_value = re.fullmatch(r"([\d.]+) / ([\d.]+)", rows[row]).groups()
        found[name] = float(psnr_value), float(ssim_value)
    return found


@pytest.mark.parametrize("set_name", [
    "Set5", "Set14", pytest.param("B100", marks=pytest.mark.slow), pytest.param("Urban100", marks=pytest.mark.slow)])
def test_eval_reproduces_the_official_scores(set_name, tmp_path):
    """`litesr eval --weights team46_span.pth` (fp32) gives what the official code scores, to 0.01 dB."""
    weights = real_weights()
    ref_psnr, ref_ssim = official_scores()[set_name]
    if not (BENCHMARKS / set_name / "HR").is_dir():
        pytest.skip(f"{BENCHMARKS / set_name} not available")
    out = tmp_path / "scores.json"
    assert main(["eval", "--weights", str(weights), "--data", str(BENCHMARKS), "--sets", set_name,
                 "--precision", "fp32", "--device", "cpu", "--json", str(out)]) == 0
    got = json.loads(out.read_text())["results"][set_name]
    assert abs(got["psnr_y"] - ref_psnr) < 0.01, got["psnr_y"]
    assert abs(got["ssim_y"] - ref_ssim) < 1e-4, got["ssim_y"]
