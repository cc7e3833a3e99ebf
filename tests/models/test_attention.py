"""Tests of the heads' attention layers (futurelat/models/heads/attention.py), their FlexAttention
backend (futurelat/models/heads/flex.py) and position codes (futurelat/models/heads/positions.py)."""

from __future__ import annotations

import math

import pytest
import torch

from futurelat.models.heads import flex
from futurelat.models.heads.attention import Attention, FactorizedBlock, KVCache, TemporalDepthwiseConv
from futurelat.models.heads.positions import (POSITIONS, alibi_slopes, apply_rope, axis_angles, axis_split,
                                              frequencies, grid_coords, rotary, sincos)


def reference_attention(layer: Attention, x: torch.Tensor) -> torch.Tensor:
    """Plain softmax attention with a full ``(L, L)`` mask and bias, for ``x`` ``(B, L, d)``."""
    b, n, d = x.shape
    q, k, v = layer.qkv(x).view(b, n, 3, layer.num_heads, -1).permute(2, 0, 3, 1, 4)
    i, j = torch.arange(n)[:, None], torch.arange(n)[None]
    frame = layer.grid[0] * layer.grid[1]
    visible = {"none": torch.ones(n, n, dtype=torch.bool), "causal": j <= i,
               "block": j // frame <= i // frame}[layer.mask]
    bias = torch.zeros(layer.num_heads, n, n)
    if layer.position == "alibi":
        bias = -alibi_slopes(layer.num_heads)[:, None, None] * (i - j).abs()
    if layer.position == "rope":
        coords = torch.stack([torch.arange(n) // frame, torch.arange(n) % frame // layer.grid[1],
                              torch.arange(n) % layer.grid[1]], -1)
        angles = axis_angles(coords, q.shape[-1] // 2)
        q, k = apply_rope(q, angles.cos(), angles.sin()), apply_rope(k, angles.cos(), angles.sin())
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
    y = scores.masked_fill(~visible, -math.inf).softmax(-1) @ v
    return layer.out_proj(y.transpose(1, 2).reshape(b, n, d))


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("mask", ["none", "causal", "block"])
def test_attention_matches_reference_in_chunks_and_with_a_cache(position, mask):
    torch.manual_seed(0)
    layer = Attention(16, 2, position=position, mask=mask, grid=(2, 3), query_chunk=4)  # 6 tokens a frame
    x = torch.randn(2, 14, 16)
    with torch.no_grad():
        full = layer(x)
        torch.testing.assert_close(full, reference_attention(layer, x), atol=1e-5, rtol=1e-5)
        if mask != "none":  # cached pieces (whole frames for the block mask) continue the sequence exactly
            cache, pieces = KVCache(), ([6, 6, 2] if mask == "block" else [5, 1, 8])
            out = [layer(part, cache) for part in x.split(pieces, dim=1)]
            torch.testing.assert_close(torch.cat(out, 1), full, atol=1e-5, rtol=1e-5)
            assert cache.length == 14


def test_alibi_slopes_are_geometric():
    torch.testing.assert_close(alibi_slopes(8), 2.0 ** -torch.arange(1.0, 9.0))
    torch.testing.assert_close(alibi_slopes(2), torch.tensor([2.0 ** -4, 2.0 ** -8]))
    six = alibi_slopes(6)  # 4 from the 4-head ladder, then every other one of the 8-head ladder
    torch.testing.assert_close(six, torch.tensor([2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3]))


def test_rope_scores_depend_on_the_relative_position_only():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 12), torch.randn(1, 1, 1, 12)

    def score(cq, ck):
        angles = axis_angles(torch.tensor([cq, ck]), 6)
        cos, sin = angles.cos(), angles.sin()
        return (apply_rope(q, cos[:1], sin[:1]) * apply_rope(k, cos[1:], sin[1:])).sum()

    base = score([5, 1, 2], [3, 2, 0])
    torch.testing.assert_close(score([105, 8, 9], [103, 9, 7]), base, atol=1e-4, rtol=1e-4)
    assert (score([5, 1, 2], [3, 2, 1]) - base).abs() > 1e-3  # every axis matters
    table = sincos(torch.tensor([[0, 0, 0], [40_000, 15, 15]]), 24)
    assert table.shape == (2, 24) and table.abs().max() <= 1


def test_temporal_depthwise_conv_matches_a_depthwise_conv1d_over_frames():
    torch.manual_seed(0)
    conv = TemporalDepthwiseConv(6, 3)
    assert conv.weight.abs().sum() == 0 and conv.bias.abs().sum() == 0  # a residual branch that starts off
    torch.nn.init.normal_(conv.weight)
    torch.nn.init.normal_(conv.bias)
    reference = torch.nn.Conv1d(6, 6, 3, padding=1, groups=6)
    with torch.no_grad():
        reference.weight.copy_(conv.weight.T[:, None, :])  # (d, 1, kernel)
        reference.bias.copy_(conv.bias)
    x = torch.randn(2, 5, 4, 6)  # (B, T, N, d)
    expected = reference(x.permute(0, 2, 3, 1).reshape(8, 6, 5)).view(2, 4, 6, 5).permute(0, 3, 1, 2)
    torch.testing.assert_close(conv(x), expected)
    with pytest.raises(ValueError, match="odd"):
        TemporalDepthwiseConv(6, 2)


def test_short_cpu_attention_takes_the_math_backend_and_matches_the_reference():
    from futurelat.models.heads import attention
    torch.manual_seed(0)
    layer = Attention(16, 2, position="rope", mask="none", grid=(2, 3))
    for length in (attention.CPU_MATH_MAX_KEYS, attention.CPU_MATH_MAX_KEYS + 6):  # math, then fused kernel
        x = torch.randn(1, length, 16)
        with torch.no_grad(), torch.profiler.profile() as prof:
            y = layer(x)
        torch.testing.assert_close(y, reference_attention(layer, x), atol=1e-5, rtol=1e-5)
        math_ops = [e.name for e in prof.events() if e.name == "aten::_scaled_dot_product_attention_math"]
        assert bool(math_ops) == (length <= attention.CPU_MATH_MAX_KEYS)


def test_factorized_block_mixes_space_within_frames_and_time_within_cells():
    torch.manual_seed(0)
    block = FactorizedBlock(16, 2, 2.0, 0.0, grid=(2, 2), position="rope")
    x = torch.randn(1, 3 * 4, 16)  # 3 frames of 2 x 2 tokens
    moved = x.clone()
    moved[0, 5] = torch.randn(16)  # frame 1, cell 1
    spatial = lambda t: block.spatial(block.norm1(t).view(3, 4, 16)).view(1, 12, 16)
    changed = (spatial(moved) - spatial(x)).abs().sum(-1)[0] > 1e-6
    assert changed.tolist() == [False] * 4 + [True] * 4 + [False] * 4  # frame 1 only
    changed = (block(moved) - block(x)).abs().sum(-1)[0] > 1e-6
    assert changed.all()  # space then time reaches every token in one block
    with pytest.raises(ValueError, match="no KV cache"):
        block(x, KVCache())


def test_cross_attention_matches_reference_with_the_context_before_the_queries():
    """Queries at ``start + S ..`` attend to the ``S`` context tokens at ``start ..`` only."""
    torch.manual_seed(0)
    layer = Attention(12, 2, position="rope", mask="none", grid=(2, 2), cross=True)
    assert [n for n, _ in layer.named_parameters()] == ["q.weight", "q.bias", "kv.weight", "kv.bias",
                                                        "out_proj.weight", "out_proj.bias"]
    x, context = torch.randn(2, 4, 12), torch.randn(2, 8, 12)
    with torch.no_grad():
        q = layer.q(x).view(2, 4, 2, 6).transpose(1, 2)
        k, v = layer.kv(context).view(2, 8, 2, 2, 6).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, *rotary(12, 4, (2, 2), 6)), apply_rope(k, *rotary(4, 8, (2, 2), 6))
        y = (q @ k.transpose(-1, -2) / math.sqrt(6)).softmax(-1) @ v
        expected = layer.out_proj(y.transpose(1, 2).reshape(2, 4, 12))
        torch.testing.assert_close(layer(x, context=context, start=4), expected, atol=1e-5, rtol=1e-5)
        shifted = layer(x, context=context)  # rope scores depend on offsets only: the same up to rounding
        torch.testing.assert_close(shifted, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cross-attention layer takes a context"):
        layer(x)
    with pytest.raises(ValueError, match="self-attention layer takes no context"):
        Attention(12, 2, position="rope", mask="none", grid=(2, 2))(x, context=context)


def test_start_places_the_rope_coordinates_of_a_self_attention():
    torch.manual_seed(0)
    layer = Attention(12, 2, position="rope", mask="none", grid=(2, 2))
    x = torch.randn(1, 8, 12)
    with torch.no_grad():
        q, k, v = layer.qkv(x).view(1, 8, 3, 2, 6).permute(2, 0, 3, 1, 4)
        cos, sin = rotary(4, 8, (2, 2), 6)  # tokens 4 .. 11
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = (q @ k.transpose(-1, -2) / math.sqrt(6)).softmax(-1) @ v
        expected = layer.out_proj(y.transpose(1, 2).reshape(1, 8, 12))
        torch.testing.assert_close(layer(x, start=4), expected, atol=1e-5, rtol=1e-5)
        # a whole frame later the relative offsets are unchanged; half a frame moves rows across frames
        torch.testing.assert_close(layer(x, start=8), expected, atol=1e-5, rtol=1e-5)
        assert (layer(x, start=2) - expected).abs().max() > 1e-4


def test_sincos_layouts_are_the_per_axis_ladders_in_two_orders():
    coords = grid_coords(5, 20, (2, 3))  # (20, 3)
    for dim in (12, 24, 26):
        pairs = axis_split(dim // 2)  # time gets the rest
        assert sum(pairs) == dim // 2 and pairs[1] == pairs[2] == dim // 6
        angles = axis_angles(coords, dim // 2)
        per_axis = sincos(coords, dim, layout="per_axis")
        blocks = angles.split(pairs, dim=-1)
        expected = torch.cat([torch.cat([a.sin(), a.cos()], -1) for a in blocks], -1)
        assert torch.equal(per_axis, expected)
        assert torch.equal(sincos(coords, dim), torch.cat([angles.sin(), angles.cos()], -1))  # grouped
        # one axis: [sin(x f), cos(x f)] over the whole ladder
        one = sincos(coords[:, :1], dim, layout="per_axis")
        f = frequencies(dim // 2)
        assert torch.equal(one, torch.cat([(coords[:, :1] * f).sin(), (coords[:, :1] * f).cos()], -1))
    # an odd width: a zero column after the time features (per axis) or at the end (grouped)
    odd = sincos(coords, 27, layout="per_axis")
    time = 27 - 4 * (27 // 6)  # 11: 5 pairs and the zero column
    assert odd.shape == (20, 27) and odd[:, time - 1].abs().sum() == 0
    assert torch.equal(odd[:, :time - 1], sincos(coords[:, :1], 10, layout="per_axis"))
    rows, cols = (coords[:, a:a + 1] * frequencies(4) for a in (1, 2))
    assert torch.equal(odd[:, time:], torch.cat([rows.sin(), rows.cos(), cols.sin(), cols.cos()], -1))
    assert sincos(coords, 27)[:, -1].abs().sum() == 0


def test_frequency_ladders_agree_up_to_rounding():
    for n in (1, 4, 5, 128):
        power, exp = frequencies(n), frequencies(n, ladder="exp")
        assert power[0] == exp[0] == 1 and (power[1:] < 1).all()
        torch.testing.assert_close(exp, power, atol=0, rtol=1e-6)
        assert torch.equal(exp, torch.exp(torch.arange(n, dtype=torch.float32) * (-math.log(10_000.0) / n)))
    assert frequencies(0, ladder="exp").shape == (0,)


# ------------------------------------------------------------------ FlexAttention backend


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def flex_backward_runs(device: str) -> bool:
    """Whether this torch's FlexAttention has a backward on ``device`` (torch 2.13: not on CPU)."""
    q = torch.randn(1, 1, 16, 16, device=device, requires_grad=True)
    try:
        flex.flex_attention(q, q, q).sum().backward()
    except NotImplementedError:
        return False
    return True


def twin_layers(position: str, mask: str, device: str, dim: int = 32, heads: int = 2) -> tuple[Attention, Attention]:
    """The same attention layer (6 tokens a frame) with ``backend="sdpa"`` and ``backend="flex"``."""
    torch.manual_seed(0)
    sdpa = Attention(dim, heads, position=position, mask=mask, grid=(2, 3), query_chunk=64, backend="sdpa")
    other = Attention(dim, heads, position=position, mask=mask, grid=(2, 3), query_chunk=64, backend="flex")
    other.load_state_dict(sdpa.state_dict())
    return sdpa.to(device), other.to(device)


@pytest.mark.parametrize("length,frame", [(5, 6), (128, 6), (300, 36), (385, 7)])
@pytest.mark.parametrize("mask", ["causal", "block"])
def test_flex_block_mask_equals_torchs_create_block_mask(mask, length, frame):
    from torch.nn.attention.flex_attention import create_block_mask
    ours = flex.block_mask(mask, frame, length, torch.device("cpu"))
    ref = create_block_mask(flex.mask_mod(mask, frame), None, None, length, length, device="cpu")
    assert torch.equal(ours.to_dense(), ref.to_dense())
    for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices"):
        assert torch.equal(getattr(ours, name), getattr(ref, name)), name


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("position,mask", [("alibi", "causal"), ("alibi", "block"), ("alibi", "none"),
                                           ("rope", "block")])
def test_flex_forward_equals_sdpa_with_its_bias_and_continues_a_cache(position, mask, device):
    """fp32, 200 tokens (two 128-blocks, the second partial): flex equals the per-chunk SDPA bias. A cache
    filled by a flex prefill continues with SDPA decode steps exactly as the whole sequence does."""
    sdpa, other = twin_layers(position, mask, device)
    x = torch.randn(2, 200, 32, device=device)
    with torch.no_grad():
        full = sdpa(x)
        torch.testing.assert_close(other(x), full, atol=1e-5, rtol=1e-5)
        if mask == "none":  # bidirectional: no cache to continue
            return
        cache = KVCache()
        pieces = [other(part, cache) for part in x.split([144, 6, 50], dim=1)]  # whole frames (block mask)
        torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mask", ["causal", "block"])
def test_flex_backward_equals_sdpa_with_its_bias(mask, device):
    if not flex_backward_runs(device):
        pytest.skip(f"torch {torch.__version__}: FlexAttention has no backward on {device} "
                    "(NotImplementedError); backend auto never takes it there")
    sdpa, other = twin_layers("alibi", mask, device)
    x = torch.randn(2, 200, 32, device=device, requires_grad=True)
    grads = []
    for layer in (sdpa, other):
        out = layer(x)
        grads.append(torch.autograd.grad(out.square().sum(), [x, *layer.parameters()]))
        if layer is sdpa:
            expected = out
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_backend_auto_never_takes_flex_on_cpu(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("flex called on CPU under backend=auto")

    monkeypatch.setattr("futurelat.models.heads.attention.flex_attend", refuse)
    torch.manual_seed(0)
    layer = Attention(32, 2, position="alibi", mask="causal", grid=(2, 3))  # backend auto
    assert layer.backend == "auto" and not flex.use_flex("auto", torch.zeros(1, 2, 8, 16), 0.0)
    x = torch.randn(1, 40, 32, requires_grad=True)
    layer(x).sum().backward()  # training on CPU: SDPA
    assert x.grad is not None


def test_backend_auto_falls_back_to_sdpa_when_the_compiled_kernel_fails(monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("no Triton")

    monkeypatch.setattr(flex, "_state", {"compiled_ok": False, "broken": None})
    monkeypatch.setattr(flex, "_compiled", lambda: broken)
    q = torch.randn(1, 2, 8, 16)
    with caplog.at_level("WARNING"):
        assert flex._compiled_call(q, q, q, None, None, "auto") is None
    assert "no Triton" in flex._state["broken"] and "SDPA serves every attention call" in caplog.text
    assert not flex.use_flex("auto", q, 0.0)
    with pytest.raises(RuntimeError, match="no Triton"):  # an explicit flex says what failed
        flex._compiled_call(q, q, q, None, None, "flex")


def test_backend_names_and_flex_dropout_are_checked():
    with pytest.raises(ValueError, match=r"head\.params\.backend must be one of auto, sdpa, flex"):
        Attention(16, 2, position="alibi", mask="causal", grid=(2, 2), backend="triton")
    with pytest.raises(ValueError, match="no attention dropout"):
        Attention(16, 2, position="alibi", mask="causal", grid=(2, 2), backend="flex", dropout=0.1)
    Attention(16, 2, position="alibi", mask="causal", grid=(2, 2), backend="auto", dropout=0.1)  # SDPA then
