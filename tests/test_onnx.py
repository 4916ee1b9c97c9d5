"""ONNX export: one graph per model, dynamic size, checked against PyTorch; ``--weights model.onnx`` runs it."""

import warnings

import numpy as np
import pytest
import torch


pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from conftest import SMALL, WEIGHTS  # noqa: E402
from conftest import small_model as _model  # noqa: E402
from litesr.onnx import EXPORT_TOLERANCE, ExportError, OnnxRunner, check_export, export_onnx  # noqa: E402


def _registry_cases() -> list[tuple[str, int]]:
    """Every registered architecture at every scale, each through one of its variants (the SMALL one if any)."""
    from litesr.models import ARCHITECTURES, VARIANTS
    from litesr.models.registry import SCALES

    cases = []
    for arch in sorted(ARCHITECTURES):
        names = sorted(name for name, v in VARIANTS.items() if v.arch == arch)
        assert names, f"architecture {arch} has no variant to export"
        variant = next((name for name in names if name in SMALL), names[0])
        cases += [(variant, scale) for scale in SCALES if scale in VARIANTS[variant].scales]
    return cases


def _any_model(variant: str, scale: int):
    if variant in SMALL:
        return _model(variant, scale)
    import litesr

    torch.manual_seed(0)
    return litesr.create_model(variant, scale).eval()


@pytest.mark.parametrize("variant,scale", _registry_cases())
def test_export_runs_at_other_sizes_within_tolerance(variant, scale, tmp_path):
    model = _any_model(variant, scale)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export_onnx(model, tmp_path / f"{variant}.onnx")
    tracer = [str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    assert tracer == []  # what the tracer warns of is checked, and said nowhere
    runtime = OnnxRunner(path)
    assert runtime.scale == scale and runtime.size_multiple == getattr(model, "size_multiple", 1)
    # sizes other than the traced 64x64 and the export's own checks, batch 2, non-multiples of every window
    errors = check_export(model, path, sizes=((40, 72), (21, 35)))
    assert max(errors) <= EXPORT_TOLERANCE
    x = torch.rand(2, 3, 19, 30)
    with torch.inference_mode():
        ref = model(x)
    out = runtime(x)
    assert out.shape == ref.shape
    assert ((out - ref).abs().max() / ref.abs().max()).item() <= EXPORT_TOLERANCE


def test_an_onnx_file_is_a_runner_not_a_model(tmp_path):
    from litesr.runner import Runner

    runner = OnnxRunner(export_onnx(_model("pan"), tmp_path / "pan.onnx"))
    assert isinstance(runner, Runner) and not isinstance(runner, torch.nn.Module)
    assert (runner.scale, runner.device.type, runner.precision, runner.static_shape) == (2, "cpu", "fp32", False)
    assert (runner.label, runner.arch, runner.exported_arch) == ("onnx (custom)", "onnx", "pan")  # as tables named it


def test_a_wrong_graph_is_refused(tmp_path):
    """The check compares against the model it is given: another model's graph fails it, and nothing is kept."""
    model, other = _model("imdn"), _model("imdn")
    with torch.no_grad():
        next(other.parameters()).mul_(-1)  # the first conv's weights negated
    path = export_onnx(other, tmp_path / "other.onnx")
    with pytest.raises(ExportError, match="differs"):
        check_export(model, path)


def test_cli_export_then_upscale_gives_the_pytorch_image(tmp_path):
    from PIL import Image

    from litesr.checkpoint import save_model
    from litesr.cli import main

    weights = save_model(_model("elan-light"), tmp_path / "tiny.safetensors")
    onnx_path = tmp_path / "tiny.onnx"
    assert main(["export", "--weights", str(weights), "-o", str(onnx_path)]) == 0 and onnx_path.exists()
    rng = np.random.default_rng(0)
    src = tmp_path / "in.png"
    Image.fromarray((rng.random((33, 47, 3)) * 255).astype(np.uint8)).save(src)
    outs = {}
    for name, w in (("torch", weights), ("onnx", onnx_path)):
        dst = tmp_path / f"{name}.png"
        assert main(["upscale", str(src), "-o", str(dst), "--weights", str(w), "--precision", "fp32",
                     "--device", "cpu", "--quiet"]) == 0
        outs[name] = np.asarray(Image.open(dst)).astype(int)
    diff = np.abs(outs["torch"] - outs["onnx"])
    assert outs["torch"].shape == (66, 94, 3)
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.999  # 1e-5 float differences may flip a rounding


def test_export_cli_refuses_a_non_onnx_output(tmp_path):
    from litesr.cli import main

    assert main(["export", "-o", str(tmp_path / "x.safetensors")]) == 2


PAN_X4 = WEIGHTS / "PAN" / "PANx4_DF2K.pth"


@pytest.mark.skipif(not PAN_X4.exists(), reason="PAN x4 weights not available")
def test_trained_pan_x4_exports(tmp_path, capsys):
    """Trained PAN x4 weights amplify white noise to 1e21 (no normalisation in the trunk), where float32 rounding
    alone exceeds the output's range: the check runs on image-like inputs, where the graph is exact."""
    from litesr.cli import main

    out = tmp_path / "pan.onnx"
    assert main(["export", "--weights", str(PAN_X4), "-o", str(out)]) == 0, capsys.readouterr().err
    assert OnnxRunner(out).scale == 4 and "max relative error" in capsys.readouterr().out


def _err_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_a_failed_export_check_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    from litesr.checkpoint import save_model
    from litesr.cli import main

    weights = save_model(_model("imdn"), tmp_path / "imdn.safetensors")
    monkeypatch.setattr("litesr.onnx.EXPORT_TOLERANCE", -1.0)  # no graph can pass
    out = tmp_path / "o" / "imdn.onnx"
    out.parent.mkdir()
    assert main(["export", "--weights", str(weights), "-o", str(out)]) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and "litesr export: error:" in err[0] and str(out) in err[0] and "differs" in err[0], err
    assert list(out.parent.iterdir()) == []


def test_bad_onnx_files_are_one_line_naming_the_file(tmp_path, capsys):
    from PIL import Image

    from litesr.cli import main

    good = export_onnx(_model("imdn"), tmp_path / "good.onnx")
    data = good.read_bytes()
    bad = {"empty.onnx": b"", "truncated.onnx": data[: len(data) // 2], "corrupt.onnx": b"\x08\x07garbage" * 50}
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    bench = WEIGHTS.parent / "benchmarks"
    for name, content in bad.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "--weights", str(path), "--quiet"]) == 2
        err = _err_lines(capsys)
        assert len(err) == 1 and str(path) in err[0] and "Traceback" not in err[0], err
        assert main(["eval", "--weights", str(path), "--data", str(bench), "--sets", "Set5"]) == 2
        err = _err_lines(capsys)
        assert len(err) == 1 and str(path) in err[0], err


def test_arch_is_checked_against_an_onnx_file(tmp_path, capsys):
    from PIL import Image

    from litesr.cli import main

    path = export_onnx(_model("pan"), tmp_path / "pan.onnx")
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    args = ["upscale", str(src), "-o", str(tmp_path / "o.png"), "--weights", str(path), "--quiet"]
    assert main(args + ["--arch", "imdn"]) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and "pan model, not imdn" in err[0], err
    assert main(args + ["--arch", "pan"]) == 0 and (tmp_path / "o.png").exists()


def test_export_and_convert_refuse_an_existing_destination_without_overwrite(tmp_path, capsys):
    from litesr.checkpoint import save_model
    from litesr.cli import main

    weights = save_model(_model("imdn"), tmp_path / "imdn.safetensors")
    for command, dst in (("export", tmp_path / "x.onnx"), ("convert", tmp_path / "x.pth")):
        dst.write_bytes(b"keep me")
        args = (["export", "--weights", str(weights), "-o", str(dst)] if command == "export"
                else ["convert", str(weights), str(dst)])
        assert main(args) == 2
        err = _err_lines(capsys)
        assert len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0], err
        assert dst.read_bytes() == b"keep me"
        assert main(args + ["--overwrite"]) == 0 and dst.read_bytes() != b"keep me"
