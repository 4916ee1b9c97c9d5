"""`litesr convert` and files for the official code: the computed buffers its strict loading expects."""

import pytest
import torch

import litesr
from litesr.checkpoint import official_state_dict
from litesr.cli import main
from litesr.ops.windows import relative_position_index
from conftest import load_vector, relative_error

#: (vector, official state_dict key count, mask shape, fill) — shared/specs/grformer_swinir.md, "Stored-key counts"
OFFICIAL = [("swinir_light_x4", 366, (64, 64, 64), -100.0), ("grformer_light_x4", 844, (16, 256, 256), -1e9)]


@pytest.mark.parametrize("name, n_keys, mask_shape, fill", OFFICIAL)
def test_official_buffers_complete_the_official_state_dict(name, n_keys, mask_shape, fill, tmp_path):
    state, tensors, _ = load_vector(name)
    model = litesr.load_model(state)
    full = official_state_dict(model, img_size=64)
    assert len(full) == n_keys
    computed = set(full) - set(model.state_dict())  # the buffers official_state_dict computes
    for k, v in state.items():
        if k in computed:  # GRFormer's ES-RPB coordinates: to one ulp (float32 exp differs between CPUs)
            torch.testing.assert_close(full[k], v, rtol=0, atol=2.0 ** -24)
        else:
            assert torch.equal(full[k], v), k  # the stored weights, unchanged
    masks = {k: v for k, v in full.items() if k.endswith(".attn_mask")}
    assert len(masks) == 12 and all(m.shape == mask_shape and m.dtype == torch.float32 for m in masks.values())
    assert all(set(m.unique().tolist()) == {0.0, fill} for m in masks.values())
    index = full[next(k for k in full if k.endswith("blocks.0.attn.relative_position_index"))]
    window = (8, 8) if "swinir" in name else (8, 32)
    assert index.dtype == torch.int64 and torch.equal(index, relative_position_index(*window))

    # the .pth written for the official code loads back in litesr and computes the same outputs
    path = tmp_path / f"{name}.pth"
    assert main(["convert", str(litesr_file(model, tmp_path)), str(path), "--official-buffers"]) == 0
    saved = torch.load(path, weights_only=True)["params"]
    assert set(saved) == set(full)
    again = litesr.load_model(path)
    with torch.inference_mode():
        assert relative_error(again(tensors["input_a"]), tensors["output_a"]) <= 2e-5


def litesr_file(model, tmp_path):
    path = tmp_path / "model.safetensors"
    litesr.save_model(model, path)
    return path


def test_convert_pth_to_safetensors_records_what_load_model_needs(tmp_path, capsys):
    state, tensors, _ = load_vector("elan_light_x2")
    src = tmp_path / "elan_x2.pth"
    torch.save({"params": state}, src)
    dst = tmp_path / "elan_x2.safetensors"
    assert main(["convert", str(src), str(dst)]) == 0
    assert "elan-light x2" in capsys.readouterr().out  # the variant, not the 8.3M-parameter "elan"
    model = litesr.load_model(dst)
    assert model.scale == 2 and model.arch_name == "elan"
    bare = tmp_path / "bare.pt"
    assert main(["convert", str(dst), str(bare), "--pth-key", "none"]) == 0
    assert set(torch.load(bare, weights_only=True)) == set(state)


def test_convert_errors(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "x.safetensors")]) == 2
    assert "weights file not found" in capsys.readouterr().err
    state, _, _ = load_vector("swinir_light_x4")
    src = tmp_path / "s.pth"
    torch.save(state, src)
    assert main(["convert", str(src), str(tmp_path / "x.onnx")]) == 2
    assert "name it .safetensors" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "x.pth"), "--arch", "grformer"]) == 2
    assert "grformer" in capsys.readouterr().err and not (tmp_path / "x.pth").exists()
    assert main(["convert", str(src), str(tmp_path / "y.pth"), "--official-buffers", "--img-size", "8"]) == 2
    assert "img_size 8" in capsys.readouterr().err and not (tmp_path / "y.pth").exists()
