"""OpenVINO runtime: the converted graph against PyTorch and the official vectors, its caches, and the CLI."""

import numpy as np
import pytest
import torch

import litesr

pytest.importorskip("openvino")

from conftest import SMALL, load_vector, psnr, relative_error, small_model  # noqa: E402
from litesr.cli import main  # noqa: E402
from litesr.errors import UsageError  # noqa: E402
from litesr.openvino import NOT_CONVERTED, TOLERANCE, OpenVinoRunner  # noqa: E402


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Each test converts into its own cache, never the user's."""
    monkeypatch.setenv("LITESR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("variant", sorted(set(SMALL) - set(NOT_CONVERTED)))
def test_fp32_matches_pytorch_at_sizes_it_was_not_converted_at(variant):
    model = small_model(variant)
    runtime = OpenVinoRunner(model, precision="fp32")
    assert runtime.scale == 2 and runtime.size_multiple == getattr(model, "size_multiple", 1)
    for shape in ((1, 3, 21, 35), (2, 3, 40, 24)):  # not multiples of any window; a batch of two
        x = torch.rand(*shape)
        with torch.inference_mode():
            ref = model(x)
        assert relative_error(runtime(x), ref) <= TOLERANCE, shape


@pytest.mark.parametrize("variant", sorted(NOT_CONVERTED))
def test_an_architecture_openvino_gets_wrong_is_refused_in_one_line(variant, capsys):
    with pytest.raises(UsageError, match=f"cannot run {variant} yet"):
        OpenVinoRunner(small_model(variant), precision="fp32")


def test_fp32_reproduces_the_official_elan_vector():
    """The official ELAN-light x4 within OpenVINO's tolerance (its fp32 kernels round differently from PyTorch's);
    eval on Set5/Set14 moved by +0.0002/-0.0001 dB (docs/performance.md §2.7)."""
    state, tensors, _ = load_vector("elan_light_x4")
    runtime = OpenVinoRunner(litesr.load_model(state), precision="fp32")
    for io in "ab":
        x, ref = tensors[f"input_{io}"], tensors[f"output_{io}"]
        assert relative_error(255.0 * runtime(x / 255.0), ref) <= TOLERANCE, io


def test_bf16_stays_close_where_it_runs():
    from litesr.device import native_bf16

    if not native_bf16(torch.device("cpu")):
        pytest.skip("no native bf16 on this CPU")
    model = small_model("elan-light", 4)
    x = torch.rand(1, 3, 32, 48)
    with torch.inference_mode():
        ref = model(x)
    out = OpenVinoRunner(model, precision="bf16")(x)
    # bf16: Set5/Set14 -0.0007/+0.0004 dB with the shipped x4 (docs/performance.md §2.7)
    assert psnr(out.clamp(0, 1), ref.clamp(0, 1), peak=1.0) > 40


def test_conversion_is_cached_and_keyed_by_the_weights(cache):
    model = small_model("imdn")
    OpenVinoRunner(model)
    files = sorted(p.name for p in (cache / "openvino").glob("*.xml"))
    assert len(files) == 1 and not list((cache / "openvino").glob(".convert-*"))  # no work folder left
    stamp = (cache / "openvino" / files[0]).stat().st_mtime_ns
    OpenVinoRunner(model)  # reused, not converted again
    assert (cache / "openvino" / files[0]).stat().st_mtime_ns == stamp
    with torch.no_grad():
        next(model.parameters()).mul_(-1)
    OpenVinoRunner(model)  # other weights: another conversion
    assert len(list((cache / "openvino").glob("*.xml"))) == 2


def test_compiled_shapes_are_kept_and_bounded():
    from litesr.openvino import KEEP_COMPILED

    runtime = OpenVinoRunner(small_model("pan"))
    for side in range(8, 8 + KEEP_COMPILED + 2):
        runtime(torch.rand(1, 3, side, side))
    assert len(runtime._compiled) == KEEP_COMPILED
    first = runtime.compiled((1, 3, 8 + KEEP_COMPILED + 1, 8 + KEEP_COMPILED + 1))
    assert runtime.compiled((1, 3, 8 + KEEP_COMPILED + 1, 8 + KEEP_COMPILED + 1)) is first


def test_cli_upscale_with_openvino_gives_the_eager_image(tmp_path, capsys):
    from PIL import Image

    weights = litesr.save_model(small_model("elan-light", 2), tmp_path / "tiny.safetensors")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 70, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    for runtime in ("eager", "openvino"):
        assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / f"{runtime}.png"), "--weights",
                     str(weights), "--precision", "fp32", "--runtime", runtime, "--tile", "32", "--quiet"]) == 0
    eager, ov = (np.asarray(Image.open(tmp_path / f"{r}.png"), dtype=float) for r in ("eager", "openvino"))
    assert eager.shape == ov.shape == (80, 140, 3)
    # uniform tiles (openvino) vs border-clipped tiles (eager): the same pixels up to tile context and rounding
    assert psnr(eager, ov, peak=255.0) > 45


def test_cli_refuses_what_openvino_cannot_run(tmp_path, capsys):
    from litesr.onnx import export_onnx

    pytest.importorskip("onnxruntime")
    from PIL import Image

    onnx_path = export_onnx(small_model("pan"), tmp_path / "pan.onnx")
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")  # an input to upscale: an empty folder is refused first
    rc = main(["upscale", str(tmp_path), "-o", str(tmp_path / "out"), "--weights", str(onnx_path),
               "--runtime", "openvino"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "--runtime openvino takes litesr weights" in err[0], err


def test_an_openvino_model_is_a_static_shape_runner():
    from litesr.runner import Runner

    model = small_model("pan")
    runner = OpenVinoRunner(model, precision="fp32")
    assert isinstance(runner, Runner) and not isinstance(runner, torch.nn.Module) and runner.static_shape
    assert (runner.device.type, runner.precision, runner.arch) == ("cpu", "fp32", "pan")
    assert runner.runtime == "OpenVINO fp32"  # what the eval table says after the label


def test_conversion_is_announced_once(tmp_path):
    lines = []
    OpenVinoRunner(small_model("pan"), announce=lines.append)
    OpenVinoRunner(small_model("pan"), announce=lines.append)
    assert len(lines) == 1 and lines[0].startswith("converting pan for OpenVINO")


def test_runtime_choice_and_its_one_line_refusals():
    from litesr.cli import build_parser
    from litesr.errors import UsageError
    from litesr.pretrained import apply_runtime

    model = small_model("pan")
    assert apply_runtime(model, "eager", torch.device("cpu"), "auto") is model
    assert isinstance(apply_runtime(model, "openvino", torch.device("cpu"), "fp32"), OpenVinoRunner)
    with pytest.raises(UsageError, match="runs on the CPU"):
        apply_runtime(model, "openvino", torch.device("meta"), "fp32")
    assert build_parser().parse_args(["upscale", "a.png", "-o", "b.png"]).runtime == "eager"
    assert build_parser().parse_args(["eval", "--data", "d", "--runtime", "openvino"]).runtime == "openvino"


def test_eval_json_names_the_variant_and_the_runtime(tmp_path, capsys):
    import json

    from conftest import BENCHMARKS

    if not (BENCHMARKS / "Set5").is_dir():
        pytest.skip("benchmark images not available")
    weights = litesr.save_model(small_model("elan-light", 4), tmp_path / "tiny.safetensors")
    out = tmp_path / "r.json"
    assert main(["eval", "--data", str(BENCHMARKS), "--sets", "Set5", "--weights", str(weights), "--runtime",
                 "openvino", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert (doc["arch"], doc["family"], doc["runtime"]) == ("elan (custom)", "elan", "openvino")
    assert "(OpenVINO fp32)" in capsys.readouterr().out  # the table's row says what computed it
