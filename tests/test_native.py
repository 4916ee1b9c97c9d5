"""litesr.ops.native: the compiled window-attention kernels (ELAN's, bf16 and fp32; Swin-type with bias/mask terms)
against float64, the models taking them where named, their build and cache, and every way they fall back (then the
models run their eager path)."""

import os
import platform
import shutil
import subprocess

import pytest
import torch
import torch.nn.functional as F

import litesr
from litesr.models import elan
from litesr.ops import attention, native, policy
from conftest import without_paths

RUNS, RUNS_BF16 = native.window_attention_runs(torch.float32), native.window_attention_runs(torch.bfloat16)
needs_kernel = pytest.mark.skipif(not RUNS, reason=f"fused kernel not available here: {native.status()}")
needs_bf16_kernel = pytest.mark.skipif(not RUNS_BF16, reason=f"no bf16 kernel here: {native.status()}")
builds_here = pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64")
    or not (shutil.which("cc") or shutil.which("gcc")), reason="the kernels build on Linux x86-64 with cc only")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A fresh load (own cache folder); the process's cached load is restored afterwards."""
    monkeypatch.setenv("LITESR_CACHE", str(tmp_path))
    native._kernel_or_reason.cache_clear()
    yield tmp_path
    native._kernel_or_reason.cache_clear()


@builds_here
def test_kernel_runs_where_it_should():
    """On Linux x86-64 with the CPU's flags and a C compiler the kernels build, load and pass their check (else a
    kernel broken so that it fails its check would only skip the tests below): fp32 on every AVX-512 CPU, bf16 too
    where it has AVX-512 BF16."""
    if not native.CPU_FLAGS <= native._cpu_flags() or os.environ.get("LITESR_NATIVE") == "0":
        pytest.skip("no AVX-512 CPU here, or LITESR_NATIVE=0")
    assert RUNS, native.status()
    assert RUNS_BF16 == (native.BF16_CPU_FLAGS <= native._cpu_flags()), native.status()


def _windows(w, n, d, seed=0):
    """Q and V as the strided halves of one (windows, n, 2d) gather, as the GMSA passes them."""
    g = torch.Generator().manual_seed(seed)
    t = (torch.randn(w, n, 2 * d, generator=g) * 0.7).bfloat16()
    return t[..., :d], t[..., d:]


@needs_bf16_kernel
@pytest.mark.parametrize("n,d", [(16, 20), (64, 20), (256, 20), (256, 7), (64, 60), (32, 33), (16, 1)])
def test_kernel_is_as_exact_as_eager_bf16(n, d):
    """Within 1 % of the float64 result, and no further from it than eager bf16 (which rounds the scores)."""
    q, v = _windows(5, n, d)
    ref = native.reference_attention(q, v)
    fused = native.window_attention(q, v).double()
    eager = (torch.softmax(q @ q.transpose(-2, -1), -1) @ v).double()
    scale = ref.abs().max().item()
    assert (fused - ref).abs().max().item() <= 0.01 * scale
    assert (fused - ref).abs().max().item() <= (eager - ref).abs().max().item() + 2 ** -9 * scale


@needs_bf16_kernel
def test_kernel_takes_strided_rows_and_leaves_its_inputs():
    q, v = _windows(3, 32, 20)
    before = q.clone(), v.clone()
    strided = native.window_attention(q, v)
    assert torch.equal(strided, native.window_attention(q.contiguous(), v.contiguous()))
    assert torch.equal(q, before[0]) and torch.equal(v, before[1])


@needs_bf16_kernel
def test_kernel_refuses_what_it_cannot_take():
    q, v = _windows(2, 24, 20)  # 24 tokens: not a multiple of 16
    assert not native.supports(q)
    with pytest.raises(native.NativeUnavailable):
        native.window_attention(q, v)
    q, v = _windows(2, 16, 20)
    assert not native.supports(q.double()) and not native.supports(q.transpose(-2, -1))
    with pytest.raises(native.NativeUnavailable):
        native.window_attention(q.float(), v)  # mixed dtypes


@needs_kernel
@pytest.mark.parametrize("n,d", [(16, 20), (256, 20), (64, 7)])
def test_fp32_kernel_is_elans_attention_to_fp32_rounding(n, d):
    """fp32 windows run the fp32 kernel with K = Q and a zero term: within 2e-6 of float64 (tolerance 2e-5)."""
    g = torch.Generator().manual_seed(0)
    t = torch.randn(5, n, 2 * d, generator=g) * 0.7
    q, v = t[..., :d], t[..., d:]
    ref = native.reference_attention(q, v)
    out = native.window_attention(q, v)
    assert out.dtype == torch.float32 and (out.double() - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()


def test_disabled_by_environment(fresh, monkeypatch):
    monkeypatch.setenv("LITESR_NATIVE", "0")
    assert not native.window_attention_runs() and "LITESR_NATIVE=0" in native.status()


def test_cpu_without_avx512_falls_back(fresh, monkeypatch):
    monkeypatch.setattr(native, "_cpu_flags", lambda: {"avx2", "fma"})
    assert not native.window_attention_runs() and "avx512f" in native.status()


@builds_here
def test_cpu_without_avx512_bf16_gets_the_fp32_kernel(fresh, monkeypatch):
    """AVX-512 without BF16 (an Intel Xeon before Cooper Lake): the fp32-only build, which runs fp32 windows (to
    fp32 rounding) and says why bf16 ones fall back."""
    monkeypatch.setattr(native, "_cpu_flags", lambda: set(native.CPU_FLAGS))
    assert native.window_attention_runs(torch.float32) and not native.window_attention_runs(torch.bfloat16)
    assert "fp32 only" in native.status() and "avx512_bf16" in native.status()
    q, v = _windows(2, 64, 20)
    assert not native.supports(q)
    with pytest.raises(native.NativeUnavailable):
        native.window_attention(q, v)
    q, v = q.float(), v.float()
    ref = native.reference_attention(q, v)
    assert (native.window_attention(q, v).double() - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()


@builds_here
def test_failing_compiler_falls_back_and_leaves_nothing(fresh, monkeypatch):
    monkeypatch.setattr(native, "_cpu_flags", lambda: set(native.CPU_FLAGS))
    monkeypatch.setenv("CC", "false")  # runs, prints nothing, exits 1
    assert not native.window_attention_runs() and "failed" in native.status()
    assert not any((fresh / "native").iterdir())


@builds_here
@pytest.mark.parametrize("how", ["failing compiler", "unwritable cache"])
def test_a_failed_build_is_said_once_in_one_line(fresh, monkeypatch, capsys, how):
    monkeypatch.setattr(native, "_cpu_flags", lambda: set(native.CPU_FLAGS))
    if how == "failing compiler":
        monkeypatch.setenv("CC", "/bin/false")
    else:
        (fresh / "not-a-folder").write_text("")
        monkeypatch.setenv("LITESR_CACHE", str(fresh / "not-a-folder"))
    for _ in range(3):
        assert not native.window_attention_runs()
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "could not be built" in err[0] and "same results" in err[0], err
    assert "C compiler" in err[0] and "LITESR_CACHE" in err[0]


def test_an_unsupported_cpu_says_nothing(fresh, monkeypatch, capsys):
    monkeypatch.setattr(native, "_cpu_flags", lambda: {"avx2", "fma"})
    assert not native.window_attention_runs() and capsys.readouterr().err == ""


@builds_here
def test_unwritable_cache_falls_back(fresh, monkeypatch):
    monkeypatch.setattr(native, "_cpu_flags", lambda: set(native.CPU_FLAGS))
    blocker = fresh / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("LITESR_CACHE", str(blocker))  # the cache folder cannot be made
    assert not native.window_attention_runs() and "could not build" in native.status()


def test_failed_check_falls_back(fresh, monkeypatch):
    if not RUNS:
        pytest.skip(f"fused kernel not available here: {native.status()}")
    monkeypatch.setattr(native, "reference_attention", lambda q, v: torch.ones(q.shape, dtype=torch.float64))
    monkeypatch.setattr(native, "reference_biased_attention", lambda q, *_: torch.ones(q.shape, dtype=torch.float64))
    assert not native.window_attention_runs() and "check" in native.status()


@needs_kernel
def test_built_once_into_the_cache(fresh, monkeypatch):
    assert native.window_attention_runs()
    built = list((fresh / "native").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"
    compiles = []
    run = subprocess.run
    monkeypatch.setattr(native.subprocess, "run", lambda cmd, **kw: compiles.append(cmd) or run(cmd, **kw))
    native._kernel_or_reason.cache_clear()
    assert native.window_attention_runs()
    assert all("--version" in cmd for cmd in compiles)  # the compiler was asked its version, not run on the source
    assert list((fresh / "native").iterdir()) == built


def _fused_windows(dtype):
    """The window sides whose ELAN attention the policy runs in the kernel, in ``dtype``."""
    return [ws for r in policy.POLICY["elan attention"] if r.take == "fused" and dtype in r.dtypes for ws in r.sizes]


def _spy(monkeypatch):
    """Every call of ELAN's attention kernels, as (windows, tokens) where the windows are known."""
    calls = []
    fused, in_rows = native.window_attention, native.window_attention_in_rows
    monkeypatch.setattr(native, "window_attention", lambda q, v, **kw: calls.append(q.shape) or fused(q, v, **kw))
    monkeypatch.setattr(native, "window_attention_in_rows", lambda q, v, table, n, out: calls.append(
        (table.rows.shape[0] // n, n)) or in_rows(q, v, table, n, out))
    return calls


@needs_kernel
def test_elan_runs_the_kernel_where_named(monkeypatch):
    """Every window size the "fused" rule of "elan attention" names, in both the computing and the sharing GMSAs,
    at fp32 inference and at bf16 where the bf16 kernel runs (else none in bf16), never with gradients."""
    calls = _spy(monkeypatch)
    model = litesr.create_model("elan-light", 2).eval()
    img = torch.rand(1, 3, 20, 24)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(img)
    gmsas = sum(isinstance(m, elan.GMSA) for m in model.modules())
    bf16_windows = _fused_windows(torch.bfloat16) if RUNS_BF16 else []
    assert sorted({s[1] for s in calls}) == sorted(ws * ws for ws in bf16_windows)
    assert len(calls) == gmsas * len(bf16_windows)
    calls.clear()
    with torch.inference_mode():
        model(img)  # fp32: through the fp32 kernel
    assert sorted({s[1] for s in calls}) == sorted(ws * ws for ws in _fused_windows(torch.float32))
    assert len(calls) == gmsas * len(_fused_windows(torch.float32))
    calls.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(img).sum()  # gradients on
    assert not calls


@needs_bf16_kernel
def test_kernel_writes_windows_into_their_rows():
    """With ``out``/``out_rows`` the bf16 kernel writes window i's row t into row out_rows[i·N + t] of a column
    slice of a wider map: the rows a gather plus scatter would give, the other columns untouched."""
    q, v = _windows(4, 16, 20)
    rows = torch.randperm(64, generator=torch.Generator().manual_seed(3)).to(torch.int32)
    wide = torch.full((64, 60), 7.0, dtype=torch.bfloat16)
    assert native.window_attention(q, v, out=wide[:, 20:40], out_rows=rows).data_ptr() == wide[:, 20:40].data_ptr()
    expected = torch.empty(64, 20, dtype=torch.bfloat16)
    expected[rows.long()] = native.window_attention(q, v).reshape(64, 20)
    assert torch.equal(wide[:, 20:40], expected)
    assert torch.all(wide[:, :20] == 7.0) and torch.all(wide[:, 40:] == 7.0)
    with pytest.raises(native.NativeUnavailable):  # a row outside the table
        native.window_attention(q, v, out=wide[:32, 20:40], out_rows=rows)


@needs_bf16_kernel
def test_elan_in_place_output_is_the_gathered_one(monkeypatch):
    """bf16 GMSAs with every group fused write into one output ("elan output"): the same bits as scattering each
    group's result back and concatenating, batch of two, shifted blocks."""
    model = litesr.create_model("elan-light", 2).eval()
    img = torch.rand(2, 3, 36, 20, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        in_place = model(img)
        monkeypatch.setitem(policy.POLICY, "elan output", ())
        gathered = model(img)
    assert torch.equal(in_place, gathered)


def test_elan_without_the_kernel_is_the_eager_path(fresh, monkeypatch):
    """Where the kernel does not run, the bf16 forward is the eager path's, bit for bit."""
    model = litesr.create_model("elan-light", 2).eval()
    img = torch.rand(1, 3, 20, 24)
    monkeypatch.setenv("LITESR_NATIVE", "0")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        fallback = model(img)
        without_paths(monkeypatch, "elan attention", "fused")
        eager = model(img)
    assert torch.equal(fallback, eager)


@needs_bf16_kernel
@pytest.mark.parametrize("unit", [None, torch.tensor([4.0, 20.0])])
def test_biased_kernel_in_bf16_is_fp32_attention_of_bf16_inputs(unit):
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(4, 64, 3, 2, 10, generator=g).permute(2, 0, 3, 1, 4).bfloat16()
    terms_t = torch.randn(2, 2, 64, 64, generator=g)
    pattern = torch.tensor([0, 1, 1, 0], dtype=torch.int32)
    out = torch.empty(4, 2, 64, 10, dtype=torch.bfloat16)
    native.biased_window_attention(qkv[0], qkv[1], qkv[2], terms_t, pattern, out, unit)
    ref = native.reference_biased_attention(qkv[0], qkv[1], qkv[2], terms_t, pattern, unit)
    assert (out.double() - ref).abs().max().item() <= 2 ** -8 * ref.abs().max().item()  # one bf16 rounding of y


@needs_kernel
@pytest.mark.parametrize("unit", [None, torch.tensor([1.0, 10.0, 100.0])], ids=["scaled", "cosine"])
@pytest.mark.parametrize("n,d", [(64, 10), (256, 10), (16, 30), (64, 17), (32, 1)])
def test_biased_kernel_is_fp32_exact(n, d, unit):
    """Within 2e-6 of the float64 result relative to its largest value (the conformance tolerance is 2e-5), with
    per-window terms (masked entries -100 below) and Q, K, V as strided views of one (W, N, 3, heads, d) tensor; in
    cosine attention too (Q's and K's rows made unit rows in the kernel, Q's times up to GRFormer's largest 100),
    within 1e-5: logits up to 100 leave fp32 less room, and the official fp32 order (normalise, then Q·Kᵀ) was off
    by 2.3-3.8e-6 on these inputs, the kernel by 2.0-4.6e-6."""
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(5, n, 3, 3, d, generator=g).permute(2, 0, 3, 1, 4)
    terms_t = torch.randn(3, 3, n, n, generator=g) * 3
    terms_t[1] -= 100 * (torch.rand(3, n, n, generator=g) > 0.5)
    pattern = torch.tensor([0, 1, 2, 1, 0], dtype=torch.int32)
    out = torch.empty(5, n, 3, d).transpose(1, 2)
    assert native.biased_window_attention(qkv[0], qkv[1], qkv[2], terms_t, pattern, out, unit) is out
    ref = native.reference_biased_attention(qkv[0], qkv[1], qkv[2], terms_t, pattern, unit)
    assert (out.double() - ref).abs().max().item() <= (2e-6 if unit is None else 1e-5) * ref.abs().max().item()


@needs_kernel
def test_biased_kernel_refuses_what_it_cannot_take():
    q = torch.randn(2, 3, 64, 10)
    terms_t, pattern, out = torch.zeros(1, 3, 64, 64), torch.zeros(2, dtype=torch.int32), torch.empty(2, 3, 64, 10)
    for args in [(q.double(), q, q, terms_t, pattern, out), (q, q, q, terms_t, pattern + 1, out),
                 (q, q, q, terms_t[:, :2], pattern, out), (q[:, :, :48], q[:, :, :48], q[:, :, :48], terms_t, pattern,
                                                           out[:, :, :48]),
                 (q, q, q, terms_t, pattern, out, torch.ones(2)),
                 (q, q, q, terms_t, pattern, out, torch.ones(3).double())]:
        with pytest.raises(native.NativeUnavailable):
            native.biased_window_attention(*args)


@needs_kernel
@pytest.mark.parametrize("shift, with_bias", [(None, True), ((4, 4), True), ((4, 4), False)])
@pytest.mark.parametrize("index_groups", [False, True])
def test_swin_geometry_runs_the_kernel(monkeypatch, shift, with_bias, index_groups):
    """Inference on 8×8 windows (SwinIR-light) takes the compiled kernel: the explicit path's result, each window
    with its own label pattern's mask, across two images; in bf16 and with mixed dtypes too; not with gradients."""
    torch.manual_seed(0)
    geom = attention.WindowGeometry(24, 32, (8, 8), shift, -100.0)  # 3×4 windows an image
    if index_groups:
        geom.groups = [(torch.tensor(range(24 // 8))[r], torch.tensor(range(32 // 8))[c], m) for r, c, m in geom.groups]
    q, k, v = (torch.randn(2 * geom.num_windows, 3, 64, 10) for _ in range(3))
    bias = torch.randn(3, 64, 64) if with_bias else None
    ref = geom.attend(q, k, v, bias, fused=False)
    calls = []
    run = native.biased_window_attention
    monkeypatch.setattr(native, "biased_window_attention", lambda *a: calls.append(1) or run(*a))
    with torch.inference_mode():
        out = geom.attend(q, k, v, bias)
    assert calls and out.shape == v.shape
    assert (out - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = geom.attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), bias)  # the kernel where it runs in bf16
        mixed = geom.attend(q, k, v.bfloat16(), bias)  # GRFormer under autocast: fp32 unit-norm Q, K
    assert low.dtype == torch.bfloat16 and (low.double() - ref).abs().max().item() <= 2 ** -6 * ref.abs().max().item()
    assert mixed.dtype == torch.float32 and len(calls) == (3 if RUNS_BF16 else 2)
    geom.attend(q.requires_grad_(), k, v, bias)
    assert len(calls) == (3 if RUNS_BF16 else 2)


@needs_kernel
def test_fp32_attention_in_rows_is_the_gathered_one():
    """Windows read from and written to rows of token-order maps (column ranges of wider ones): the same bits as
    gathering the windows, the fp32 kernel and scattering back; other columns untouched; a table reaching past the
    map is refused."""
    g = torch.Generator().manual_seed(5)
    maps = torch.randn(128, 50, generator=g) * 0.7
    table = native.RowTable(torch.randperm(128, generator=g))
    wide = torch.full((128, 40), 7.0)
    out = native.window_attention_in_rows(maps[:, 5:25], maps[:, 30:50], table, 64, wide[:, 10:30])
    assert out.data_ptr() == wide[:, 10:30].data_ptr()
    rows = table.rows.long()
    expected = torch.empty(128, 20)
    expected[rows] = native.window_attention(maps[rows, 5:25].view(2, 64, 20),
                                             maps[rows, 30:50].view(2, 64, 20)).reshape(128, 20)
    assert torch.equal(wide[:, 10:30], expected)
    assert torch.all(wide[:, :10] == 7.0) and torch.all(wide[:, 30:] == 7.0)
    with pytest.raises(native.NativeUnavailable):
        native.window_attention_in_rows(maps[:64, 5:25], maps[:64, 30:50], table, 64, wide[:64, 10:30])
    with pytest.raises(native.NativeUnavailable):  # 24 tokens a window: not a multiple of 16
        native.window_attention_in_rows(maps[:96, 5:25], maps[:96, 30:50], native.RowTable(torch.arange(96)), 24,
                                        wide[:96, 10:30])


def _lfe_weights(channels, hidden, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) * 0.3 for shape in ((hidden, channels, 1, 1), (hidden,),
                                                                 (channels, hidden, 1, 1), (channels,))]


@needs_kernel
@pytest.mark.parametrize("shape,hidden,tile", [
    ((1, 60, 37, 53), 120, native.LFE_TILE),  # ELAN-light's widths, tiles cut at the picture's edge
    ((2, 10, 5, 7), 20, (2, 4)),  # a batch, tiles smaller than the picture in both directions
    ((1, 12, 9, 40), 26, (3, 5)),  # widths neither multiples of 5 nor of 16 (the last group holds the rest)
    ((1, 30, 1, 1), 60, native.LFE_TILE),  # one pixel: every shifted neighbour is outside
])
@pytest.mark.parametrize("residual", [False, True])
def test_lfe_kernel_is_the_official_order(shape, hidden, tile, residual):
    """ELAN's LFE in the compiled kernel against the official op sequence in float64 (one-hot depthwise shifts, 1×1
    convs, ReLU; zero entering at the borders): within fp32 rounding, the input untouched."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=torch.channels_last)
    before = x.clone()
    weights = _lfe_weights(shape[1], hidden, seed=2)
    y = native.lfe(x, native.pack_lfe(*weights), residual, tile)
    ref = native.reference_lfe(x, *weights) + (x.double() if residual else 0)
    assert y.is_contiguous(memory_format=torch.channels_last) and y.shape == x.shape
    assert (y.double() - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()
    assert torch.equal(x, before)


@needs_kernel
def test_lfe_kernel_refuses_what_it_cannot_take():
    packed = native.pack_lfe(*_lfe_weights(10, 20, seed=0))
    x = torch.randn(1, 10, 8, 8)
    with pytest.raises(native.NativeUnavailable):  # NCHW, not channels-last
        native.lfe(x, packed)
    with pytest.raises(native.NativeUnavailable):
        native.lfe(x.double().contiguous(memory_format=torch.channels_last), packed)
    with pytest.raises(native.NativeUnavailable):  # weights for another width
        native.lfe(torch.randn(1, 15, 8, 8).contiguous(memory_format=torch.channels_last), packed)


@needs_kernel
def test_elan_fp32_runs_the_fused_lfe_and_rows_as_the_official_function(monkeypatch):
    """At fp32 inference every LFE runs in the compiled kernel and every GMSA reads and writes its rows in place: on
    the conformance weights the output stays within the tolerance of the oneDNN/gathered path, and with gradients
    neither runs."""
    from conftest import TOLERANCE, load_vector, relative_error

    state, tensors, _ = load_vector("elan_light_x4")
    model = litesr.load_model(state).eval()
    x = tensors["input_a"] / 255.0
    lfes = []
    fused = native.lfe
    monkeypatch.setattr(native, "lfe", lambda x, *a, **k: lfes.append(x.shape) or fused(x, *a, **k))
    calls = _spy(monkeypatch)
    with torch.inference_mode():
        fast = model(x)
        assert len(lfes) == sum(isinstance(m, elan.LFE) for m in model.modules())
        assert len(calls) == 3 * sum(isinstance(m, elan.GMSA) for m in model.modules())
        without_paths(monkeypatch, "elan lfe", "fused")
        without_paths(monkeypatch, "elan output", "in rows")
        lfes.clear()
        plain = model(x)
        assert not lfes
    assert relative_error(fast, plain) <= TOLERANCE
    lfes.clear()
    model(x).sum()
    assert not lfes


def _ffn_weights(channels, hidden, k1, k2, seed):
    return native._random_ffn_weights(channels, hidden, k1, k2, torch.Generator().manual_seed(seed))


@needs_kernel
@pytest.mark.parametrize("shape,hidden,sides,tile", [
    ((1, 37, 53, 60), 120, (3, 3), native.FFN_TILE),  # GRFormer's widths; strips cut at the picture's edge
    ((1, 37, 53, 60), 120, (5, 0), (8, 16)),  # HiT-SRF's, chunks and strips smaller than the picture
    ((2, 6, 9, 10), 20, (3, 3), (4, 4)),  # a batch, partial chunks and strips
    ((1, 5, 4, 12), 26, (7, 0), (2, 3)),  # the halo wider than a chunk; widths not multiples of 16
    ((1, 1, 1, 8), 16, (3, 3), native.FFN_TILE),  # one pixel: every neighbour is zero padding
])
def test_conv_ffn_kernel_is_the_official_order(shape, hidden, sides, tile):
    """The ConvFFN in the compiled kernel against the official op sequence in float64 (exact GELU, zero-padded
    depthwise convs): within fp32 rounding, the input untouched."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    before = x.clone()
    weights = _ffn_weights(shape[-1], hidden, *sides, seed=2)
    y = native.conv_ffn(x, native.pack_conv_ffn(*weights), tile)
    ref = native.reference_conv_ffn(x, *weights)
    assert y.shape == x.shape and (y.double() - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()
    assert torch.equal(x, before)


@needs_kernel
@pytest.mark.parametrize("sides", [(5, 0), (3, 3)])
def test_conv_ffn_kernel_adds_its_input_to_the_normed_output(sides):
    """With a LayerNorm given, the kernel ends with HiT-SRF's post-norm residual, x + layer_norm(ConvFFN(x)): within
    fp32 rounding of the float64 official order."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 9, 13, 60, generator=g)
    weights = _ffn_weights(60, 120, *sides, seed=4)
    norm = (torch.randn(60, generator=g), torch.randn(60, generator=g), 1e-5)
    y = native.conv_ffn(x, native.pack_conv_ffn(*weights), (4, 8), norm=norm)
    ref = native.reference_conv_ffn(x, *weights, norm=norm)
    assert (y.double() - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()


@needs_kernel
def test_residual_norm_kernel_is_the_official_order():
    """x + layer_norm(a) in one pass, a a crop of a padded map (HiT-SRF's attention output), widths that are not
    multiples of 16: within fp32 rounding of float64, the inputs untouched."""
    g = torch.Generator().manual_seed(5)
    for c in (60, 7, 16):
        padded = torch.randn(2, 12, 15, c, generator=g)
        a, x = padded[:, :10, :13], torch.randn(2, 10, 13, c, generator=g)
        norm = (torch.randn(c, generator=g), torch.randn(c, generator=g), 1e-5)
        before = padded.clone(), x.clone()
        y = native.residual_norm(x, a, norm)
        ref = x.double() + F.layer_norm(a.double(), (c,), norm[0].double(), norm[1].double(), 1e-5)
        assert (y.double() - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()
        assert torch.equal(padded, before[0]) and torch.equal(x, before[1])
    strided = padded.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)[:, :10, :13]
    with pytest.raises(native.NativeUnavailable):  # a's channels not contiguous
        native.residual_norm(x, strided, norm)
    with pytest.raises(native.NativeUnavailable):
        native.residual_norm(x.double(), a.double(), norm)


@needs_kernel
def test_conv_ffn_kernel_refuses_what_it_cannot_take():
    packed = native.pack_conv_ffn(*_ffn_weights(10, 20, 3, 3, seed=0))
    x = torch.randn(1, 8, 8, 10)
    with pytest.raises(native.NativeUnavailable):
        native.conv_ffn(x.transpose(1, 2), packed)  # not contiguous
    with pytest.raises(native.NativeUnavailable):
        native.conv_ffn(x.double(), packed)
    with pytest.raises(native.NativeUnavailable):
        native.conv_ffn(torch.randn(1, 8, 8, 12), packed)  # weights for another width


@needs_kernel
@pytest.mark.parametrize("vector", ["grformer_light_x4", "hitsrf_x4"])
def test_conv_ffn_models_run_the_compiled_kernel_as_the_official_function(monkeypatch, vector):
    """At fp32 inference every ConvFFN of GRFormer (two 3×3 convs) and HiT-SRF (one 5×5) runs in the compiled kernel:
    on the conformance weights the output stays within the tolerance of the oneDNN path; with gradients it does not
    run."""
    from conftest import TOLERANCE, load_vector, relative_error
    from litesr.models.blocks import ConvFFN

    state, tensors, _ = load_vector(vector)
    model = litesr.load_model(state).eval()
    x = tensors["input_b"]  # 37×53: padded to the window grid
    calls = []
    fused = native.conv_ffn
    monkeypatch.setattr(native, "conv_ffn", lambda x, *a, **k: calls.append(x.shape) or fused(x, *a, **k))
    with torch.inference_mode():
        fast = model(x)
        assert len(calls) == sum(isinstance(m, ConvFFN) for m in model.modules())
        without_paths(monkeypatch, "conv feed-forward", "compiled")
        without_paths(monkeypatch, "post-norm residual", "compiled")
        calls.clear()
        plain = model(x)
        assert not calls
    assert relative_error(fast, plain) <= TOLERANCE


def _pan_weights(channels, outs, seed):
    return native._random_pan_weights(channels, outs, torch.Generator().manual_seed(seed))


@needs_kernel
@pytest.mark.parametrize("shape,factor,outs,tile", [
    ((1, 96, 37, 26), 2, 3, native.PAN_TILE),  # PAN x4's last stage; strips cut at the picture's edge
    ((2, 96, 9, 11), 2, 0, (5, 7)),  # the inner stage (its map out), a batch, partial chunks and strips
    ((1, 24 * 9, 5, 7), 3, 3, (4, 64)),  # x3's one stage
    ((1, 10 * 4, 6, 5), 2, 3, (3, 3)),  # a width that is not a multiple of 16
    ((1, 24, 1, 1), 1, 3, native.PAN_TILE),  # one pixel: every neighbour is zero padding
])
def test_pan_upsampling_kernel_is_the_official_order(shape, factor, outs, tile):
    """PAN's upsampling at the high resolution in the compiled kernel against the official op sequence in float64
    (pixel shuffle, pixel attention, LeakyReLUs, zero-padded 3×3 convs, the bilinear image added): within fp32
    rounding, the inputs untouched."""
    g = torch.Generator().manual_seed(1)
    pre = torch.randn(shape, generator=g).contiguous(memory_format=torch.channels_last)
    channels, h, w = shape[1] // factor ** 2, shape[2] * factor, shape[3] * factor
    base = torch.randn(shape[0], outs, h, w, generator=g) if outs else None
    before = (pre.clone(), None if base is None else base.clone())
    weights = _pan_weights(channels, outs, seed=2)
    y = native.pan_upsampling(pre, factor, native.pack_pan_upsampling(*weights), base, tile)
    ref = native.reference_pan_upsampling(pre, factor, *weights, base)
    assert y.shape == ref.shape and (y.double() - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()
    assert y.is_contiguous() if outs else y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(pre, before[0]) and (base is None or torch.equal(base, before[1]))


@needs_kernel
def test_pan_upsampling_kernel_refuses_what_it_cannot_take():
    last = native.pack_pan_upsampling(*_pan_weights(10, 3, seed=0))
    pre = torch.randn(1, 40, 6, 6).contiguous(memory_format=torch.channels_last)
    with pytest.raises(native.NativeUnavailable):  # NCHW, not channels-last
        native.pan_upsampling(pre.contiguous(), 2, last)
    with pytest.raises(native.NativeUnavailable):
        native.pan_upsampling(pre.double(), 2, last)
    with pytest.raises(native.NativeUnavailable):  # 40 channels are not 10 shuffled by 3
        native.pan_upsampling(pre, 3, last)
    with pytest.raises(native.NativeUnavailable):  # an image of another size
        native.pan_upsampling(pre, 2, last, torch.randn(1, 3, 12, 11))
    with pytest.raises(native.NativeUnavailable):  # an image to add, but no conv_last to add it to
        native.pan_upsampling(pre, 2, native.pack_pan_upsampling(*_pan_weights(10, 0, seed=0)),
                              torch.randn(1, 3, 12, 12))


def _scpa_weights(channels, width, seed):
    return native._random_scpa_weights(channels, width, torch.Generator().manual_seed(seed))


@needs_kernel
@pytest.mark.parametrize("shape,width,tile", [
    ((1, 40, 37, 53), 20, native.SCPA_TILE),  # PAN's widths; strips cut at the picture's edge
    ((2, 8, 9, 11), 4, (4, 5)),  # a batch, partial chunks and strips narrower than a vector
    ((1, 30, 20, 35), 24, (7, 16)),  # the widest branch, conv3's outputs in two groups, the last partial
    ((1, 40, 1, 1), 20, native.SCPA_TILE),  # one pixel: every neighbour is zero padding
])
def test_scpa_kernel_is_the_official_order(shape, width, tile):
    """PAN's SCPA block in the compiled kernel against the official op sequence in float64 (1×1 and zero-padded 3×3
    convs, LeakyReLUs, the pixel-attention gate, the residual add): within fp32 rounding, the input untouched."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    before = x.clone()
    weights = _scpa_weights(shape[1], width, seed=2)
    y = native.scpa(x, native.pack_scpa(*weights), tile)
    ref = native.reference_scpa(x, *weights)
    assert y.shape == x.shape and y.is_contiguous()
    assert (y.double() - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()
    assert torch.equal(x, before)


@needs_kernel
def test_scpa_kernel_refuses_what_it_cannot_take():
    packed = native.pack_scpa(*_scpa_weights(8, 4, seed=0))
    x = torch.randn(1, 8, 6, 6)
    with pytest.raises(native.NativeUnavailable):  # channels-last, not NCHW
        native.scpa(x.contiguous(memory_format=torch.channels_last), packed)
    with pytest.raises(native.NativeUnavailable):
        native.scpa(x.double(), packed)
    with pytest.raises(native.NativeUnavailable):  # weights for another width
        native.scpa(torch.randn(1, 10, 6, 6), packed)


@needs_kernel
@pytest.mark.parametrize("scale", [2, 4])
def test_pan_fp32_runs_the_kernels_as_the_official_function(monkeypatch, scale):
    """At fp32 inference every SCPA block and every upsampling stage of PAN (the last with conv_last) runs in the
    compiled kernels: the output stays within the tolerance of the oneDNN path, and with gradients neither runs."""
    from conftest import TOLERANCE, relative_error

    torch.manual_seed(scale)
    model = litesr.create_model("pan", scale).eval()
    x = torch.rand(1, 3, 13, 10)
    calls = []
    for name in ("pan_upsampling", "scpa"):
        fused = getattr(native, name)
        monkeypatch.setattr(native, name, lambda t, *a, name=name, fused=fused, **k: calls.append(name)
                            or fused(t, *a, **k))
    with torch.inference_mode():
        fast = model(x)
        assert calls.count("pan_upsampling") == (2 if scale == 4 else 1)
        assert calls.count("scpa") == len(model.SCPA_trunk)
        without_paths(monkeypatch, "pan upsampling", "compiled")
        without_paths(monkeypatch, "pan trunk", "compiled")
        calls.clear()
        plain = model(x)
        assert not calls
    assert relative_error(fast, plain) <= TOLERANCE
    model(x).sum()
    assert not calls
