"""Foreign key layouts: real checkpoints written by other codebases load unchanged, strictly."""

import pytest
import torch

import litesr
from litesr.checkpoint import read_state_dict, to_official_keys
from litesr.cli import main
from litesr.models.layouts import LAYOUTS
from litesr.models.registry import ARCHITECTURES, VARIANTS, CheckpointError
from conftest import BENCHMARKS, WEIGHTS

FRL = WEIGHTS / "ELAN-light-FRL" / "ELAN-light_LSR_x4_unofficial.pth"


@pytest.fixture(scope="module")
def frl_state():
    if not FRL.exists():
        pytest.skip(f"{FRL} not available")
    return read_state_dict(FRL)


def test_frl_elan_light_is_detected_as_elan_light_x4(frl_state):
    model = litesr.load_model(FRL)
    expected = litesr.create_model("elan-light", 4)
    assert model.arch_name == "elan" and model.config == expected.config
    official, layout = to_official_keys(frl_state)
    assert layout.name == "fried-rice-lab" and set(official) == set(expected.state_dict())
    for key, value in model.state_dict().items():  # every tensor landed where the mapping says
        assert torch.equal(value, official[key]), key


@pytest.mark.parametrize("sets, reference", [("Set5", 32.4376), ("Set14", 28.7903)])
def test_frl_elan_light_scores_the_paper_level(sets, reference):
    if not FRL.exists():
        pytest.skip(f"{FRL} not available")
    model = litesr.load_model(FRL)
    psnr = litesr.evaluate(model, BENCHMARKS, [sets], 4, progress=False)[sets]["psnr_y"]
    assert abs(psnr - reference) < 0.01


def test_a_missing_key_is_refused_naming_it(frl_state):
    state = dict(frl_state)
    del state["body.3.modules_gmsa.1.project_out.weight"]
    with pytest.raises(CheckpointError, match=r"missing key\(s\): body\.3\.modules_gmsa\.gmsa_1\.project_out\.weight"
                                              r".*fried-rice-lab layout"):
        litesr.load_model(state)


def test_an_extra_key_is_refused_naming_it(frl_state):
    state = {**frl_state, "body.0.modules_lfe.0.lfe.1.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"fried-rice-lab layout of elan.*not part of it: "
                                              r"body\.0\.modules_lfe\.0\.lfe\.1\.weight"):
        litesr.load_model(state)


def test_a_wrong_shift_mask_is_refused(frl_state):
    state = dict(frl_state)
    state["body.0.modules_lfe.0.lfe.0.mask"] = torch.ones_like(state["body.0.modules_lfe.0.lfe.0.mask"])
    with pytest.raises(Exception, match="one-hot shift kernel"):
        litesr.load_model(state)


def test_every_command_takes_the_frl_file(frl_state, tmp_path, capsys):
    out = tmp_path / "elan-light_x4.safetensors"
    assert main(["convert", str(FRL), str(out)]) == 0
    back = read_state_dict(out)
    assert set(back) == set(litesr.create_model("elan-light", 4).state_dict())  # official keys now
    image = tmp_path / "small.png"
    from PIL import Image

    Image.new("RGB", (9, 7), (90, 120, 30)).save(image)
    assert main(["upscale", str(image), "-o", str(tmp_path / "big.png"), "--weights", str(FRL), "--quiet"]) == 0
    with Image.open(tmp_path / "big.png") as img:
        assert img.size == (36, 28)


def test_layout_table_is_consistent():
    for layout in LAYOUTS:
        assert layout.arch in ARCHITECTURES
        own = litesr.create_model(next(v for v in VARIANTS.values()
                                       if v.arch == layout.arch).name, 4).state_dict()
        assert not layout.recognises(own), f"{layout.name}'s signature matches official keys"
