"""LoRA layers: a frozen ``Linear`` or ``Conv2d`` plus a trainable low-rank update ``s * B A``.

A layer keeps the base layer's own ``weight`` and ``bias`` Parameters under the same names (so a
plain state_dict still loads, and layer groups still find them) and adds ``lora_A`` and
``lora_B``:

- Linear ``W: [d, k]``: ``lora_A: [r, k]``, ``lora_B: [d, r]``; ``r (d + k)`` parameters.
- Conv2d ``W: [c_out, c_in, kh, kw]``: ``lora_A: [r, c_in, kh, kw]`` (a conv with the base's
  kernel, stride and padding), ``lora_B: [c_out, r, 1, 1]`` (a 1x1 conv);
  ``r (c_in kh kw + c_out)`` parameters.

These are the shapes PEFT uses, so adapter files map one to one. ``A`` starts small and random
(Kaiming-uniform, like ``nn.Linear``), ``B`` at zero, so the adapted layer starts exactly as the
base layer. The scale is ``s = alpha / r`` (``alpha / sqrt(r)`` for rank-stabilised LoRA).

Training a Linear runs :class:`_LoraLinearFn`, a custom autograd function that computes
``y = x W^T + b`` and then adds ``s (x A^T) B^T`` into ``y`` in place (one ``addmm_``, the scale
folded into its ``alpha``), saves only ``x`` and the small ``x A^T`` for the backward, and in the
backward accumulates the low-rank input gradient into ``dx`` in place. Compared with the usual
``base(x) + lora_B(lora_A(x)) * s`` that removes two full-size tensors and two elementwise kernels
in the forward and two in the backward per layer. Under TorchScript scripting or tracing and ONNX
export the layer uses plain ``F.linear`` calls instead, so an unmerged model still exports.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LoraLayer", "LoraLinear", "LoraConv2d", "conv_supported"]


@torch.jit.unused
def _exporting():  # no annotation: TorchScript cannot read postponed ones on an unused function
    """Whether the forward is being traced or exported to ONNX (then: plain ops only)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def conv_supported(conv: nn.Conv2d) -> bool:
    """Conv2d layers LoRA can adapt with an exact merge and PEFT's layout: ``groups == 1``,
    ``dilation == 1`` and zero padding."""
    return conv.groups == 1 and tuple(conv.dilation) == (1, 1) and conv.padding_mode == "zeros"


class _LoraLinearFn(torch.autograd.Function):
    """``y = x W^T + b + s (x_d A^T) B^T`` with in-place accumulation.

    ``x_d`` is the dropped-out input of the low-rank path, or ``None`` when dropout is off (then
    the path reads ``x`` itself and no copy is made). The skinny products are oriented so that
    the long token axis N is the last one (``h^T = A x^T: [r, N]``, ``dh^T = B^T g^T: [r, N]``):
    BLAS runs ``[r, k] x [k, N]`` several times faster than ``[N, k] x [k, r]`` on a CPU
    (measured 2-8x at N = 2048, k = 384-1536, r = 8), and a GPU does not mind either way.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float, x_drop):  # type: ignore[override]
        d, k = weight.shape
        dtype = x.dtype
        if torch.is_autocast_enabled(x.device.type):  # compute in the autocast dtype, like F.linear
            dtype = torch.get_autocast_dtype(x.device.type)
        weight_c, lora_a_c, lora_b_c = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
        x2 = x.reshape(-1, k).to(dtype)  # [N, k]
        xa = x2 if x_drop is None else x_drop.reshape(-1, k).to(dtype)  # [N, k]
        # Every operand is already in `dtype`, so autocast (if on) has nothing left to cast.
        if bias is None:
            y = torch.mm(x2, weight_c.t())  # [N, d]
        else:
            y = torch.addmm(bias.to(dtype), x2, weight_c.t())
        h_t = torch.mm(lora_a_c, xa.t()).mul_(scaling)  # s (x A^T)^T: [r, N]
        y.addmm_(h_t.t(), lora_b_c.t())  # y += s h B^T, no temporary [N, d]
        ctx.fused_dx, ctx.x_shape = x_drop is None, x.shape
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype, lora_a.dtype, lora_b.dtype)
        ctx.scaling = scaling
        keep_x = x2 if ctx.needs_input_grad[1] else None  # dW needs x only if W trains
        ctx.save_for_backward(xa, h_t, keep_x, weight_c, lora_a_c, lora_b_c)
        return y.view(*x.shape[:-1], d)

    @staticmethod
    def backward(ctx, grad_y):  # type: ignore[override]
        xa, h_t, x2, weight, lora_a, lora_b = ctx.saved_tensors
        need_x, need_w, need_bias, need_a, need_b, _, need_xd = ctx.needs_input_grad
        x_dtype, w_dtype, b_dtype, a_dtype, b_lora_dtype = ctx.dtypes
        g = grad_y.reshape(-1, weight.shape[0]).to(weight.dtype)  # [N, d]
        grad_x = grad_w = grad_bias = grad_a = grad_b = grad_xd = None
        dh_t = None
        if need_a or need_x or need_xd:
            dh_t = torch.mm(lora_b.t(), g.t()).mul_(ctx.scaling)  # s (g B)^T: [r, N]
        if need_b:
            grad_b = torch.mm(h_t, g).t().to(b_lora_dtype)  # s (x A^T)^T g, transposed: [d, r]
        if need_a:
            grad_a = torch.mm(dh_t, xa).to(a_dtype)  # [r, k]
        if need_x:
            grad_x = torch.mm(g, weight)  # [N, k]
            if ctx.fused_dx:
                grad_x.addmm_(dh_t.t(), lora_a)  # dx += s (g B) A, in place
            grad_x = grad_x.view(ctx.x_shape).to(x_dtype)
        if need_xd:
            grad_xd = torch.mm(dh_t.t(), lora_a).view(ctx.x_shape).to(x_dtype)
        if need_w:
            grad_w = torch.mm(g.t(), x2).to(w_dtype)  # [d, k]
        if need_bias:
            grad_bias = g.sum(0).to(b_dtype)
        return grad_x, grad_w, grad_bias, grad_a, grad_b, None, grad_xd


class LoraLayer(nn.Module):
    """What LoRA Linear and Conv2d layers share: the factors, the scale, merge and unmerge.

    Attributes:
        weight, bias: the base layer's own Parameters (frozen by :func:`apply_lora`).
        lora_A, lora_B: the trainable factors.
        rank, alpha, scaling: ``r``, ``alpha`` and ``s`` (``alpha / r``, or ``alpha / sqrt(r)``
            with ``rslora``).
        dropout: dropout probability on the input of the low-rank path.
        merged: whether ``s B A`` is currently added into ``weight``.
    """

    def __init__(self, base: nn.Module, rank: int, alpha: float, dropout: float, rslora: bool = False) -> None:
        super().__init__()
        self.weight = base.weight
        self.bias = base.bias
        self.rank, self.alpha, self.dropout, self.rslora = int(rank), float(alpha), float(dropout), bool(rslora)
        self.scaling = self.alpha / (math.sqrt(self.rank) if rslora else self.rank)
        self.merged = False

    def _init_factors(self, a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
        w = self.weight
        self.lora_A = nn.Parameter(torch.empty(a_shape, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(b_shape, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises weights

    def delta_weight(self) -> torch.Tensor:
        """``s B A`` in the shape of ``weight`` (computed in at least float32, returned in its dtype)."""
        dtype = torch.promote_types(self.weight.dtype, torch.float32)
        a = self.lora_A.detach().to(dtype).flatten(1)  # [r, k] (conv: [r, c_in kh kw])
        b = self.lora_B.detach().to(dtype).flatten(1)  # [d, r]
        return (b @ a * self.scaling).view(self.weight.shape).to(self.weight.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Add ``s B A`` into ``weight``; the forward then costs what the base layer costs.
        Merging a merged layer does nothing."""
        if not self.merged:
            self.weight.add_(self.delta_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract ``s B A`` from ``weight`` again (the inverse of :meth:`merge`)."""
        if self.merged:
            self.weight.sub_(self.delta_weight())
            self.merged = False

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout, self.training) if self.dropout > 0 else x

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, scaling={self.scaling:g}, dropout={self.dropout:g}, merged={self.merged}"


class LoraLinear(LoraLayer):
    """``nn.Linear(k, d)`` with LoRA: ``y = x W^T + b + s (x A^T) B^T``.

    Example:
        >>> base = nn.Linear(6, 4)
        >>> layer = LoraLinear(base, rank=2, alpha=4.0)
        >>> x = torch.randn(3, 6)
        >>> torch.equal(layer(x), base(x))  # B starts at zero
        True
        >>> sum(p.numel() for p in (layer.lora_A, layer.lora_B))  # r (d + k)
        20
    """

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                 rslora: bool = False) -> None:
        super().__init__(base, rank, alpha, dropout, rslora)
        self.in_features, self.out_features = base.in_features, base.out_features
        self._init_factors((self.rank, self.in_features), (self.out_features, self.rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return F.linear(x, self.weight, self.bias)
        if torch.jit.is_scripting() or _exporting():
            return self._plain(x)
        return self._fast(x)

    def _plain(self, x: torch.Tensor) -> torch.Tensor:
        """Ordinary ops only: what scripting, tracing and ONNX export see."""
        low = F.linear(F.linear(self._drop(x), self.lora_A), self.lora_B)
        return F.linear(x, self.weight, self.bias) + low * self.scaling

    @torch.jit.unused
    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        x_drop = F.dropout(x, self.dropout, True) if self.dropout > 0 and self.training else None
        return _LoraLinearFn.apply(x, self.weight, self.bias, self.lora_A, self.lora_B, self.scaling, x_drop)

    def to_base(self) -> nn.Linear:
        """An ``nn.Linear`` holding this layer's ``weight`` and ``bias`` Parameters as they are."""
        layer = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        layer.weight = self.weight
        layer.bias = self.bias
        return layer


class LoraConv2d(LoraLayer):
    """``nn.Conv2d`` (groups 1, dilation 1, zero padding) with LoRA:
    ``y = conv(x, W) + s conv1x1(conv(x, A), B)``; ``A`` has the base's kernel, stride, padding.

    Example:
        >>> layer = LoraConv2d(nn.Conv2d(3, 5, 3, padding=1), rank=2)
        >>> tuple(layer.lora_A.shape), tuple(layer.lora_B.shape)
        ((2, 3, 3, 3), (5, 2, 1, 1))
    """

    def __init__(self, base: nn.Conv2d, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                 rslora: bool = False) -> None:
        super().__init__(base, rank, alpha, dropout, rslora)
        self.in_channels, self.out_channels = base.in_channels, base.out_channels
        self.kernel_size, self.stride, self.padding = base.kernel_size, base.stride, base.padding
        self._init_factors((self.rank, self.in_channels, *self.kernel_size), (self.out_channels, self.rank, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        if self.merged:
            return y
        h = F.conv2d(self._drop(x), self.lora_A, None, self.stride, self.padding)  # [N, r, H', W']
        if torch.jit.is_scripting() or _exporting():
            return y + F.conv2d(h, self.lora_B) * self.scaling
        # conv's backward needs neither y nor its output, so the update is added in place.
        return y.add_(F.conv2d(h, self.lora_B), alpha=self.scaling)

    def to_base(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` holding this layer's ``weight`` and ``bias`` Parameters as they are."""
        layer = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                          bias=self.bias is not None, device="meta")
        layer.weight = self.weight
        layer.bias = self.bias
        return layer
