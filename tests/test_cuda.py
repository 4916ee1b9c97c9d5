"""The CUDA paths: conformance on the GPU, ESRT's padded-head SDPA, tiled upscaling, bf16 training, peak memory.

Skipped without a GPU (CI has none); run them on one with ``python -m pytest -q tests/test_cuda.py``.
"""

import pytest
import torch

import litesr
from conftest import TOLERANCE, load_vector, relative_error

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

#: (vector, factor): the official ELAN works in 0..255, the others in [0, 1].
VECTORS = [("elan_light_x4", 255.0), ("elan_x4_d4", 255.0), ("esrt_x4", 1.0), ("grformer_light_x4", 1.0),
           ("grformer_full_x4_d4", 1.0), ("swinir_light_x4", 1.0)]


@pytest.fixture(autouse=True)
def full_float32():
    """The vectors are float32: keep TF32 out of matmuls and convolutions."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("name, factor", VECTORS)
def test_conformance_on_gpu(name, factor):
    state, tensors, _ = load_vector(name)
    model = litesr.load_model(state).cuda().eval()
    with torch.inference_mode():
        for io in "ab":
            x, ref = tensors[f"input_{io}"], tensors[f"output_{io}"]
            out = factor * model((x / factor).cuda()).cpu()
            assert relative_error(out, ref) <= TOLERANCE, (name, io)


def test_esrt_padded_head_sdpa_matches_naive_and_stays_small():
    from litesr.models.esrt import sdpa_attention

    q, k, v = (torch.randn(1, 8, 4096, 18, device="cuda") for _ in range(3))
    ref = torch.softmax(q @ k.transpose(-2, -1) / 6.0, dim=-1) @ v
    out = sdpa_attention(q, k, v, 1 / 6.0, head_multiple=8)
    assert relative_error(out.cpu(), ref.cpu()) <= 1e-5

    model = litesr.create_model("esrt", 4).cuda().eval()
    x = torch.rand(1, 3, 256, 256, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    with torch.inference_mode():
        model(x)
    torch.cuda.synchronize()
    growth = torch.cuda.max_memory_allocated() - before
    assert growth < 2 * 2**30, f"ESRT x4 at 256² took {growth / 2**30:.1f} GiB (the naive path needs ~24 GiB)"


def test_tiled_upscale_on_gpu_matches_cpu():
    from litesr.runner import TorchRunner
    from litesr.tiling import InferenceOptions, upscale_tensor

    state, _, _ = load_vector("swinir_light_x4")
    model = litesr.load_model(state).eval()
    x = torch.rand(1, 3, 70, 90)
    cpu = upscale_tensor(model, x, InferenceOptions(tile=None))
    gpu = upscale_tensor(TorchRunner(model.cuda(), "cuda"), x, InferenceOptions(tile=48, overlap=16))
    assert ((gpu - cpu).abs().max() < 0.02) and gpu.device.type == "cpu"
    bf16 = upscale_tensor(TorchRunner(model, "cuda", "bf16"), x, InferenceOptions(tile=None))
    assert (bf16 - cpu).abs().mean() < 0.01


def test_training_on_gpu_with_bf16(tmp_path):
    import shutil

    from conftest import DATA
    from litesr.train import TrainConfig, Trainer

    images = tmp_path / "hr"
    images.mkdir()
    for name in ["t1.bmp", "t2.bmp", "t3.bmp", "t5.bmp"]:
        shutil.copy(DATA / "train" / "T91" / name, images / name)
    config = TrainConfig.from_sources(None, arch="elan-light", scale=2, train_data=[str(images)], iters=20,
                                      batch_size=4, patch_size=64, workers=1, log_every=10, out=str(tmp_path / "run"),
                                      device="cuda")
    trainer = Trainer(config, progress=False)
    assert trainer.device.type == "cuda"
    trainer.run()
    model = litesr.load_model(tmp_path / "run" / "last.safetensors")
    assert model.scale == 2 and torch.load(tmp_path / "run" / "state.pt", weights_only=True)["step"] == 20
