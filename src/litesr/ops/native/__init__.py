"""Kernels litesr compiles on the user's machine when it can, and the eager path it falls back to when it cannot.

Window attention, fused, for CPUs with AVX-512 (``window_attention.c``; the bf16 kernels need AVX-512 BF16 too, and
a CPU without it gets the fp32 kernels only):

* :func:`window_attention`: ELAN's ``softmax(Q·Qᵀ)·V`` per window, bf16 (``vdpbf16ps``) or fp32;
* :func:`window_attention_in_rows`: the same in fp32, each window's rows read from and written to maps in token
  order (a GMSA's projection and output), through a :class:`RowTable`;
* :func:`biased_window_attention`: Swin-type ``softmax(Q·Kᵀ + T)·V`` per window and head, T the window's bias/mask
  term (SwinIR-light, GRFormer, HiT-SRF), fp32 or bf16 inputs computed in fp32.

Convolution blocks, fused, fp32, for CPUs with AVX-512 (a tile of pixels through every layer while its hidden map
stays in cache; ``row_gemm.h`` holds their register-blocked 1×1 convs, ``vector_math.h`` the exp and GELU):

* :func:`lfe`: ELAN's two shift-convs with the ReLU between and the residual add (``shift_conv.c``);
* :func:`conv_ffn`: GRFormer's and HiT-SRF's ConvFFN, fc1 + GELU, the depthwise branch, fc2 (``conv_ffn.c``);
* :func:`pan_upsampling`: the high-resolution half of a PAN upsampling stage, pixel shuffle, pixel attention,
  HRconv and, in the last stage, conv_last and the bilinear image (``pan_upsampling.c``);
* :func:`scpa`: PAN's trunk block, its five convolutions, pixel attention and residual add (``scpa.c``);
* :func:`residual_norm`: ``x + layer_norm(a)``, HiT-SRF's post-norm residual, in one pass (``conv_ffn.c``, whose
  kernel ends with the same where asked).

PyTorch has no CPU op that fuses the two matmuls with the softmax, and its softmax computes an fp32-accurate exp
over a map written out and read back: in the bf16 ELAN-light forward at LR 256², the 16×16 windows' softmax took
4.5 of a computing GMSA's 7.4 ms. The kernels keep a block of 16 query rows in vector lanes, take the exp from a
polynomial (relative error ~2e-7; bf16's step is 4e-3) and write no map.

On first use the C sources (shipped in the package) are compiled with the machine's C compiler (``$CC``, else
``cc`` or ``gcc``; a few seconds) into one library in litesr's cache folder (:func:`litesr.paths.cache_dir`), keyed
by the sources, the flags and the compiler, loaded with ctypes and checked against a float64 reference. Linked
with ``-fopenmp``, the library resolves ``libgomp.so.1`` to the copy PyTorch has already loaded, so it runs on
PyTorch's threads (``torch.get_num_threads()``). Where any of this is missing — another OS or CPU, no compiler, a
failed check, or ``LITESR_NATIVE=0`` — :func:`window_attention_runs` and :func:`conv_kernels_run` are false and
the models run their eager path; :func:`status` says why.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from ...paths import cache_dir

#: The C sources, compiled into one library, and the headers they include.
SOURCES = tuple(Path(__file__).with_name(name) for name in ("window_attention.c", "shift_conv.c", "conv_ffn.c",
                                                                 "pan_upsampling.c", "scpa.c"))
HEADERS = tuple(Path(__file__).with_name(name) for name in ("row_gemm.h", "vector_math.h"))
#: Compiler flags of the fp32-only build; :data:`BF16_FLAGS` add the bf16 kernels.
FLAGS = ("-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mfma", "-fopenmp", "-shared", "-fPIC",
         "-Werror=implicit-function-declaration")
BF16_FLAGS = (*FLAGS, "-mavx512bf16")
#: /proc/cpuinfo flags the fp32 kernel's instructions need; the bf16 kernels need :data:`BF16_CPU_FLAGS` as well.
CPU_FLAGS = frozenset({"avx512f", "avx512bw", "avx512vl", "fma"})
BF16_CPU_FLAGS = frozenset({"avx512_bf16"})
#: Token counts (window size²) must be a multiple of this; head widths at most MAX_WIDTH.
TOKEN_MULTIPLE, MAX_WIDTH = 16, 64


class NativeUnavailable(RuntimeError):
    """The fused kernel cannot run here; the message says why."""


class BuildFailed(NativeUnavailable):
    """The machine could run the kernels but they could not be built (no compiler, a failing one, an unwritable
    cache): worth one line to the user, who can fix it."""


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _compiler() -> str:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise BuildFailed("no C compiler was found")


def _build(compiler: str, flags: tuple[str, ...]) -> Path:
    """The library compiled with ``flags`` in the cache, built now if it is not there yet."""
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildFailed(f"the C compiler {compiler} does not run: {exc}") from exc
    key = hashlib.sha256(b"".join(s.read_bytes() for s in (*SOURCES, *HEADERS)) + " ".join(flags).encode()
                         + compiler.encode() + version.encode())
    target = cache_dir() / "native" / f"kernels-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        done = subprocess.run([compiler, *flags, *map(str, SOURCES), "-o", tmp], capture_output=True, text=True,
                              timeout=300)
        if done.returncode:
            detail = done.stderr.strip().splitlines()[-1][:200] if done.stderr.strip() else f"exit {done.returncode}"
            raise BuildFailed(f"{compiler} failed on {', '.join(s.name for s in SOURCES)} ({detail})")
        os.replace(tmp, target)  # atomic: a concurrent build of the same key writes the same file
    except (OSError, subprocess.SubprocessError) as exc:  # an unwritable cache, a compiler that hangs
        raise BuildFailed(f"could not build the kernels into {target.parent}: {exc}") from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load():
    if os.environ.get("LITESR_NATIVE", "1") == "0":
        raise NativeUnavailable("disabled by LITESR_NATIVE=0")
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise NativeUnavailable(f"built for Linux x86-64 only, not {platform.system()} {platform.machine()}")
    flags = _cpu_flags()
    missing = CPU_FLAGS - flags
    if missing:
        raise NativeUnavailable(f"the CPU lacks {', '.join(sorted(missing))}")
    with_bf16 = BF16_CPU_FLAGS <= flags
    try:
        library = ctypes.CDLL(str(_build(_compiler(), BF16_FLAGS if with_bf16 else FLAGS)))
    except OSError as exc:
        raise NativeUnavailable(f"the compiled kernel does not load: {exc}") from exc
    bf16 = None
    if with_bf16:
        bf16 = library.window_attention_bf16
        bf16.restype = ctypes.c_int
        bf16.argtypes = ([ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] * 3 + [ctypes.c_void_p]
                         + [ctypes.c_int64] * 3 + [ctypes.c_int])
    biased = {}
    for dtype, name in ((torch.float32, "biased_window_attention_f32"),
                        (torch.bfloat16, "biased_window_attention_bf16")):
        if dtype == torch.bfloat16 and not with_bf16:
            continue
        kernel = biased[dtype] = getattr(library, name)
        kernel.restype = ctypes.c_int
        kernel.argtypes = ([ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)] * 3 + [ctypes.c_void_p] * 4
                           + [ctypes.POINTER(ctypes.c_int64)] + [ctypes.c_int64] * 4 + [ctypes.c_int])
    lfe = library.lfe_f32
    lfe.restype = ctypes.c_int
    lfe.argtypes = ([ctypes.c_void_p] * 2 + [ctypes.c_int64] * 6 + [ctypes.c_void_p] * 2 + [ctypes.c_int64]
                    + [ctypes.c_void_p] * 2 + [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int])
    gathered = library.elan_window_attention_f32
    gathered.restype = ctypes.c_int
    gathered.argtypes = ([ctypes.c_void_p, ctypes.c_int64] * 2 + [ctypes.c_void_p] * 2
                         + [ctypes.c_int64] * 4 + [ctypes.c_int])
    ffn = library.conv_ffn_f32
    ffn.restype = ctypes.c_int
    ffn.argtypes = ([ctypes.c_void_p] * 2 + [ctypes.c_int64] * 5 + [ctypes.c_void_p] * 2
                    + ([ctypes.c_int64] + [ctypes.c_void_p] * 2) * 2 + [ctypes.c_int64] + [ctypes.c_void_p] * 4
                    + [ctypes.c_float] + [ctypes.c_int64] * 2 + [ctypes.c_int])
    pan = library.pan_upsampling_f32
    pan.restype = ctypes.c_int
    pan.argtypes = ([ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 5
                    + [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 3 + [ctypes.c_int])
    scpa = library.scpa_f32
    scpa.restype = ctypes.c_int
    scpa.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 5 + [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 2 + [
        ctypes.c_int]
    norm = library.residual_norm_f32
    norm.restype = None
    norm.argtypes = ([ctypes.c_void_p] + [ctypes.c_int64] * 2 + [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 4
                     + [ctypes.c_void_p] * 2 + [ctypes.c_float, ctypes.c_int])
    return bf16, biased, lfe, gathered, ffn, pan, scpa, norm


def reference_attention(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(Q·Qᵀ)·V`` per window in float64: what the kernel is checked against."""
    q, v = q.double(), v.double()
    return torch.softmax(q @ q.transpose(-2, -1), -1) @ v


#: The kernel's largest error against :func:`reference_attention`, relative to the reference's largest magnitude,
#: that the load check accepts: on its random windows the kernel is off by 0.36 %, eager bf16 (scores rounded to
#: bf16 before the softmax) by 0.37 %.
CHECK_TOLERANCE = 0.01


def reference_biased_attention(q, k, v, terms_t, pattern, unit=None):
    """``softmax(Q·Kᵀ + T)·V`` per window and head in float64, T the window's term (``terms_t`` holds Tᵀ); with
    ``unit`` (one scale per head), of Q's and K's rows made unit rows, Q's times ``unit``."""
    q, k, v = q.double(), k.double(), v.double()
    if unit is not None:
        q = F.normalize(q, dim=-1) * unit.double()[:, None, None]
        k = F.normalize(k, dim=-1)
    terms = terms_t.double().transpose(-2, -1)[pattern.long()]  # (W, H, N, N)
    return torch.softmax(q @ k.transpose(-2, -1) + terms, -1) @ v


@lru_cache(maxsize=None)
def _kernel_or_reason():
    """((ELAN's bf16 kernel or None, {dtype: Swin-type kernel}), "compiled and checked…") or (None, why not)."""
    try:
        kernels = _load()
    except BuildFailed as exc:  # said once per process (this function is cached), in one line
        print(f"litesr: note: the compiled attention kernels could not be built ({exc}); running PyTorch's own "
              "path instead, with the same results, only slower. To fix it install a C compiler (gcc) or set CC, "
              "and make the cache folder writable (or set LITESR_CACHE); LITESR_NATIVE=0 silences this",
              file=sys.stderr, flush=True)
        return None, str(exc)
    except NativeUnavailable as exc:
        return None, str(exc)
    g = torch.Generator().manual_seed(0)
    t = (torch.randn(3, 32, 40, generator=g) * 0.7).to(torch.bfloat16)
    q, v = t[..., :20], t[..., 20:]  # strided halves, as the GMSA passes them
    errors = []
    if kernels[0] is not None:
        y = torch.empty(3, 32, 20, dtype=torch.bfloat16)
        _call(kernels[0], q, v, y)
        ref = reference_attention(q, v)
        errors.append((y.double() - ref).abs().max().item() / ref.abs().max().item())
    terms_t = torch.randn(2, 2, 32, 32, generator=g)
    pattern = torch.tensor([1, 0], dtype=torch.int32)
    qkv = torch.randn(2, 32, 3, 2, 10, generator=g).permute(2, 0, 3, 1, 4)  # (3, W, heads, N, d) views, as Swin's
    for dtype, scale in ((torch.float32, F32_CHECK_SCALE), (torch.bfloat16, 1.0)):
        if dtype not in kernels[1]:
            continue
        qkv = qkv.to(dtype)
        for unit in (None, torch.tensor([3.0, 10.0])):  # scaled Q and K; cosine attention, as GRFormer's
            out = torch.empty(2, 2, 32, 10, dtype=dtype)
            _call_biased(kernels[1][dtype], qkv[0], qkv[1], qkv[2], terms_t, pattern, out, unit)
            ref = reference_biased_attention(qkv[0], qkv[1], qkv[2], terms_t, pattern, unit)
            errors.append((out.double() - ref).abs().max().item() / ref.abs().max().item() / scale)
    maps = torch.randn(64, 50, generator=g)  # two windows of 32 tokens gathered from a 64-row map, in place
    rows = torch.randperm(64, generator=g).to(torch.int32)
    out = torch.full((64, 30), float("nan"))
    _call_gathered(kernels[3], maps[:, :20], maps[:, 30:], rows, out[:, 5:25], 32)
    ref = reference_attention(maps[rows.long(), :20].view(2, 32, 20), maps[rows.long(), 30:].view(2, 32, 20))
    got = out[rows.long(), 5:25].view(2, 32, 20)
    errors.append((got.double() - ref).abs().max().item() / ref.abs().max().item() / F32_CHECK_SCALE)
    tokens = torch.randn(2, 6, 9, 10, generator=g)
    for kernels_sizes, norm in (((3, 3), None), ((5, 0), (torch.randn(10, generator=g), torch.randn(10, generator=g),
                                                            1e-5))):  # GRFormer's branch, HiT-SRF's with its norm
        weights = _random_ffn_weights(10, 20, *kernels_sizes, g)
        y = _call_ffn(kernels[4], tokens, pack_conv_ffn(*weights), (4, 4), norm)  # tiles cut through the picture
        ref = reference_conv_ffn(tokens, *weights, norm=norm)
        errors.append((y.double() - ref).abs().max().item() / ref.abs().max().item() / F32_CHECK_SCALE)
    x = torch.randn(2, 10, 5, 7, generator=g).contiguous(memory_format=torch.channels_last)
    weights = [torch.randn(shape, generator=g) for shape in ((20, 10, 1, 1), (20,), (10, 20, 1, 1), (10,))]
    y = _call_lfe(kernels[2], x, pack_lfe(*weights), True, (2, 4))  # tiles cut through the picture, some partial
    ref = reference_lfe(x, *weights) + x.double()
    errors.append((y.double() - ref).abs().max().item() / ref.abs().max().item() / F32_CHECK_SCALE)
    pre = torch.randn(2, 20, 3, 4, generator=g).contiguous(memory_format=torch.channels_last)
    for last in (False, True):  # an inner stage, the last one; tiles cut through the picture
        weights = _random_pan_weights(5, 3 if last else 0, g)
        base = torch.randn(2, 3, 6, 8, generator=g) if last else None
        y = _call_pan(kernels[5], pre, 2, pack_pan_upsampling(*weights), base, (4, 3))
        ref = reference_pan_upsampling(pre, 2, *weights, base)
        errors.append((y.double() - ref).abs().max().item() / ref.abs().max().item() / F32_CHECK_SCALE)
    a = torch.randn(2, 6, 9, 10, generator=g)[:, 1:5, 2:8]  # a crop, as HiT-SRF's of its padded map
    norm = (torch.randn(10, generator=g), torch.randn(10, generator=g), 1e-5)
    y = _call_residual_norm(kernels[7], tokens[:, :4, :6].contiguous(), a, norm)
    ref = tokens[:, :4, :6].double() + F.layer_norm(a.double(), (10,), norm[0].double(), norm[1].double(), norm[2])
    errors.append((y.double() - ref).abs().max().item() / ref.abs().max().item() / F32_CHECK_SCALE)
    x = torch.randn(2, 8, 5, 21, generator=g)
    weights = _random_scpa_weights(8, 4, g)
    y = _call_scpa(kernels[6], x, pack_scpa(*weights), (2, 16))
    ref = reference_scpa(x, *weights)
    errors.append((y.double() - ref).abs().max().item() / ref.abs().max().item() / F32_CHECK_SCALE)
    if not max(errors) <= CHECK_TOLERANCE:
        listed = ", ".join(f"{e:.3g}" for e in errors)
        return None, f"the compiled kernels failed their check (relative errors {listed})"
    if kernels[0] is None:
        missing = ", ".join(sorted(BF16_CPU_FLAGS - _cpu_flags()))
        return kernels, f"compiled and checked, fp32 only (the CPU lacks {missing})"
    return kernels, "compiled and checked"


#: The fp32 kernel's error is checked against CHECK_TOLERANCE × this (fp32 rounding, not bf16's).
F32_CHECK_SCALE = 1e-4


def _call(kernel, q: torch.Tensor, v: torch.Tensor, y: torch.Tensor, out_rows: torch.Tensor | None = None) -> None:
    w, n, d = q.shape
    if kernel(q.data_ptr(), q.stride(0), q.stride(1), v.data_ptr(), v.stride(0), v.stride(1), y.data_ptr(),
              y.stride(0), y.stride(-2), None if out_rows is None else out_rows.data_ptr(), w, n, d,
              torch.get_num_threads()):
        raise MemoryError("window_attention_bf16: no scratch memory")


def _strides(t: torch.Tensor):
    return (ctypes.c_int64 * 3)(*t.stride()[:3])


def _call_biased(kernel, q, k, v, terms_t, pattern, out, unit=None) -> None:
    w, heads, n, d = q.shape
    if kernel(q.data_ptr(), _strides(q), k.data_ptr(), _strides(k), v.data_ptr(), _strides(v), terms_t.data_ptr(),
              pattern.data_ptr(), _pointer(unit), out.data_ptr(), _strides(out), w, heads, n, d,
              torch.get_num_threads()):
        raise MemoryError("biased_window_attention: no scratch memory")


def reference_lfe(x: torch.Tensor, w0: torch.Tensor, b0: torch.Tensor, w1: torch.Tensor,
                  b1: torch.Tensor) -> torch.Tensor:
    """ELAN's LFE in float64, the official op sequence: conv1x1(shift(relu(conv1x1(shift(x))))), shift the
    one-hot depthwise conv. What :func:`lfe` is checked against."""
    from ..conv import depthwise_shift, one_hot_shift_kernel

    x, w0, b0, w1, b1 = (t.double() for t in (x, w0, b0, w1, b1))
    hidden = F.relu(F.conv2d(depthwise_shift(x, one_hot_shift_kernel(x.shape[1])), w0, b0))
    return F.conv2d(depthwise_shift(hidden, one_hot_shift_kernel(hidden.shape[1])), w1, b1)


#: Rows and columns of one work item of :func:`lfe`: a strip of 64 columns going down 64 rows, its rings of three
#: input and hidden rows (ELAN-light: 68 × 60 and 66 × 128 floats each, 0.15 MB) in a core's L2.
LFE_TILE = (64, 64)


def _padded_columns(t: torch.Tensor, width: int) -> torch.Tensor:
    """``t`` (a vector, or a matrix by its columns) as fp32, contiguous, zero-padded to ``width`` columns."""
    return F.pad(t.detach().float(), (0, width - t.shape[-1])).contiguous()


def _packed_pair(w_in: torch.Tensor, b_in: torch.Tensor, w_out: torch.Tensor, b_out: torch.Tensor) -> tuple:
    """Two 1×1 layers, channels → hidden → channels ((out, in) or (out, in, 1, 1) weights), as the row GEMMs of the
    convolution kernels take them: (W_inᵀ (C, hp), b_in (hp), W_outᵀ (hp, cp), b_out (cp)), fp32, contiguous, the
    hidden and output widths zero-padded to hp and cp, multiples of 16."""
    hidden, channels = w_in.shape[:2]
    hp, cp = -(-hidden // 16) * 16, -(-channels // 16) * 16
    w_out_t = _padded_columns(w_out.reshape(channels, hidden).t(), cp)
    return (_padded_columns(w_in.reshape(hidden, channels).t(), hp), _padded_columns(b_in, hp),
            F.pad(w_out_t, (0, 0, 0, hp - hidden)).contiguous(), _padded_columns(b_out, cp))


def pack_lfe(w0: torch.Tensor, b0: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor) -> tuple:
    """The two 1×1 convs' (out, in, 1, 1) weights and biases as :func:`lfe` takes them (:func:`_packed_pair`),
    after the hidden width."""
    return (w0.shape[0], *_packed_pair(w0, b0, w1, b1))


def _call_lfe(kernel, x: torch.Tensor, packed: tuple, residual: bool, tile: tuple[int, int]) -> torch.Tensor:
    b, c, h, w = x.shape
    hid, w0t, b0, w1t, b1 = packed
    y = torch.empty_like(x, memory_format=torch.channels_last)
    if kernel(x.data_ptr(), y.data_ptr(), b, h, w, c, hid, w0t.shape[1], w0t.data_ptr(), b0.data_ptr(),
              w1t.shape[1], w1t.data_ptr(), b1.data_ptr(), int(residual), *tile, torch.get_num_threads()):
        raise MemoryError("lfe_f32: no scratch memory")
    return y


def _call_gathered(kernel, q: torch.Tensor, v: torch.Tensor, rows: torch.Tensor, out: torch.Tensor, n: int) -> None:
    if kernel(q.data_ptr(), q.stride(0), v.data_ptr(), v.stride(0), rows.data_ptr(), out.data_ptr(), out.stride(0),
              rows.shape[0] // n, n, q.shape[1], torch.get_num_threads()):
        raise MemoryError("elan_window_attention_f32: no scratch memory")


class RowTable:
    """Rows of a map, as an int32 table the kernels index with, checked once: ``end`` is one past the largest."""

    def __init__(self, rows: torch.Tensor) -> None:
        if rows.dim() != 1 or (rows.numel() and int(rows.min()) < 0):
            raise ValueError("a row table is one-dimensional and holds no negative rows")
        self.rows = rows.to(torch.int32).contiguous()
        self.end = int(rows.max()) + 1 if rows.numel() else 0


def window_attention_in_rows(q: torch.Tensor, v: torch.Tensor, table: RowTable, n: int,
                             out: torch.Tensor) -> torch.Tensor:
    """``softmax(Q·Qᵀ)·V`` (ELAN's attention) over windows of ``n`` tokens that sit in rows of maps in token order,
    fp32: token i of window w is row ``table.rows[w·n + i]`` of the (R, d) ``q``, ``v`` and ``out`` (rows may be
    strided, columns not: e.g. column ranges of a GMSA's projection and of its output map). Writes ``out``, returns
    it; no windowed copy is made. Only where :func:`window_attention_runs` (fp32) says so."""
    kernels = _kernel_or_reason()[0]
    if (kernels is None or not all(t.dtype == torch.float32 and t.device.type == "cpu" and t.dim() == 2
                                   and t.stride(1) == 1 and t.shape == q.shape for t in (q, v, out))
            or not fits(n, q.shape[1]) or table.rows.shape[0] % n or table.end > q.shape[0]):
        raise NativeUnavailable(f"window_attention_in_rows: not for {tuple(q.shape)} {q.dtype}, windows of {n} "
                                f"here ({status()})")
    _call_gathered(kernels[3], q, v, table.rows, out, n)
    return out


def _random_ffn_weights(channels: int, hidden: int, k1: int, k2: int, g: torch.Generator) -> list:
    shapes = [(hidden, channels), (hidden,), (hidden, 1, k1, k1), (hidden,)]
    shapes += [(hidden, 1, k2, k2), (hidden,)] if k2 else []
    weights = [torch.randn(shape, generator=g) * 0.4 for shape in (*shapes, (channels, hidden), (channels,))]
    return weights if k2 else weights[:4] + [None, None] + weights[4:]


def reference_conv_ffn(x: torch.Tensor, w1, b1, dw1, db1, dw2, db2, w2, b2, norm=None) -> torch.Tensor:
    """The ConvFFN of GRFormer (``dw2`` given) and HiT-SRF (``dw2`` None) in float64, the official op sequence on
    (B, H, W, C) tokens: ``h = gelu(fc1(x)); h + dw2(gelu(dw1(h)))`` or ``h + gelu(dw1(h))``; then fc2. With
    ``norm`` (weight, bias, eps): ``x + layer_norm(·)``, HiT-SRF's post-norm residual."""
    x, w1, b1, dw1, db1, w2, b2 = (t.double() for t in (x, w1, b1, dw1, db1, w2, b2))
    h = F.gelu(F.linear(x, w1, b1)).permute(0, 3, 1, 2)
    branch = F.gelu(F.conv2d(h, dw1, db1, padding=dw1.shape[-1] // 2, groups=h.shape[1]))
    if dw2 is not None:
        branch = F.conv2d(branch, dw2.double(), db2.double(), padding=dw2.shape[-1] // 2, groups=h.shape[1])
    y = F.linear((h + branch).permute(0, 2, 3, 1), w2, b2)
    if norm is None:
        return y
    return x + F.layer_norm(y, (y.shape[-1],), norm[0].double(), norm[1].double(), norm[2])


#: Rows and columns of one work item of :func:`conv_ffn`: a strip of 128 columns going down 64 rows, its rings of
#: hidden rows (GRFormer: 5 and 3 rows of 132 and 130 pixels × 128 channels, 0.54 MB) in a core's L2.
FFN_TILE = (64, 128)


def pack_conv_ffn(w1, b1, dw1, db1, dw2, db2, w2, b2) -> tuple:
    """A ConvFFN's weights as :func:`conv_ffn` takes them: fp32, contiguous, transposed, depthwise taps one row per
    tap, the hidden and output widths padded with zeros to multiples of 16 (``dw2`` None: no second conv)."""
    w1t, b1p, w2t, b2p = _packed_pair(w1, b1, w2, b2)
    hidden, hp = w1.shape[0], w1t.shape[1]

    def taps(w):  # (hidden, 1, k, k) -> (k·k, hp)
        return _padded_columns(w.reshape(hidden, -1).t(), hp)

    return (hp, w1t, b1p, dw1.shape[-1], taps(dw1), _padded_columns(db1, hp),
            0 if dw2 is None else dw2.shape[-1], None if dw2 is None else taps(dw2),
            None if db2 is None else _padded_columns(db2, hp), w2t.shape[1], w2t, b2p)


def _pointer(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _call_ffn(kernel, x: torch.Tensor, packed: tuple, tile: tuple[int, int], norm: tuple | None = None) -> torch.Tensor:
    b, h, w, c = x.shape
    hp, w1t, b1, k1, dw1, db1, k2, dw2, db2, cp, w2t, b2 = packed
    ln_w, ln_b, eps = (None, None, 0.0) if norm is None else (
        norm[0].detach().float().contiguous(), norm[1].detach().float().contiguous(), float(norm[2]))
    y = torch.empty_like(x)
    if kernel(x.data_ptr(), y.data_ptr(), b, h, w, c, hp, w1t.data_ptr(), b1.data_ptr(), k1, dw1.data_ptr(),
              db1.data_ptr(), k2, _pointer(dw2), _pointer(db2), cp, w2t.data_ptr(), b2.data_ptr(), _pointer(ln_w),
              _pointer(ln_b), eps, *tile, torch.get_num_threads()):
        raise MemoryError("conv_ffn_f32: no scratch memory")
    return y


def conv_ffn(x: torch.Tensor, packed: tuple, tile: tuple[int, int] = FFN_TILE, norm: tuple | None = None
             ) -> torch.Tensor:
    """GRFormer's or HiT-SRF's ConvFFN (:func:`reference_conv_ffn`), fused, for fp32 (B, H, W, C) contiguous CPU
    tokens and the weights :func:`pack_conv_ffn` made; with ``norm`` (a LayerNorm's weight, bias and eps over the C
    channels) ``x + layer_norm(ConvFFN(x))``. Returns new tokens. Only where :func:`conv_kernels_run` says so."""
    kernels = _kernel_or_reason()[0]
    if (kernels is None or x.dtype != torch.float32 or x.device.type != "cpu" or x.dim() != 4
            or not x.is_contiguous() or packed[1].shape[0] != x.shape[-1]):
        raise NativeUnavailable(f"conv_ffn: not for {tuple(x.shape)} {x.dtype} here ({status()})")
    if norm is not None and (norm[0].shape != (x.shape[-1],) or norm[1].shape != (x.shape[-1],)):
        raise NativeUnavailable(f"conv_ffn: a norm of {tuple(norm[0].shape)} for {x.shape[-1]} channels")
    return _call_ffn(kernels[4], x, packed, tile, norm)


def _random_pan_weights(channels: int, outs: int, g: torch.Generator) -> list:
    shapes = [(channels, channels, 1, 1), (channels,), (channels, channels, 3, 3), (channels,)]
    shapes += [(outs, channels, 3, 3), (outs,)] if outs else []
    weights = [torch.randn(shape, generator=g) * 0.4 for shape in shapes]
    return weights if outs else weights + [None, None]


def reference_pan_upsampling(pre: torch.Tensor, factor: int, wa, ba, wh, bh, wl=None, bl=None,
                             base: torch.Tensor | None = None) -> torch.Tensor:
    """The high-resolution half of a PAN upsampling stage in float64, the official op sequence: ``u`` the pixel
    shuffle of ``pre``, ``h = lrelu(HRconv(lrelu(u · sigmoid(att(u)))))``, and in the last stage (``wl`` given)
    ``conv_last(h) (+ base)``."""
    u = F.pixel_shuffle(pre.double(), factor)
    wa, ba, wh, bh = (t.double() for t in (wa, ba, wh, bh))
    p = F.leaky_relu(u * torch.sigmoid(F.conv2d(u, wa, ba)), 0.2)
    h = F.leaky_relu(F.conv2d(p, wh, bh, padding=1), 0.2)
    if wl is None:
        return h
    y = F.conv2d(h, wl.double(), bl.double(), padding=1)
    return y if base is None else y + base.double()


#: Rows and columns of one work item of :func:`pan_upsampling`: a strip of 64 columns going down 64 rows, its rings
#: of three attended and HRconv rows (PAN x4: 68 and 66 pixels × 32 floats each, 52 KB) in a core's L2.
PAN_TILE = (64, 64)


def pack_pan_upsampling(wa, ba, wh, bh, wl=None, bl=None) -> tuple:
    """A PAN stage's attention (1×1), HRconv (3×3) and, for the last stage, conv_last (3×3) weights and biases as
    :func:`pan_upsampling` takes them: fp32, contiguous, inputs by rows (HRconv's one row per tap and input
    channel), every width padded with zeros to cp, a multiple of 16."""
    channels = wa.shape[0]
    cp = -(-channels // 16) * 16
    taps = wh.detach().permute(2, 3, 1, 0).reshape(9 * channels, channels)  # row (3·dy + dx)·C + k
    last = None if wl is None else _padded_columns(wl.detach().permute(0, 2, 3, 1).reshape(wl.shape[0], 9, channels),
                                                   cp)
    return (channels, _padded_columns(wa.reshape(channels, channels).t(), cp), _padded_columns(ba, cp),
            _padded_columns(taps, cp), _padded_columns(bh, cp), last, None if bl is None else bl.detach().float())


def _call_pan(kernel, pre: torch.Tensor, factor: int, packed: tuple, base: torch.Tensor | None,
              tile: tuple[int, int]) -> torch.Tensor:
    b, _, h, w = pre.shape
    channels, wat, ba, wht, bh, wl, bl = packed
    outs = 0 if wl is None else wl.shape[0]
    shape = (b, outs or channels, h * factor, w * factor)
    y = torch.empty(shape) if outs else torch.empty(shape, memory_format=torch.channels_last)
    if kernel(pre.data_ptr(), factor, y.data_ptr(), _pointer(base), b, h * factor, w * factor, channels,
              wat.shape[1], wat.data_ptr(), ba.data_ptr(), wht.data_ptr(), bh.data_ptr(), _pointer(wl), _pointer(bl),
              outs, *tile, torch.get_num_threads()):
        raise MemoryError("pan_upsampling_f32: no scratch memory")
    return y


def pan_upsampling(pre: torch.Tensor, factor: int, packed: tuple, base: torch.Tensor | None = None,
                   tile: tuple[int, int] = PAN_TILE) -> torch.Tensor:
    """The high-resolution half of a PAN upsampling stage (:func:`reference_pan_upsampling`), fused, for an fp32
    (B, C·f², H, W) channels-last CPU ``pre`` (the stage's upconv at the low resolution, before its pixel shuffle)
    and the weights :func:`pack_pan_upsampling` made: the stage's (B, C, fH, fW) channels-last output, or for the
    last stage (B, 3, fH, fW) contiguous, ``base`` (the same shape, contiguous, or None) added. Only where
    :func:`conv_kernels_run` says so."""
    kernels = _kernel_or_reason()[0]
    channels, wat, *_, wl, _ = packed
    outs = 0 if wl is None else wl.shape[0]
    if (kernels is None or pre.dtype != torch.float32 or pre.device.type != "cpu" or pre.dim() != 4
            or not pre.is_contiguous(memory_format=torch.channels_last) or pre.shape[1] != channels * factor ** 2
            or wat.shape[1] > 64 or (base is not None and (
                not outs or base.dtype != torch.float32 or not base.is_contiguous()
                or base.shape != (pre.shape[0], outs, pre.shape[2] * factor, pre.shape[3] * factor)))):
        raise NativeUnavailable(f"pan_upsampling: not for {tuple(pre.shape)} {pre.dtype} ×{factor} here ({status()})")
    return _call_pan(kernels[5], pre, factor, packed, base, tile)


def _random_scpa_weights(channels: int, width: int, g: torch.Generator) -> list:
    shapes = [(width, channels, 1, 1)] * 2 + [(width, width, 3, 3), (width, width, 1, 1), (width,),
                                              (width, width, 3, 3), (width, width, 3, 3), (channels, 2 * width, 1, 1)]
    return [torch.randn(shape, generator=g) * 0.4 for shape in shapes]


def reference_scpa(x: torch.Tensor, w1a, w1b, wk1, wk2, bk2, wk3, wk4, w3) -> torch.Tensor:
    """PAN's SCPA block in float64, the official op sequence: ``a = lrelu(k1(lrelu(conv1_a(x))))``, ``b1 =
    lrelu(conv1_b(x))``, ``b = lrelu(k4(k3(b1) · sigmoid(k2(b1))))``, ``conv3([a, b]) + x``."""
    x, w1a, w1b, wk1, wk2, bk2, wk3, wk4, w3 = (t.double() for t in (x, w1a, w1b, wk1, wk2, bk2, wk3, wk4, w3))
    a = F.leaky_relu(F.conv2d(F.leaky_relu(F.conv2d(x, w1a), 0.2), wk1, padding=1), 0.2)
    b1 = F.leaky_relu(F.conv2d(x, w1b), 0.2)
    b = F.leaky_relu(F.conv2d(F.conv2d(b1, wk3, padding=1) * torch.sigmoid(F.conv2d(b1, wk2, bk2)), wk4, padding=1),
                     0.2)
    return F.conv2d(torch.cat([a, b], 1), w3) + x


#: Rows and columns of one work item of :func:`scpa`: a strip of 128 columns going down 64 rows, its rings of a1, b1
#: and c rows (PAN: 4 × 40 and 3 × 20 channels × 160 floats, 140 KB) in a core's L2.
SCPA_TILE = (64, 128)


def pack_scpa(w1a, w1b, wk1, wk2, bk2, wk3, wk4, w3) -> tuple:
    """An SCPA block's weights as :func:`scpa` takes them: fp32, contiguous, each layer's inputs by rows ([tap][input]
    for the 3×3 convs) and its outputs by columns, the width w padded with zeros to 20 (PAN's) or 24."""
    width, channels = w1a.shape[:2]
    no = 20 if width == 20 else 24

    def layer(w):  # (out, in, k, k) -> (k·k, in, no) padded
        w = w.detach().float().permute(2, 3, 1, 0)
        return F.pad(w.reshape(-1, w.shape[2], w.shape[3]), (0, no - w.shape[3], 0, no - w.shape[2]))

    w1 = torch.cat([F.pad(w.detach().float().reshape(width, channels).t(), (0, no - width)) for w in (w1a, w1b)])
    groups = -(-channels // no)
    w3p = F.pad(w3.detach().float().reshape(channels, 2, width).permute(1, 2, 0),  # [half][k][out]
                (0, groups * no - channels, 0, no - width))
    w3p = w3p.reshape(2, no, groups, no).permute(2, 0, 1, 3)  # [g][half][k][o]
    return (no, *(t.contiguous() for t in (w1, layer(wk1), layer(wk2), _padded_columns(bk2, no), layer(wk3),
                                           layer(wk4), w3p)))


def _call_scpa(kernel, x: torch.Tensor, packed: tuple, tile: tuple[int, int]) -> torch.Tensor:
    b, c, h, w = x.shape
    y = torch.empty_like(x)
    done = kernel(x.data_ptr(), y.data_ptr(), b, h, w, c, packed[0], *(t.data_ptr() for t in packed[1:]), *tile,
                  torch.get_num_threads())
    if done:
        raise MemoryError("scpa_f32: no scratch memory") if done > 0 else ValueError(f"scpa_f32: width {packed[0]}")
    return y


def scpa(x: torch.Tensor, packed: tuple, tile: tuple[int, int] = SCPA_TILE) -> torch.Tensor:
    """PAN's SCPA block (:func:`reference_scpa`), fused, for an fp32 (B, C, H, W) contiguous (NCHW) CPU ``x`` and the
    weights :func:`pack_scpa` made (a width up to 24). Returns a new NCHW map. Only where :func:`conv_kernels_run`
    says so."""
    kernels = _kernel_or_reason()[0]
    if (kernels is None or x.dtype != torch.float32 or x.device.type != "cpu" or x.dim() != 4
            or not x.is_contiguous() or packed[1].shape[0] != 2 * x.shape[1]):
        raise NativeUnavailable(f"scpa: not for {tuple(x.shape)} {x.dtype} here ({status()})")
    return _call_scpa(kernels[6], x, packed, tile)


def _call_residual_norm(kernel, x: torch.Tensor, a: torch.Tensor, norm: tuple) -> torch.Tensor:
    b, h, w, c = x.shape
    weight, bias = (t.detach().float().contiguous() for t in norm[:2])
    y = torch.empty_like(x)
    kernel(a.data_ptr(), a.stride(0), a.stride(1), x.data_ptr(), y.data_ptr(), b, h, w, c, weight.data_ptr(),
           bias.data_ptr(), float(norm[2]), torch.get_num_threads())
    return y


def residual_norm(x: torch.Tensor, a: torch.Tensor, norm: tuple) -> torch.Tensor:
    """``x + layer_norm(a)`` over the last dim (``norm``: the LayerNorm's weight, bias and eps), in one pass: fp32
    (B, H, W, C) CPU tensors, ``x`` contiguous, ``a`` with contiguous pixels (a crop of a larger map will do).
    Returns a new tensor. Only where :func:`conv_kernels_run` says so."""
    kernels = _kernel_or_reason()[0]
    c = x.shape[-1]
    if (kernels is None or x.dtype != torch.float32 or a.dtype != torch.float32 or x.device.type != "cpu"
            or a.device.type != "cpu" or x.dim() != 4 or not x.is_contiguous() or a.shape != x.shape
            or a.stride(3) != 1 or a.stride(2) != c or norm[0].shape != (c,) or norm[1].shape != (c,)):
        raise NativeUnavailable(f"residual_norm: not for {tuple(x.shape)} {x.dtype} here ({status()})")
    return _call_residual_norm(kernels[7], x, a, norm)


def conv_kernels_run() -> bool:
    """Whether :func:`lfe`, :func:`conv_ffn`, :func:`pan_upsampling` and :func:`scpa` run here (every AVX-512 CPU
    where the kernels were built and checked)."""
    return _kernel_or_reason()[0] is not None


def lfe(x: torch.Tensor, packed: tuple, residual: bool = False, tile: tuple[int, int] = LFE_TILE) -> torch.Tensor:
    """ELAN's LFE, ``conv1x1(shift(relu(conv1x1(shift(x)))))`` (``+ x`` with ``residual``), fused, for an fp32
    (B, C, H, W) channels-last CPU ``x`` and the weights :func:`pack_lfe` made. Returns a new channels-last map.
    Only where :func:`conv_kernels_run` says so."""
    kernels = _kernel_or_reason()[0]
    hid, w0t, *_ = packed
    if (kernels is None or x.dtype != torch.float32 or x.device.type != "cpu" or x.dim() != 4
            or not x.is_contiguous(memory_format=torch.channels_last) or w0t.shape[0] != x.shape[1]
            or x.shape[1] < 5 or hid < 5):
        raise NativeUnavailable(f"lfe: not for {tuple(x.shape)} {x.dtype} here ({status()})")
    return _call_lfe(kernels[2], x, packed, residual, tile)


def window_attention_runs(dtype: torch.dtype | None = None) -> bool:
    """Whether the kernels run here (compiled, loaded and checked once per process): for ``dtype`` where given
    (fp32 on every AVX-512 CPU, bf16 on those with AVX-512 BF16), else for any dtype."""
    kernels = _kernel_or_reason()[0]
    return kernels is not None and (dtype is None or dtype in kernels[1])


def status() -> str:
    """One line: whether the fused kernel runs here, or why not."""
    return _kernel_or_reason()[1]


def fits(n: int, d: int) -> bool:
    """Whether the kernels take windows of ``n`` tokens with ``d``-wide heads."""
    return n % TOKEN_MULTIPLE == 0 and 0 < d <= MAX_WIDTH


def supports(t: torch.Tensor, dtype: torch.dtype | None = None) -> bool:
    """Whether the kernels take (…, N, d) windows like ``t``, computed in ``dtype`` (default ``t``'s): a dtype they
    run in here (:func:`window_attention_runs`), on the CPU, a shape that :func:`fits`, unit column stride."""
    return (window_attention_runs(t.dtype if dtype is None else dtype) and t.device.type == "cpu"
            and fits(*t.shape[-2:]) and t.stride(-1) == 1)


def biased_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, terms_t: torch.Tensor,
                            pattern: torch.Tensor, out: torch.Tensor, unit: torch.Tensor | None = None
                            ) -> torch.Tensor:
    """``softmax(Q·Kᵀ + T)·V`` into ``out`` for (windows, heads, N, d) Q (scaled), K, V (any strides, unit column
    stride; fp32, or bf16 computed in fp32), T window w's term: ``terms_t[pattern[w]]`` holds its transpose
    (patterns, heads, N, N), fp32, contiguous. With ``unit`` (heads,) fp32, cosine attention: Q and K are taken
    unnormalised, and each of their rows is made a unit row first, Q's times ``unit[head]`` (what
    :func:`reference_biased_attention` with ``unit`` computes). Returns ``out``. Only where
    :func:`window_attention_runs` and :func:`supports` say so."""
    kernels = _kernel_or_reason()[0]
    w, heads, n, _ = q.shape
    if (kernels is None or not all(supports(t) and t.shape == q.shape and t.dtype == q.dtype
                                   for t in (q, k, v, out))
            or terms_t.dtype != torch.float32 or not terms_t.is_contiguous() or terms_t.shape[1:] != (heads, n, n)
            or pattern.dtype != torch.int32 or pattern.shape != (w,) or not pattern.is_contiguous()
            or (w and not 0 <= int(pattern.min()) <= int(pattern.max()) < terms_t.shape[0])
            or (unit is not None and (unit.dtype != torch.float32 or unit.shape != (heads,)
                                      or not unit.is_contiguous() or unit.device.type != "cpu"))):
        raise NativeUnavailable(f"biased_window_attention: not for {tuple(q.shape)} {q.dtype} here ({status()})")
    _call_biased(kernels[1][q.dtype], q, k, v, terms_t, pattern, out, unit)
    return out


def window_attention(q: torch.Tensor, v: torch.Tensor, out: torch.Tensor | None = None,
                     out_rows: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(Q·Qᵀ)·V`` (ELAN's attention: K = Q, no scaling) for (windows, N, d) Q and V (rows may be strided,
    columns not), fused. bf16 runs the bf16 kernel, fp32 the fp32 one (with a zero term).

    Returns a new (windows, N, d) tensor; or, bf16 only, writes window i's row t into row ``out_rows[i·N + t]``
    of ``out`` (an (R, d) table with unit column stride, e.g. a column slice of a (B·H·W, C) map) and returns
    ``out``. Only where :func:`window_attention_runs` and :func:`supports` say so."""
    kernels = _kernel_or_reason()[0]
    w, n, d = q.shape
    rows_ok = out is None or (
        out_rows is not None and q.dtype == torch.bfloat16 and out.dtype == q.dtype and out.dim() == 2
        and out.shape[1] == d and out.stride(1) == 1 and out_rows.dtype == torch.int32
        and out_rows.is_contiguous() and out_rows.shape == (w * n,)
        and (w == 0 or 0 <= int(out_rows.min()) <= int(out_rows.max()) < out.shape[0]))
    if (kernels is None or not supports(q) or not supports(v) or q.shape != v.shape or q.dtype != v.dtype
            or not rows_ok):
        raise NativeUnavailable(f"window_attention: not for {tuple(q.shape)} {q.dtype} here ({status()})")
    if out is not None:
        _call(kernels[0], q, v, out, out_rows)
        return out
    y = torch.empty(q.shape, dtype=q.dtype)
    if q.dtype == torch.bfloat16:
        _call(kernels[0], q, v, y)
    else:
        _call_biased(kernels[1][q.dtype], q[:, None], q[:, None], v[:, None], _zero_term(n),
                     torch.zeros(w, dtype=torch.int32), y[:, None])
    return y


@lru_cache(maxsize=8)
def _zero_term(n: int) -> torch.Tensor:
    return torch.zeros(1, 1, n, n)
