"""``--precision auto``: bf16 only where the hardware has it natively and it was measured faster per architecture."""

import sys
from pathlib import Path

import pytest
import torch

import litesr
import litesr.device
from litesr import tiling
from litesr.cli import build_parser, main
from litesr.models.registry import ARCHITECTURES
from litesr.runner import TorchRunner


@pytest.mark.parametrize("variant", ["elan-light", "esrt", "grformer", "imdn", "pan", "span", "swinir-light"])
def test_auto_follows_the_registry_on_a_bf16_cpu(monkeypatch, variant):
    monkeypatch.setattr(litesr.device, "native_bf16", lambda device: True)
    model = litesr.create_model(variant, 2)
    got = litesr.device.resolve_precision(model, torch.device("cpu"), "auto")
    assert got == ("bf16" if ARCHITECTURES[model.arch_name].cpu_bf16 else "fp32")


def test_auto_measured_choices():
    # the measured decisions (see the registrations): ESRT gains too little from bf16 autocast on CPU
    assert ARCHITECTURES["elan"].cpu_bf16 and ARCHITECTURES["swinir"].cpu_bf16 and ARCHITECTURES["grformer"].cpu_bf16
    assert not ARCHITECTURES["esrt"].cpu_bf16


def test_auto_is_fp32_without_native_bf16_and_never_fp16(monkeypatch):
    monkeypatch.setattr(litesr.device, "native_bf16", lambda device: False)
    model = litesr.create_model("elan-light", 2)
    for device in ("cpu", "cuda"):
        assert litesr.device.resolve_precision(model, torch.device(device), "auto") == "fp32"
    monkeypatch.setattr(litesr.device, "native_bf16", lambda device: True)
    swinir = litesr.create_model("swinir-light", 2)
    assert litesr.device.resolve_precision(swinir, torch.device("cuda"), "auto") == "bf16"
    assert litesr.device.resolve_precision(model, torch.device("cuda"), "fp16") == "fp16"  # only when asked
    with pytest.raises(ValueError, match="precision"):
        litesr.device.resolve_precision(model, torch.device("cpu"), "fp8")


def test_cli_defaults_upscale_auto_eval_fp32():
    parser = build_parser()
    assert parser.parse_args(["upscale", "a.png", "-o", "b.png"]).precision == "auto"
    assert parser.parse_args(["eval", "--data", "d"]).precision == "fp32"


def test_auto_upscale_runs_what_it_resolves_to(monkeypatch):
    """upscale with auto gives exactly the output of the precision it resolves to."""
    torch.manual_seed(0)
    model = litesr.create_model("elan-light", 2).eval()
    x = torch.rand(1, 3, 20, 24)
    want = litesr.device.resolve_precision(model, torch.device("cpu"), "auto")
    whole = tiling.InferenceOptions(tile=None)
    auto = tiling.upscale_tensor(TorchRunner(model, precision="auto"), x, whole)
    assert torch.equal(auto, tiling.upscale_tensor(TorchRunner(model, precision=want), x, whole))


def test_cli_upscale_and_eval_reuse_freed_memory(monkeypatch, tmp_path):
    """The command line turns on glibc block reuse (measured 1.04-1.32x faster forwards); the library does not."""
    import sys

    from PIL import Image

    from litesr.cli import main

    calls = []
    monkeypatch.setattr(litesr.device, "reuse_freed_memory", lambda: calls.append(1) or True)
    src = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(src)
    assert main(["upscale", str(src), "-o", str(tmp_path / "out.png"), "--quiet"]) == 0
    assert calls == [1]
    tiling.upscale_tensor(litesr.create_model("pan", 2).eval(), torch.rand(1, 3, 8, 8))
    assert calls == [1]
    monkeypatch.undo()
    if sys.platform.startswith("linux"):
        import platform

        assert litesr.device.reuse_freed_memory() == (platform.libc_ver()[0] == "glibc")


def test_kept_blocks_are_released_only_where_kept_and_above_the_resident_set_asked(monkeypatch):
    """``release_freed_memory`` trims glibc's heap where blocks are kept, and only above the resident set it is
    given; the tiler asks before each tile larger than the last (where a smaller tile's blocks seldom fit)."""
    from litesr import device

    trims = []

    class Libc:
        def malloc_trim(self, pad):
            trims.append(pad)

    if sys.platform.startswith("linux"):
        assert device.resident_bytes() > 1 << 20
    monkeypatch.setattr(device, "resident_bytes", lambda: 2 << 30)
    monkeypatch.setattr(device, "_libc", None)
    assert not device.release_freed_memory(above=0) and trims == []
    monkeypatch.setattr(device, "_libc", Libc())
    assert not device.release_freed_memory(above=3 << 30) and trims == []
    assert device.release_freed_memory(above=1 << 30) and trims == [0]

    sizes, released = [], []
    model = litesr.create_model("pan", 2).eval()
    monkeypatch.setattr(tiling, "release_freed_memory", lambda: released.append(len(sizes)))

    def forward(x):
        sizes.append(x.numel())
        return torch.zeros(1, 3, 2 * x.shape[-2], 2 * x.shape[-1])

    monkeypatch.setattr(model, "forward", forward)
    plan = tiling.plan_for(model, 50, 90, tile=32)
    assert len({(t.y1 - t.y0) * (t.x1 - t.x0) for t in plan}) > 1  # tiles of several sizes
    tiling.upscale_tensor(model, torch.rand(1, 3, 50, 90), tiling.InferenceOptions(tile=32, progress=False))
    assert len(sizes) == len(plan)
    assert released == [i for i, n in enumerate(sizes) if n > ([0] + sizes)[i]]


#: bf16 autocast against the official fp32 output of the window transformers' conformance vectors (random weights,
#: not photos), PSNR relative to the output's peak: measured 53.7-54.6 dB for SwinIR-light x4 and 48.8-49.3 dB for
#: GRFormer x4. Bound: 45 dB.
WINDOW_BF16_MIN_PSNR = 45.0


@pytest.mark.parametrize("name", ["swinir_light_x4", "grformer_light_x4"])
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "training"])
def test_window_transformers_bf16_within_psnr_bound(name, grad):
    """Both bf16 attention paths (inference's SDPA and, with gradients, training's explicit one) stay within it."""
    from conftest import load_vector, psnr

    state, tensors, _ = load_vector(name)
    model = litesr.load_model(state)
    with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16):
        for io in "abcd":
            if f"input_{io}" not in tensors:
                continue
            db = psnr(model(tensors[f"input_{io}"]).float().detach(), tensors[f"output_{io}"])
            assert db >= WINDOW_BF16_MIN_PSNR, (io, db)


def test_transformer_layer_norms_normalise_low_precision_inputs_in_float32():
    """Every LayerNorm of the transformers is blocks.LayerNorm: in fp32 it is nn.LayerNorm; at bf16 inference on a
    CPU it normalises in float32 and rounds once (ATen's bf16 kernel was 2x slower), with gradients it is
    nn.LayerNorm's bf16 path."""
    from litesr.models.blocks import LayerNorm

    for variant in ("swinir-light", "grformer", "esrt"):
        norms = [m for m in litesr.create_model(variant, 4).modules() if isinstance(m, torch.nn.LayerNorm)]
        assert norms and all(type(m) is LayerNorm for m in norms), variant
    torch.manual_seed(0)
    norm, reference = LayerNorm(60), torch.nn.LayerNorm(60)
    weight, bias = torch.randn(60), torch.randn(60)
    with torch.no_grad():
        for m in (norm, reference):
            m.weight.copy_(weight)
            m.bias.copy_(bias)
    x = torch.randn(2, 9, 7, 60) * 3 + 1
    low = x.bfloat16()
    with torch.inference_mode():
        assert torch.equal(norm(x), reference(x))
        out = norm(low)
        assert out.dtype == torch.bfloat16
        assert torch.equal(out, reference(low.float()).bfloat16())
    grad_out = norm(low.clone().requires_grad_())
    assert grad_out.requires_grad and torch.equal(grad_out.detach(), reference(low).detach())


def test_fp16_on_a_cpu_is_refused_with_what_to_use(tmp_path, capsys):
    from PIL import Image

    model = litesr.create_model("pan", 2).eval()
    with pytest.raises(ValueError, match="fp16 is for GPUs.*use fp32, or bf16"):
        litesr.device.resolve_precision(model, torch.device("cpu"), "fp16")
    src = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(src)
    weights = litesr.save_model(model, tmp_path / "pan_x2.safetensors")
    assert main(["upscale", str(src), "-o", str(tmp_path / "b.png"), "--weights", str(weights), "--device", "cpu",
                 "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fp16 is for GPUs" in err[0] and not (tmp_path / "b.png").exists()


def test_a_home_that_does_not_exist_is_not_created(tmp_path, monkeypatch):
    import tempfile

    from litesr.paths import cache_dir

    monkeypatch.delenv("LITESR_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "gone" / "home"))
    where = cache_dir()
    assert where.parent == Path(tempfile.gettempdir()) and "gone" not in str(where)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "litesr"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "gone" / "cache"))  # its parent is missing too
    assert cache_dir() == tmp_path / ".cache" / "litesr"
