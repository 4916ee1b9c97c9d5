"""The weights litesr ships: the default model of `upscale` and `eval`, and their model cards."""

import json

import pytest
from PIL import Image

import litesr
from litesr.cli import main
from litesr.pretrained import WEIGHTS_DIR, available_shipped, resolve_model
from conftest import BENCHMARKS

REPO = WEIGHTS_DIR.parents[2]  # src/litesr/weights


def test_default_model_is_shipped_elan_light_x4():
    assert ("elan-light", 4) in available_shipped()
    model = resolve_model(None, None, None)
    assert model.arch_name == "elan" and model.scale == 4 and model.config["c_elan"] == 60


def test_model_cards_match_their_weights():
    for arch, scale in available_shipped():
        card = json.loads((WEIGHTS_DIR / f"{arch}_x{scale}.json").read_text())
        assert (card["arch"], card["scale"]) == (arch, scale)
        assert {"Set5", "Set14", "B100"} <= set(card["results"])
        assert (WEIGHTS_DIR / f"{arch}_x{scale}.md").read_text().count(f"{card['results']['Set5']['psnr_y']:.2f}")


def test_upscale_with_no_model_flags(tmp_path):
    out = tmp_path / "sample_x4.png"
    assert main(["upscale", str(REPO / "examples" / "sample.png"), "-o", str(out), "--quiet"]) == 0
    with Image.open(out) as img:
        assert img.size == (640, 480)


def test_unshipped_model_is_a_clear_error(tmp_path, capsys):
    assert ("grformer", 2) not in available_shipped()
    rc = main(["upscale", str(REPO / "examples" / "sample.png"), "-o", str(tmp_path / "x.png"), "--arch", "grformer",
               "--scale", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "no shipped weights for grformer x2" in err and "--weights PATH" in err
    assert not (tmp_path / "x.png").exists()


#: Published MATLAB-bicubic Set5 PSNR per scale: every shipped model must beat it clearly.
BICUBIC_SET5 = {2: 33.66, 3: 30.39, 4: 28.42}


@pytest.mark.parametrize("arch, scale", available_shipped())
def test_every_shipped_model_scores_what_its_card_says(arch, scale):
    """What `litesr eval --arch A --scale S` (no --weights) gives on Set5 is the figure on the card and README."""
    card = json.loads((WEIGHTS_DIR / f"{arch}_x{scale}.json").read_text())
    model = resolve_model(None, arch, scale)
    psnr = litesr.evaluate(model, BENCHMARKS, ["Set5"], scale, progress=False)["Set5"]["psnr_y"]
    assert psnr == pytest.approx(card["results"]["Set5"]["psnr_y"], abs=1e-3)
    assert psnr >= BICUBIC_SET5[scale] + 1.0


def _ship_weights_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ship_weights", REPO / "scripts" / "ship_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_shows_every_model_card():
    rows = _ship_weights_script().readme_rows()
    assert len(rows) == len(available_shipped())
    readme = (REPO / "README.md").read_text()
    for row in rows:
        assert row in readme.splitlines(), f"README's shipped-weights table is stale; expected row {row}"


def test_readme_table_is_rewritten_in_place(tmp_path):
    ship = _ship_weights_script()
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n| model | Set5 PSNR / SSIM (paper) | Set14 | B100 | training |\n|---|---|---|---|---|\n"
                      "| stale | row |\n\nafter\n")
    ship.update_readme_table(readme)
    lines = readme.read_text().splitlines()
    assert lines[4:4 + len(ship.readme_rows())] == ship.readme_rows()
    assert "| stale | row |" not in lines and lines[-1] == "after"


def test_card_names_the_scale_augmentation():
    ship = _ship_weights_script()
    card = json.loads((WEIGHTS_DIR / "elan-light_x4.json").read_text())
    card["recipe"]["hr_scales"], card["note"] = [1.0], ""
    assert "scale augmentation" not in ship.render_card(card)
    card["recipe"]["hr_scales"] = [1.0, 0.9, 0.6]
    assert "scale augmentation: HR images at 1 / 0.9 / 0.6 of their size" in ship.render_card(card)


def test_models_lists_the_shipped_weights(capsys):
    assert main(["models"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    for name, row in rows.items():
        want = ",".join(f"x{s}" for s in (2, 3, 4) if (name, s) in available_shipped()) or "-"
        assert row[2] == want, name
