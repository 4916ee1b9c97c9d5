"""The weights litesr ships: the default model of `upscale` and `eval`, and their model cards."""

import json

import pytest
from PIL import Image

import litesr
from litesr import zoo
from litesr.cli import main
from litesr.pretrained import WEIGHTS_DIR, resolve_model
from conftest import BENCHMARKS

REPO = WEIGHTS_DIR.parents[2]  # src/litesr/weights
SHIPPED = [e.name for e in zoo.entries().values() if e.shipped]


def test_default_model_is_the_div2k_elan_light_x4():
    model = resolve_model(None, None, None)
    assert model.weights_name == "elan-light-x4-frl" == zoo.default_for("elan-light", 4).name
    assert model.arch_name == "elan" and model.scale == 4 and model.config["c_elan"] == 60


def test_every_packaged_file_is_in_the_table():
    listed = {e.file for e in zoo.entries().values() if e.shipped}
    assert {p.name for p in WEIGHTS_DIR.glob("*.safetensors")} == listed
    assert {p.stem for p in WEIGHTS_DIR.glob("*.md")} == {f.removesuffix(".safetensors") for f in listed}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_file_matches_its_entry_and_card(name):
    """The bytes are the pinned ones; the card (.md) shows the table's Set5 score; a training record (.json, for
    litesr's own weights) has the table's arch, scale and scores."""
    entry = zoo.entries()[name]
    path = WEIGHTS_DIR / entry.file
    assert zoo.sha256_of(path) == entry.sha256 and path.stat().st_size == entry.size
    stem = entry.file.removesuffix(".safetensors")
    assert f"{entry.scores['Set5']['psnr']:.2f}" in (WEIGHTS_DIR / f"{stem}.md").read_text()
    record = WEIGHTS_DIR / f"{stem}.json"
    if record.is_file():
        card = json.loads(record.read_text())
        assert (card["arch"], card["scale"]) == (entry.arch, entry.scale)
        for s, r in card["results"].items():
            assert (r["psnr_y"], r["ssim_y"]) == (entry.scores[s]["psnr"], entry.scores[s]["ssim"]), s
    else:
        assert entry.origin not in ("291", "491"), "litesr's own weights keep their training record"


def test_upscale_with_no_model_flags(tmp_path):
    out = tmp_path / "sample_x4.png"
    assert main(["upscale", str(REPO / "examples" / "sample.png"), "-o", str(out), "--quiet"]) == 0
    with Image.open(out) as img:
        assert img.size == (640, 480)


def test_pair_without_default_is_a_clear_error(tmp_path, capsys):
    assert zoo.default_for("grformer", 3) is None
    rc = main(["upscale", str(REPO / "examples" / "sample.png"), "-o", str(tmp_path / "x.png"), "--arch", "grformer",
               "--scale", "3"])
    err = capsys.readouterr().err
    assert rc == 2 and "no default weights for grformer x3" in err and "grformer-x4-291" in err
    assert "--weights PATH|NAME" in err and not (tmp_path / "x.png").exists()


def test_unknown_architecture_says_so(tmp_path, capsys):
    """Not "no shipped weights for foo x4": the architecture itself is unknown, and the known ones are listed."""
    rc = main(["upscale", str(REPO / "examples" / "sample.png"), "-o", str(tmp_path / "x.png"), "--arch", "foo"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "unknown architecture 'foo'" in err and "elan-light" in err and "swinir-light" in err
    assert len(err.splitlines()) == 1


#: Published MATLAB-bicubic Set5 PSNR per scale: every shipped model must beat it clearly.
BICUBIC_SET5 = {2: 33.66, 3: 30.39, 4: 28.42}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_scores_what_the_table_says(name):
    """What `litesr eval --weights NAME` gives on Set5 is the table's figure (and the card's, and the README's);
    for a default, that is what `litesr eval --arch A --scale S` with no weights gives."""
    entry = zoo.entries()[name]
    model = resolve_model(name, None, None) if not entry.default else resolve_model(None, entry.arch, entry.scale)
    assert model.weights_name == name
    psnr = litesr.evaluate(model, BENCHMARKS, ["Set5"], entry.scale, progress=False)["Set5"]["psnr_y"]
    assert psnr == pytest.approx(entry.scores["Set5"]["psnr"], abs=1e-3)
    assert psnr >= BICUBIC_SET5[entry.scale] + 1.0


def test_default_x4_reaches_the_paper():
    """The issue's bar: `litesr eval --arch elan-light --scale 4` with no weights scores Set5 >= 32.43."""
    psnr = litesr.evaluate(resolve_model(None, "elan-light", 4), BENCHMARKS, ["Set5"], 4, progress=False)
    assert psnr["Set5"]["psnr_y"] >= 32.43


def _ship_weights_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ship_weights", REPO / "scripts" / "ship_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_is_rewritten_in_place(tmp_path):
    from litesr.cli.models import MARKDOWN_HEADER, markdown_rows

    ship = _ship_weights_script()
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{MARKDOWN_HEADER}\n|---|---|\n| stale | row |\n\nafter\n")
    ship.update_readme_table(readme)
    lines = readme.read_text().splitlines()
    assert lines[2:2 + len(markdown_rows())] == markdown_rows()
    assert "| stale | row |" not in lines and lines[-2:] == ["", "after"]


def test_table_entry_is_updated_in_place(tmp_path):
    """Re-shipping a run rewrites its entry's sha256, size and scores, and nothing else of the table."""
    ship = _ship_weights_script()
    table = tmp_path / "zoo.yaml"
    original = zoo.TABLE.read_text()
    table.write_text(original)
    scores = {"Set5": {"psnr_y": 38.1, "ssim_y": 0.96}, "Urban100": {"psnr_y": 32.0, "ssim_y": 0.93}}
    assert ship.update_table_entry(table, "elan-light_x2.safetensors", "ab" * 32, 123, scores)
    entry = zoo.read_table(table)["elan-light-x2-491"]
    assert (entry.sha256, entry.size) == ("ab" * 32, 123)
    assert entry.scores == {"Set5": {"psnr": 38.1, "ssim": 0.96}, "Urban100": {"psnr": 32.0, "ssim": 0.93}}
    others = {k: v for k, v in zoo.read_table(table).items() if k != "elan-light-x2-491"}
    assert others == {k: v for k, v in zoo.entries().items() if k != "elan-light-x2-491"}
    assert original.splitlines()[:5] == table.read_text().splitlines()[:5]  # the header's comments stay
    assert not ship.update_table_entry(table, "nothing.safetensors", "ab" * 32, 1, scores)


def test_card_names_the_scale_augmentation():
    ship = _ship_weights_script()
    card = json.loads((WEIGHTS_DIR / "elan-light_x4.json").read_text())
    card["recipe"]["hr_scales"], card["note"] = [1.0], ""
    assert "scale augmentation" not in ship.render_card(card)
    card["recipe"]["hr_scales"] = [1.0, 0.9, 0.6]
    assert "scale augmentation: HR images at 1 / 0.9 / 0.6 of their size" in ship.render_card(card)
