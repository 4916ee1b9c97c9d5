"""``litesr eval`` and the benchmark loader: JSON schema, tables, and one clear line for every broken input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from litesr.cli import main
from litesr.data.testsets import BenchmarkSet
from litesr.data.imresize import imresize, modcrop
from litesr.io import read_image

from conftest import BENCHMARKS, DATA, WEIGHTS


@pytest.fixture
def set5():
    if not (BENCHMARKS / "Set5").is_dir():
        pytest.skip(f"benchmark data {BENCHMARKS} not available")
    return BENCHMARKS / "Set5"


def _one_image_set(tmp_path, set5, name="Set5", lr_scales=(2,)):
    """A copy of Set5's ``bird`` (288×288) as a one-image set, with the given LR folders."""
    (tmp_path / name / "HR").mkdir(parents=True)
    shutil.copy(set5 / "HR" / "bird.png", tmp_path / name / "HR" / "bird.png")
    for s in lr_scales:
        (tmp_path / name / "LR_bicubic" / f"X{s}").mkdir(parents=True)
        shutil.copy(set5 / "LR_bicubic" / f"X{s}" / f"birdx{s}.png", tmp_path / name / "LR_bicubic" / f"X{s}")
    return tmp_path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_eval_writes_the_json_schema_and_a_table(tmp_path, set5, capsys):
    weights = WEIGHTS / "IMDN" / "IMDN_x4.pth"
    if not weights.exists():
        pytest.skip(f"{weights} not available")
    out = tmp_path / "res" / "imdn_x4.json"
    argv = ["eval", "--data", str(BENCHMARKS), "--sets", "Set5", "--weights", str(weights), "--bicubic",
            "--json", str(out), "--save-images", str(tmp_path / "sr"), "--device", "cpu"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "Set5 (5)" in table and "\nimdn " in table and "\nBicubic " in table

    doc = json.loads(out.read_text())
    assert doc["arch"] == "imdn" and doc["scale"] == 4 and doc["gray"] == "rgb" and doc["self_ensemble"] is False
    assert set(doc["results"]) == {"Set5"} and set(doc["results"]["Set5"]) == {"psnr_y", "ssim_y", "images"}
    assert doc["results"]["Set5"]["images"] == 5
    reference = json.loads((DATA / "reference_scores.json").read_text())["imdn"]["x4"]["Set5"]
    assert abs(doc["results"]["Set5"]["psnr_y"] - reference["psnr"]) < 0.01
    assert doc["bicubic"]["Set5"]["psnr_y"] == pytest.approx(28.43, abs=0.01)
    assert not list(out.parent.glob("*.tmp"))  # written atomically
    saved = read_image(tmp_path / "sr" / "Set5" / "bird.png")
    assert saved.shape == modcrop(read_image(set5 / "HR" / "bird.png"), 4).shape


def test_missing_data_dir_is_one_clear_line(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["eval", "--data", str(missing), "--weights", "w.pth"]) == 2
    assert _error_line(capsys) == f"litesr eval: error: benchmark data directory not found: {missing}"


def test_unknown_set_lists_the_sets_found(tmp_path, set5, capsys):
    data = _one_image_set(tmp_path, set5)
    assert main(["eval", "--data", str(data), "--sets", "Set5,Urban100", "--bicubic", "--scale", "2"]) == 2
    line = _error_line(capsys)
    assert "no benchmark set 'Urban100'" in line and "sets found there: Set5" in line


def test_mismatched_lr_names_the_file(tmp_path, set5, capsys):
    data = _one_image_set(tmp_path, set5, lr_scales=(3,))
    wrong = data / "Set5" / "LR_bicubic" / "X2" / "birdx2.png"
    wrong.parent.mkdir(parents=True)
    shutil.copy(data / "Set5" / "LR_bicubic" / "X3" / "birdx3.png", wrong)  # a x3 image in the x2 folder
    assert main(["eval", "--data", str(data), "--bicubic", "--scale", "2"]) == 2
    line = _error_line(capsys)
    assert str(wrong) in line and "96×96" in line and "expected LR 144×144" in line


def test_missing_lr_file_in_an_lr_folder_is_an_error(tmp_path, set5, capsys):
    data = _one_image_set(tmp_path, set5)
    (data / "Set5" / "LR_bicubic" / "X2" / "birdx2.png").unlink()
    assert main(["eval", "--data", str(data), "--bicubic", "--scale", "2"]) == 2
    assert "missing LR image" in _error_line(capsys)


def test_hr_only_set_gets_matlab_bicubic_lr(tmp_path, set5, capsys):
    data = _one_image_set(tmp_path, set5, name="Urban", lr_scales=())
    bench = BenchmarkSet(data, "Urban", 3)
    (img,) = list(bench)
    assert img.lr_generated and not img.hr_is_gray
    np.testing.assert_array_equal(img.lr, read_image(set5 / "LR_bicubic" / "X3" / "birdx3.png"))  # bit-exact
    np.testing.assert_array_equal(img.lr, imresize(img.hr, 1 / 3))
    assert main(["eval", "--data", str(data), "--bicubic", "--scale", "3"]) == 0
    assert "Urban* (1)" in capsys.readouterr().out


def test_bicubic_only_needs_a_scale(tmp_path, set5, capsys):
    data = _one_image_set(tmp_path, set5)
    assert main(["eval", "--data", str(data), "--bicubic"]) == 2
    assert "needs --scale" in _error_line(capsys)


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--gray {rgb,raw}" in text


def test_eval_in_bf16_measures_what_the_faster_precision_costs(tmp_path, set5):
    weights = WEIGHTS / "IMDN" / "IMDN_x2.pth"
    if not weights.exists():
        pytest.skip(f"{weights} not available")
    data = _one_image_set(tmp_path, set5)
    docs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.json"
        assert main(["eval", "--data", str(data), "--sets", "Set5", "--weights", str(weights), "--device", "cpu",
                     "--precision", precision, "--json", str(out)]) == 0
        docs[precision] = json.loads(out.read_text())
    assert docs["bf16"]["precision"] == "bf16" and docs["fp32"]["precision"] == "fp32"
    fp32, bf16 = (docs[p]["results"]["Set5"]["psnr_y"] for p in ("fp32", "bf16"))
    assert fp32 != bf16 and abs(fp32 - bf16) < 0.1


def test_a_folder_without_sets_is_one_line(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path), "--bicubic", "--scale", "2"]) == 2
    assert "no benchmark sets (folders with an HR/ folder) in" in _error_line(capsys)


def test_evaluation_progress_in_a_log(set5, monkeypatch, capsys):
    import litesr.progress
    from litesr.evaluate import evaluate_bicubic

    monkeypatch.setattr(litesr.progress, "LOG_INTERVAL_S", 0.0)  # a line after every image
    evaluate_bicubic(set5.parent, ["Set5"], 4, progress="lines")
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" images")[0] for line in lines] == [f"litesr: Set5 x4: {i}/5" for i in range(1, 5)]
    evaluate_bicubic(set5.parent, ["Set5"], 4, progress=False)
    assert capsys.readouterr().err == ""
