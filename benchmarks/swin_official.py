"""SwinIR-light and GRFormer: the official forward re-expressed op for op on a litesr model's weights.

The reference the speed benchmarks time litesr against (``floor.py``'s "official" rows), as ``elan_speed.py`` is
for ELAN. It follows the official code's computation step by step (``../shared/specs/grformer_swinir.md``):
tokens kept as (B, H·W, C) with the transposes between tokens and images, window partition and reverse as one
permuted copy each (``ops.windows.window_partition``/``window_reverse``: the copy the official view/permute/contiguous
makes), rolls, the relative position bias gathered from its table in every block, the explicit
matmul/softmax/matmul attention, and the shifted-window mask built from its label map
(``ops.windows.shifted_window_mask``, the official label slices).

Where the official code rebuilds the mask: SwinIR (network_swinir.py) keeps the masks it made at construction for
``img_size`` (64×64) and otherwise calls ``calculate_mask`` for the runtime size in *every* block's forward,
non-shifted blocks included (whose label slices then cover the whole map: a mask of zeros, added like any other).
GRFormer builds its mask at the padded runtime size too (spec §2); here only its shifted blocks get one, so this
reference can only be faster than the official code, never slower. Every output equals the official one (checked
against the conformance vectors in ``tests/test_efficiency.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from litesr.models.blocks import DIV2K_RGB_MEAN
from litesr.ops.windows import shifted_window_mask, window_partition, window_reverse

OFFICIAL_IMG_SIZE = (64, 64)  # img_size of the official configurations: the masks built at construction


def official_forward(model, x: torch.Tensor) -> torch.Tensor:
    """The official forward of a litesr SwinIR or GRFormer model (NCHW in [0, 1])."""
    if model.arch_name == "swinir":
        return _swinir(model, x)
    if model.arch_name == "grformer":
        return _grformer(model, x)
    raise ValueError(f"no official re-expression for {model.arch_name}")


# ------------------------------------------------------------------------------------------ shared pieces


def _stem(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Reflect-pad to the window multiple, mean-shift, conv_first: (features, mean, padded size)."""
    m = model.size_multiple
    h, w = x.shape[-2:]
    x = F.pad(x, (0, (m - w % m) % m, 0, (m - h % m) % m), mode="reflect")
    mean = torch.tensor(DIV2K_RGB_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    f = model.conv_first((x - mean) * model.img_range)
    return f, mean, tuple(f.shape[-2:])


def _finish(model, y: torch.Tensor, mean: torch.Tensor, h: int, w: int) -> torch.Tensor:
    y = model.upsample(y) / model.img_range + mean
    return y[:, :, : h * model.scale, : w * model.scale]


def _mask(size, window, shift, fill: float, device=None) -> torch.Tensor:
    """calculate_mask: label the map by the official slices, partition, compare, fill (then moved to the input's
    device, as the official forward does). The official codes differ only in the sign of the label difference
    (SwinIR key − query, GRFormer query − key), which ``!= 0`` does not see."""
    return shifted_window_mask(*size, window, shift, fill).to(device)


def _add_bias_and_mask(attn: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    b_, heads, n, _ = attn.shape
    attn = attn + bias.unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        attn = attn.view(b_ // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, heads, n, n)
    return attn


# ------------------------------------------------------------------------------------------ SwinIR


def _swinir(model, x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    f, mean, size = _stem(model, x)
    b, c = f.shape[:2]
    t = model.patch_embed.norm(f.flatten(2).transpose(1, 2))
    for layer in model.layers:
        y = t
        for i, block in enumerate(layer.residual_group.blocks):
            y = _swin_block(block, y, size, model.window_size, model.window_size // 2 if i % 2 else 0)
        t = layer.conv(y.transpose(1, 2).view(b, c, *size)).flatten(2).transpose(1, 2) + t
    t = model.norm(t)
    y = model.conv_after_body(t.transpose(1, 2).view(b, c, *size)) + f
    return _finish(model, y, mean, h, w)


def _swin_block(block, x: torch.Tensor, size, ws: int, shift: int) -> torch.Tensor:
    h, w = size
    b, _, c = x.shape
    shortcut = x
    x = block.norm1(x).view(b, h, w, c)
    if shift:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    windows = window_partition(x, ws, ws)
    if size == OFFICIAL_IMG_SIZE:  # the buffer made at construction: shifted blocks only
        mask = _mask(size, (ws, ws), (shift, shift), -100.0, x.device) if shift else None
    else:  # calculate_mask in every block, a zero mask for the non-shifted ones
        mask = _mask(size, (ws, ws), (shift, shift), -100.0, x.device)
    windows = _swin_attention(block.attn, windows, mask)
    x = window_reverse(windows, ws, ws, h, w)
    if shift:
        x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
    x = shortcut + x.view(b, h * w, c)
    return x + block.mlp(block.norm2(x))


def _swin_attention(attn, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    b_, n, c = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(b_, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q * attn.scale) @ k.transpose(-2, -1)
    bias = attn.relative_position_bias_table[attn.relative_position_index.view(-1)].view(n, n, -1)
    scores = _add_bias_and_mask(scores, bias.permute(2, 0, 1).contiguous(), mask)
    return attn.proj((scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b_, n, c))


# ------------------------------------------------------------------------------------------ GRFormer


def _grformer(model, x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    f, mean, size = _stem(model, x)
    b, c = f.shape[:2]
    t = f.flatten(2).transpose(1, 2)
    for group in model.layers:
        for block in group.blocks:
            t = _grsab(block, t, size)
        image = t.transpose(1, 2).view(b, c, *size)  # einops rearrange 'b (h w) c -> b c h w': a strided view
        t = t + group.conv(image).flatten(2).transpose(1, 2)
    t = model.norm(t)
    y = model.conv_after_body(t.transpose(1, 2).reshape(b, c, *size)) + f
    return _finish(model, y, mean, h, w)


def _grsab(block, x: torch.Tensor, size) -> torch.Tensor:
    h, w = size
    b, _, c = x.shape
    (wh, ww), shift = block.window, block.shift
    shortcut = x
    y = x.view(b, h, w, c)
    if shift is not None:
        y = torch.roll(y, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    windows = window_partition(y, wh, ww)
    mask = None if shift is None else _mask(size, (wh, ww), shift, -1e9, x.device)
    windows = _grsa(block.attn, windows, mask)
    y = window_reverse(windows, wh, ww, h, w)
    if shift is not None:
        y = torch.roll(y, shifts=shift, dims=(1, 2))
    x = shortcut + block.norm1(y.view(b, h * w, c))
    return x + block.norm2(_ffn(block.mlp, x, size))


def _grl(x: torch.Tensor, first, second, heads: int) -> torch.Tensor:
    """[x0 + first(x0), x1 + second(x1)] over the channel halves, as (B_, nH, N, d)."""
    _, b_, n, half = x.shape
    t = torch.stack((x[0] + first(x[0]), x[1] + second(x[1])), dim=0).permute(1, 2, 0, 3).flatten(2)
    return t.reshape(b_, n, heads, 2 * half // heads).permute(0, 2, 1, 3).contiguous()


def _grsa(attn, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    b_, n, c = x.shape
    heads = attn.num_heads
    halves = x.reshape(b_, n, 2, c // 2).permute(2, 0, 1, 3).contiguous()
    k = _grl(halves, attn.k1, attn.k2, heads)
    q = _grl(halves, attn.q1, attn.q2, heads)
    v = _grl(halves, attn.v1, attn.v2, heads)
    scores = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    scores = scores * torch.clamp(attn.logit_scale, max=torch.log(torch.tensor(1.0 / 0.01))).exp()
    table = attn.ESRPB_MLP(attn.relative_position_bias_table).view(-1, heads)
    bias = table[attn.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1).contiguous()
    scores = _add_bias_and_mask(scores, 16 * torch.sigmoid(bias), mask)
    out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b_, n, c)
    out = out.reshape(b_, n, 2, c // 2).permute(2, 0, 1, 3).contiguous()
    return torch.stack((attn.proj1(out[0]), attn.proj2(out[1])), dim=0).permute(1, 2, 0, 3).reshape(b_, n, c)


def _ffn(mlp, x: torch.Tensor, size) -> torch.Tensor:
    b = x.shape[0]
    hidden = mlp.act(mlp.fc1(x))
    image = hidden.transpose(1, 2).view(b, hidden.shape[-1], *size).contiguous()
    hidden = hidden + mlp.dwconv.depthwise_conv(image).flatten(2).transpose(1, 2).contiguous()
    return mlp.fc2(hidden)
