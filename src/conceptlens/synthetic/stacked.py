"""S regression GPTs as one module: every weight stacked `[S, ...]`, every matmul one batched matmul.

`StackedGPT.from_models([m0, m1, m2])(xs [S, B, K, D], ys [S, B, K]) -> [S, B, K]` computes what
each `RegressionGPT` computes on its own slice, op for op: linears are `baddbmm` (on the CPU, one
`addmm` per slice, as `nn.Linear` does), attention folds the seeds into its batch, layer norms run
per slice (the fused kernel's rounding), so on the CPU the slices are bit-identical to separate
models. DECISION: the stack is hand-written (not `torch.func.vmap`), so each op is the one the
single model runs and the per-seed state dicts keep `RegressionGPT`'s names.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from conceptlens.synthetic.model import GPTConfig, RegressionGPT, interleave


class StackedGPT(nn.Module):
    """Parameters `[S, *shape]` in `RegressionGPT.named_parameters()` order, under the same names."""

    def __init__(self, config: GPTConfig, stacked: dict[str, torch.Tensor]):
        super().__init__()
        self.config = config
        self.names = list(stacked)
        self.stack = nn.ParameterList(nn.Parameter(value.clone()) for value in stacked.values())

    @classmethod
    def from_models(cls, models: list[RegressionGPT]) -> "StackedGPT":
        names = [name for name, _ in models[0].named_parameters()]
        states = [dict(model.named_parameters()) for model in models]
        return cls(models[0].config, {name: torch.stack([s[name].detach() for s in states]) for name in names})

    @property
    def n_models(self) -> int:
        return self.stack[0].shape[0]

    def params(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.stack))

    def state_dict_of(self, index: int) -> dict[str, torch.Tensor]:
        """Model `index`'s weights, named as in `RegressionGPT.state_dict()`."""
        return {name: value[index].detach().clone() for name, value in self.params().items()}

    @torch.no_grad()
    def load_state_dict_of(self, index: int, weights: dict[str, torch.Tensor]) -> None:
        for name, value in self.params().items():
            value[index].copy_(weights[name])

    def forward(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        n, batch, points, dims = xs.shape
        p, c = self.params(), self.config
        tokens = interleave(xs.flatten(0, 1), ys.flatten(0, 1), c)  # [S*B, T, W]
        seq = tokens.shape[1]
        hidden = _linear(p, "read_in", tokens.view(n, batch * seq, -1)).view(n, batch, seq, -1)
        hidden = (hidden + p["position.weight"][:, None, :seq]).view(n, batch * seq, -1)
        for i in range(c.n_layers):
            block = f"blocks.{i}."
            hidden = hidden + self._attention(p, block, _layer_norm(p, block + "ln_attn", hidden), batch, seq)
            inner = F.gelu(_linear(p, block + "mlp.fc", _layer_norm(p, block + "ln_mlp", hidden)))
            hidden = hidden + _linear(p, block + "mlp.proj", inner)
        out = _linear(p, "read_out", _layer_norm(p, "final_norm", hidden))
        return out.view(n, batch, seq)[:, :, ::2]

    def _attention(self, p: dict, block: str, hidden: torch.Tensor, batch: int, seq: int) -> torch.Tensor:
        n, _, width = hidden.shape
        heads = self.config.n_heads
        qkv = _linear(p, block + "attn.qkv", hidden).view(n * batch, seq, 3, heads, width // heads)
        q, k, v = qkv.unbind(2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             is_causal=True)
        return _linear(p, block + "attn.out_proj", out.transpose(1, 2).reshape(n, batch * seq, width))


def _linear(p: dict, name: str, hidden: torch.Tensor) -> torch.Tensor:
    """`nn.Linear` per slice: `[S, N, in] -> [S, N, out]`."""
    return _StackedLinear.apply(hidden, p[name + ".weight"], p[name + ".bias"])


class _StackedLinear(torch.autograd.Function):
    """`addmm` per slice, as `nn.Linear` runs, with the gradients computed as autograd does for one.

    The forward and the input gradient are one batched matmul (on the CPU, the same gemm per slice);
    the weight gradient, a reduction over all tokens, is one `mm` per slice: inside `bmm` a
    multithreaded gemm splits that sum another way. A one-column output is `addmm` per slice too
    (a single model's gemm takes a matrix-vector path there).
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias):
        ctx.save_for_backward(hidden, weight)
        if weight.shape[1] == 1:
            return torch.stack([torch.addmm(b, h, w.t()) for h, w, b in zip(hidden, weight, bias)])
        return torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):
        hidden, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_hidden = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_weight = torch.stack([g.t().mm(h) for g, h in zip(grad, hidden)])
        return grad_hidden, grad_weight, grad.sum(1)


def _layer_norm(p: dict, name: str, hidden: torch.Tensor) -> torch.Tensor:
    """`nn.LayerNorm` per slice: the fused kernel with each slice's own scale and shift."""
    weight, bias = p[name + ".weight"], p[name + ".bias"]
    return torch.stack([F.layer_norm(hidden[i], hidden.shape[-1:], weight[i], bias[i])
                        for i in range(hidden.shape[0])])


def clip_each(model: StackedGPT, max_norm: float) -> None:
    """`clip_grad_norm_` for each model of the stack on its own (each its own total norm)."""
    for index in range(model.n_models):  # the very torch function a single run calls, on this slice's grads
        torch.nn.utils.clip_grad_norm_([SimpleNamespace(grad=p.grad[index]) for p in model.stack], max_norm)
