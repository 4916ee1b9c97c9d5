"""Tiled upscaling and the `litesr upscale` command."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import litesr
from litesr.cli import main
from litesr.runner import TorchRunner
from litesr.tiling import DEFAULT_OVERLAP, InferenceOptions, plan_for, plan_tiles, seam_mask, upscale_tensor
from litesr.io import image_to_tensor, read_image
from conftest import BENCHMARKS, NearestX4, load_vector, psnr

LR_IMAGE = BENCHMARKS / "Set14" / "LR_bicubic" / "X4" / "baboonx4.png"


@pytest.fixture(scope="module")
def elan_weights(tmp_path_factory):
    state, _, _ = load_vector("elan_light_x4")
    path = tmp_path_factory.mktemp("w") / "elan_light_x4.safetensors"
    litesr.save_model(litesr.load_model(state), path)
    return path


def psnr01(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two [0, 1] images as they would be saved (clamped)."""
    return psnr(a.clamp(0, 1), b.clamp(0, 1), peak=1.0)


def test_tiles_cover_image_exactly_once():
    for h, w, tile, overlap, align in [(120, 125, 64, 32, 16), (7, 300, 50, 10, 1), (33, 33, 16, 0, 8)]:
        cover = np.zeros((h, w), int)
        for t in plan_tiles(h, w, tile, overlap, align):
            cover[t.cy0:t.cy1, t.cx0:t.cx1] += 1
            assert t.y0 <= t.cy0 < t.cy1 <= t.y1 and t.x0 <= t.cx0 < t.cx1 <= t.x1
        assert (cover == 1).all()


def test_uniform_tiles_share_one_window_size_cover_once_and_keep_their_context():
    for h, w, tile, overlap, align in [(1000, 1500, 256, 32, 16), (300, 700, 256, 32, 16), (257, 1000, 256, 32, 16),
                                       (120, 125, 64, 32, 16), (33, 33, 16, 0, 8)]:
        tiles = plan_tiles(h, w, tile, overlap, align, uniform=True)
        size_h, size_w = max(t.y1 - t.y0 for t in tiles), max(t.x1 - t.x0 for t in tiles)
        cover = np.zeros((h, w), int)
        for t in tiles:
            cover[t.cy0:t.cy1, t.cx0:t.cx1] += 1
            assert 0 <= t.y0 <= t.cy0 < t.cy1 <= t.y1 <= h and 0 <= t.x0 <= t.cx0 < t.cx1 <= t.x1 <= w
            assert t.y0 % align == 0 and t.x0 % align == 0  # attention windows stay on the whole image's grid
            assert t.y1 - t.y0 == size_h or t.y1 == h  # only windows at the far border are shorter (then padded)
            assert t.x1 - t.x0 == size_w or t.x1 == w
            ov = -(-overlap // (align // 2 or 1)) * (align // 2 or 1)
            assert t.cy0 - t.y0 >= min(ov, t.cy0) and t.y1 - t.cy1 >= min(ov, h - t.cy1)
            assert t.cx0 - t.x0 >= min(ov, t.cx0) and t.x1 - t.cx1 >= min(ov, w - t.cx1)
        assert (cover == 1).all()
        assert len(tiles) == len(plan_tiles(h, w, tile, overlap, align))  # the same cores, only windows grow


def test_windows_stay_on_the_grid_with_half_a_grid_of_context():
    # GRFormer's grid is 32 pixels: 16 pixels of context suffice (65 dB), and rounding them up to 32 made a 256
    # core compute (320/256)² = 1.56x its pixels instead of (288/256)² = 1.27x
    for h, w, tile, overlap, align in [(1536, 2048, 256, 16, 32), (300, 700, 256, 16, 32), (1000, 1500, 256, 96, 64),
                                       (257, 1000, 384, 8, 16), (100, 300, 64, 3, 7)]:
        for uniform in (False, True):
            tiles = plan_tiles(h, w, tile, overlap, align, uniform=uniform)
            cover = np.zeros((h, w), int)
            for t in tiles:
                cover[t.cy0:t.cy1, t.cx0:t.cx1] += 1
                assert t.y0 % align == 0 and t.x0 % align == 0
                assert t.cy0 - t.y0 >= min(overlap, t.cy0) and t.y1 - t.cy1 >= min(overlap, h - t.cy1)
                assert t.cx0 - t.x0 >= min(overlap, t.cx0) and t.x1 - t.cx1 >= min(overlap, w - t.cx1)
                if not uniform:
                    assert t.cy1 - t.cy0 <= tile and t.cx1 - t.cx0 <= tile
                    # windows that end inside the image have lengths on the grid: the model pads none of them
                    assert t.y1 == h or (t.y1 - t.y0) % align == 0
            assert (cover == 1).all()
            widest = max(t.x1 - t.x0 for t in tiles if t.x0 > 0 and t.x1 < w) if len({t.x0 for t in tiles}) > 2 else 0
            if align % 2 == 0 and widest:
                assert widest <= tile + 2 * -(-overlap // (align // 2)) * (align // 2)


def test_tiled_matches_untiled_above_45db(elan_weights):
    model = litesr.load_model(elan_weights)
    x = image_to_tensor(read_image(LR_IMAGE))
    full = upscale_tensor(model, x, InferenceOptions(tile=None))
    tiled = upscale_tensor(model, x, InferenceOptions(tile=64))  # default overlap; 4 tiles on a 120×125 image
    assert tiled.shape == full.shape == (1, 3, 480, 500)
    assert psnr01(tiled, full) > 45.0
    shapes = set()
    model.register_forward_pre_hook(lambda module, args: shapes.add(tuple(args[0].shape)))
    runner = TorchRunner(model)
    runner.static_shape = True  # windows of one size, as for a runtime compiled per shape
    uniform = upscale_tensor(runner, x, InferenceOptions(tile=64))
    side = 64 + DEFAULT_OVERLAP  # the core and the context on the inner side; the far border tiles padded to it
    assert shapes == {(1, 3, side, side)}
    assert psnr01(uniform, full) > 45.0


def _zoo_x4_files() -> list:
    """(name, file) of every x4 weights entry whose file is shipped or in ../shared/data/weights."""
    from litesr import zoo
    from conftest import WEIGHTS

    found = []
    for entry in zoo.entries().values():
        if entry.scale != 4:
            continue
        shared = sorted(WEIGHTS.rglob(entry.filename)) if WEIGHTS.is_dir() else []
        path = zoo.local_file(entry) or (shared[0] if shared else None)
        if path is not None:
            found.append(pytest.param(path, id=entry.name))
    return found


@pytest.mark.parametrize("weights", _zoo_x4_files())
def test_every_model_tiles_at_the_default_context_above_45db_against_the_whole_image(weights):
    # real weights on a real picture: random ones would say nothing about how far a model's context reaches
    # Measured over the output within 4 LR pixels of a seam, where tiles differ (without context these rows score
    # 38-41 dB for every model; over the whole image even no context passes 45 dB on so few tiles).
    model = litesr.load_model(weights)
    x = image_to_tensor(read_image(LR_IMAGE))
    h, w, s = x.shape[-2], x.shape[-1], model.scale
    full = upscale_tensor(model, x, InferenceOptions(tile=None))
    tiled = upscale_tensor(model, x, InferenceOptions(tile=64))  # the default context; several tiles of 125×120
    seams = torch.from_numpy(seam_mask(plan_for(model, h, w, tile=64), h, w, s))  # within 4 LR px of a seam
    assert seams.any()
    assert psnr01(tiled[..., seams], full[..., seams]) > 45.0


def test_cli_upscale_writes_output(elan_weights, tmp_path):
    out = tmp_path / "baboon_x4.png"
    assert main(["upscale", str(LR_IMAGE), "-o", str(out), "--weights", str(elan_weights), "--tile", "64",
                 "--quiet"]) == 0
    with Image.open(out) as img:
        assert img.size == (500, 480) and img.mode == "RGB"
    assert [p.name for p in tmp_path.iterdir()] == ["baboon_x4.png"]  # no temporary left behind


def _fails_cleanly(args, capsys, tmp_path, pattern):
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert len(err) == 1 and pattern in err[0], err
    assert not any(p.suffix == ".png" or p.name.endswith(".tmp") for p in tmp_path.rglob("*") if p.is_file()
                   and p.parent.name == "out")


def test_cli_missing_input(elan_weights, tmp_path, capsys):
    _fails_cleanly(["upscale", str(tmp_path / "absent.png"), "-o", str(tmp_path / "out" / "x.png"), "--weights",
                    str(elan_weights)], capsys, tmp_path, "input not found")


def test_cli_unreadable_and_truncated_images(elan_weights, tmp_path, capsys):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really")
    _fails_cleanly(["upscale", str(garbage), "-o", str(tmp_path / "out" / "x.png"), "--weights", str(elan_weights)],
                   capsys, tmp_path, "cannot read image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(LR_IMAGE.read_bytes()[:5000])
    _fails_cleanly(["upscale", str(truncated), "-o", str(tmp_path / "out" / "x.png"), "--weights", str(elan_weights)],
                   capsys, tmp_path, "cannot read image")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_checkpoint_errors(elan_weights, tmp_path, capsys):
    _fails_cleanly(["upscale", str(LR_IMAGE), "-o", str(tmp_path / "out" / "x.png"), "--weights",
                    str(tmp_path / "absent.safetensors")], capsys, tmp_path, "weights file not found")
    _fails_cleanly(["upscale", str(LR_IMAGE), "-o", str(tmp_path / "out" / "x.png"), "--weights", str(elan_weights),
                    "--scale", "2"], capsys, tmp_path, "scale mismatch")


def test_python_m_litesr_version():
    out = subprocess.run([sys.executable, "-m", "litesr", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("litesr ")


def test_bf16_precision_stays_close_to_fp32_and_returns_float32(elan_weights):
    model = litesr.load_model(elan_weights).eval()
    x = image_to_tensor(read_image(LR_IMAGE))[..., :40, :48]
    fp32 = upscale_tensor(model, x, InferenceOptions(tile=None))
    bf16 = upscale_tensor(TorchRunner(model, precision="bf16"), x, InferenceOptions(tile=32, overlap=16))
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert 35 < psnr01(bf16, fp32) < math.inf  # autocast really ran, and stayed close
    with pytest.raises(ValueError, match="precision must be one of"):
        upscale_tensor(TorchRunner(model, precision="fp8"), x)


def test_a_batch_resolves_its_precision_once_not_per_image_or_tile(elan_weights, tmp_path, monkeypatch):
    import litesr.runner

    calls = []
    resolve = litesr.runner.resolve_precision
    monkeypatch.setattr(litesr.runner, "resolve_precision", lambda *a: calls.append(a[2]) or resolve(*a))
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(read_image(LR_IMAGE)[i:i + 40, :48]).save(folder / f"{i}.png")
    assert main(["upscale", str(folder), "-o", str(tmp_path / "out"), "--weights", str(elan_weights), "--tile", "16",
                 "--quiet"]) == 0
    assert calls == ["auto"] and len(list((tmp_path / "out").iterdir())) == 3


def test_the_torch_runner_states_what_the_tiler_needs():
    from litesr.runner import Runner, as_runner

    model = litesr.create_model("hitsrf", 4)
    runner = as_runner(model, "cpu", "fp32")
    assert isinstance(runner, TorchRunner) and isinstance(runner, Runner) and as_runner(runner) is runner
    assert (runner.scale, runner.size_multiple, runner.tile_context) == (4, model.size_multiple, 64)
    assert (runner.device, runner.precision, runner.static_shape) == (torch.device("cpu"), "fp32", False)
    assert (runner.label, runner.arch, runner.runtime) == ("hitsrf", "hitsrf", "")
    with pytest.raises(TypeError, match="nn.Module or a litesr Runner"):
        as_runner("model.pth")


def test_the_cli_takes_the_large_tile_only_where_freed_memory_is_reused(tmp_path, monkeypatch):
    """ELAN-light, SwinIR-light, SPAN and PAN state a larger tile; ``litesr upscale`` takes it where it keeps freed
    blocks for reuse (without reuse, a larger tile cost more per pixel); ESRT states a smaller one, taken either way;
    an explicit --tile always wins, and the Python API keeps its documented default."""
    from litesr import device, tiling
    from litesr.models.esrt import BASE_TILE
    from litesr.models.registry import LARGE_TILE, variant_tiles
    from litesr.runner import as_runner

    from litesr.models.pan import LARGE_TILE as PAN_TILE

    runners = {name: as_runner(litesr.create_model(name, 4)) for name in ("elan-light", "swinir-light", "span",
                                                                           "pan", "grformer", "elan", "esrt")}
    assert {n: r.large_tile for n, r in runners.items()} == {
        "elan-light": LARGE_TILE, "swinir-light": LARGE_TILE, "span": LARGE_TILE, "pan": PAN_TILE, "grformer": 0,
        "elan": 0, "esrt": 0}
    assert variant_tiles("large_tile") == {LARGE_TILE: ["elan-light", "span", "swinir-light"], PAN_TILE: ["pan"]}
    assert variant_tiles("base_tile") == {BASE_TILE: ["esrt"]} and BASE_TILE < tiling.DEFAULT_TILE
    monkeypatch.setattr(device, "_libc", None)
    assert {n: tiling.default_tile(r) for n, r in runners.items()} == {
        **{n: tiling.DEFAULT_TILE for n in runners}, "esrt": BASE_TILE}
    monkeypatch.setattr(device, "_libc", object())
    assert tiling.default_tile(runners["elan-light"]) == LARGE_TILE
    assert tiling.default_tile(runners["grformer"]) == tiling.DEFAULT_TILE
    assert tiling.default_tile(runners["esrt"]) == BASE_TILE

    asked = []
    real = tiling.plan_for
    monkeypatch.setattr(tiling, "plan_for", lambda runner, h, w, tile, overlap: asked.append(tile) or real(
        runner, h, w, tile, overlap))
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((300, 20, 3), np.uint8)).save(image)
    monkeypatch.setattr(device, "_libc", None)  # the CLI's own call decides
    for extra in ([], ["--tile", "64"]):
        assert main(["upscale", str(image), "-o", str(tmp_path / "out.png"), "--arch", "elan-light", "--scale", "4",
                     "--quiet", "--overwrite", *extra]) == 0
    assert asked == [LARGE_TILE if device.freed_memory_reused() else tiling.DEFAULT_TILE, 64]


def test_cli_precision_flag(elan_weights, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["upscale", str(LR_IMAGE), "-o", str(out), "--weights", str(elan_weights), "--precision", "bf16",
                 "--quiet"]) == 0
    with Image.open(out) as img:
        assert img.size == (125 * 4, 120 * 4)
    with pytest.raises(SystemExit):
        main(["upscale", str(LR_IMAGE), "-o", str(out), "--weights", str(elan_weights), "--precision", "int8"])
    assert "invalid choice: 'int8'" in capsys.readouterr().err


def _upscale_one(weights, src, dst, capsys=None) -> Image.Image:
    assert main(["upscale", str(src), "-o", str(dst), "--weights", str(weights), "--quiet"]) == 0
    img = Image.open(dst)
    img.load()
    return img


def test_transparency_is_kept_where_the_format_can_store_it(elan_weights, tmp_path, capsys):
    rgb = read_image(LR_IMAGE)[:16, :20]
    alpha = np.zeros((16, 20), np.uint8)
    alpha[4:12, 5:15] = 255
    src = tmp_path / "logo.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(src)
    out = _upscale_one(elan_weights, src, tmp_path / "logo_x4.png")
    assert out.mode == "RGBA" and out.size == (80, 64)
    a = np.array(out.getchannel("A"))
    assert a[0, 0] == 0 and a[32, 40] == 255  # transparent corner, opaque centre
    capsys.readouterr()
    out = _upscale_one(elan_weights, src, tmp_path / "logo_x4.jpg")
    assert out.mode == "RGB" and "alpha channel was dropped" in capsys.readouterr().err


def test_grayscale_stays_grayscale_and_16_bit_is_scaled_not_clipped(elan_weights, tmp_path):
    gray = read_image(LR_IMAGE)[:16, :20, 1]
    src = tmp_path / "gray.png"
    Image.fromarray(gray).save(src)
    assert _upscale_one(elan_weights, src, tmp_path / "gray_x4.png").mode == "L"

    from litesr.io import read_picture

    deep = tmp_path / "deep.png"
    Image.fromarray((gray.astype(np.uint16) * 257)).save(deep)  # 16-bit PNG of the same picture
    picture = read_picture(deep)
    assert picture.grayscale and np.array_equal(picture.rgb[..., 0], gray)


def test_exif_orientation_is_applied(elan_weights, tmp_path):
    src = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(read_image(LR_IMAGE)[:16, :24]).save(src, exif=exif.tobytes())
    out = _upscale_one(elan_weights, src, tmp_path / "phone_x4.png")
    assert out.size == (16 * 4, 24 * 4)  # upright: portrait


def test_palette_image_with_transparency(elan_weights, tmp_path):
    src = tmp_path / "icon.png"
    img = Image.fromarray(read_image(LR_IMAGE)[:16, :16]).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    img.info["transparency"] = 0
    img.save(src, transparency=0)
    out = _upscale_one(elan_weights, src, tmp_path / "icon_x4.png")
    assert out.mode == "RGBA" and out.size == (64, 64)


def test_self_ensemble_upscale_is_the_mean_of_the_eight_orientations(elan_weights, tmp_path):
    from litesr.device import self_ensemble_forward

    model = litesr.load_model(elan_weights).eval()
    x = image_to_tensor(read_image(LR_IMAGE))[..., :24, :40]
    with torch.inference_mode():
        whole = self_ensemble_forward(model, x)
    out = upscale_tensor(model, x, InferenceOptions(tile=None, self_ensemble=True))
    assert torch.equal(out, whole) and not torch.equal(out, upscale_tensor(model, x, InferenceOptions(tile=None)))
    dst = tmp_path / "e.png"
    assert main(["upscale", str(LR_IMAGE), "-o", str(dst), "--weights", str(elan_weights), "--self-ensemble",
                 "--tile", "64", "--quiet"]) == 0 and dst.exists()


def test_python_upscale_returns_what_it_was_given(elan_weights, tmp_path):
    rgb = read_image(LR_IMAGE)[:16, :20]
    model = litesr.load_model(elan_weights)
    out = litesr.upscale(rgb, model)
    assert isinstance(out, np.ndarray) and out.shape == (64, 80, 3) and out.dtype == np.uint8
    rgba = Image.fromarray(np.dstack([rgb, np.full((16, 20), 128, np.uint8)]))
    pil = litesr.upscale(rgba, str(elan_weights))
    assert isinstance(pil, Image.Image) and pil.mode == "RGBA" and pil.size == (80, 64)
    assert np.array_equal(np.array(pil)[..., :3], out)
    assert litesr.upscale(Image.fromarray(rgb[..., 0]), model).mode == "L"
    src = tmp_path / "in.png"
    Image.fromarray(rgb).save(src)
    assert np.array_equal(litesr.upscale(src, model), out)
    with pytest.raises(ValueError, match="x4 model but x2"):
        litesr.upscale(rgb, model, scale=2)
    with pytest.raises(ValueError, match="uint8"):
        litesr.upscale(rgb.astype(np.float32), model)


def test_python_upscale_defaults_to_the_shipped_model():
    out = litesr.upscale(read_image(LR_IMAGE)[:8, :12])
    assert out.shape == (32, 48, 3)
    assert np.array_equal(litesr.upscale(read_image(LR_IMAGE)[:8, :12], "elan-light", scale=4), out)
    with pytest.raises(FileNotFoundError, match="no default weights for grformer x3"):
        litesr.upscale(read_image(LR_IMAGE)[:8, :12], "grformer", scale=3)


def test_upscale_array_equals_the_float_path(elan_weights):
    from litesr.tiling import upscale_array
    from litesr.io import tensor_to_image

    model = litesr.load_model(elan_weights).eval()
    rgb = read_image(LR_IMAGE)
    for tile in (None, 48):
        options = InferenceOptions(tile=tile, overlap=16)
        expected = tensor_to_image(upscale_tensor(model, image_to_tensor(rgb), options))
        assert np.array_equal(upscale_array(model, rgb, options), expected)


def test_upscale_array_memory_is_the_uint8_output_not_a_float_one():
    from litesr.efficiency import _start_rss_peak
    from litesr.tiling import upscale_array

    rgb = np.random.default_rng(0).integers(0, 256, (768, 768, 3), dtype=np.uint8)  # output 3072²×3: 27 MiB
    before, peak = _start_rss_peak()
    out = upscale_array(NearestX4(), rgb, InferenceOptions(tile=128, overlap=8))
    growth = peak() - before
    assert out.shape == (3072, 3072, 3) and np.array_equal(out[::4, ::4], rgb)
    assert growth < 27 * 2**20 + 40 * 2**20, f"{growth / 2**20:.0f} MiB (a float32 output alone is 108 MiB)"


def test_a_model_that_needs_more_context_gets_it_whatever_overlap_is_asked():

    class Wide(torch.nn.Module):
        scale, size_multiple, tile_context = 4, 16, 48

    tiles = plan_for(Wide(), 300, 300, tile=128, overlap=8)
    inner = [t for t in tiles if t.cy0 > 0 and t.cx0 > 0]
    assert inner and all(t.cy0 - t.y0 >= 48 and t.cx0 - t.x0 >= 48 for t in inner)
    assert litesr.create_model("hitsrf", 4).tile_context == 64
    assert litesr.create_model("elan-light", 4).tile_context == 0


def test_convolutional_models_default_to_less_context_and_an_asked_overlap_wins():
    """IMDN, PAN and SPAN state ``tile_overlap`` (measured enough on photographs: ``CNN_OVERLAP``); the others take
    the tiler's default; an overlap that is asked is used as asked, never below a model's ``tile_context``."""
    from litesr.models.registry import CNN_OVERLAP, variant_tiles
    from litesr.runner import as_runner
    from litesr.tiling import tile_context

    assert CNN_OVERLAP < DEFAULT_OVERLAP
    assert variant_tiles("tile_overlap") == {CNN_OVERLAP: ["imdn", "pan", "span"]}
    contexts = {name: tile_context(as_runner(litesr.create_model(name, 4))) for name in ("imdn", "pan", "span",
                                                                                        "elan-light", "hitsrf")}
    assert contexts == {"imdn": CNN_OVERLAP, "pan": CNN_OVERLAP, "span": CNN_OVERLAP, "elan-light": DEFAULT_OVERLAP,
                        "hitsrf": 64}
    pan = as_runner(litesr.create_model("pan", 4))
    assert tile_context(pan, 24) == 24 and tile_context(pan, 0) == 0
    inner = [t for t in plan_for(pan, 600, 600, tile=256) if t.cy0 > 0]
    assert inner and all(t.cy0 - t.y0 == CNN_OVERLAP for t in inner)
    inner = [t for t in plan_for(pan, 600, 600, tile=256, overlap=16) if t.cy0 > 0]
    assert inner and all(t.cy0 - t.y0 == 16 for t in inner)
