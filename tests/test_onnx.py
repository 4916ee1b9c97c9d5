"""ONNX export: one graph per model, dynamic size, checked against PyTorch; ``--weights model.onnx`` runs it."""

import numpy as np
import pytest
import torch


pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from conftest import SMALL  # noqa: E402
from conftest import small_model as _model  # noqa: E402
from litesr.onnx import EXPORT_TOLERANCE, ExportError, OnnxModel, check_export, export_onnx  # noqa: E402


@pytest.mark.parametrize("variant", sorted(SMALL))
def test_export_runs_at_other_sizes_within_tolerance(variant, tmp_path):
    model = _model(variant)
    path = export_onnx(model, tmp_path / f"{variant}.onnx")
    runtime = OnnxModel(path)
    assert runtime.scale == 2 and runtime.size_multiple == getattr(model, "size_multiple", 1)
    # sizes other than the traced 64x64 and the export's own checks, batch 2, non-multiples of every window
    errors = check_export(model, path, sizes=((40, 72), (21, 35)))
    assert max(errors) <= EXPORT_TOLERANCE
    x = torch.rand(2, 3, 19, 30)
    with torch.inference_mode():
        ref = model(x)
    out = runtime(x)
    assert out.shape == ref.shape
    assert ((out - ref).abs().max() / ref.abs().max()).item() <= EXPORT_TOLERANCE


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
