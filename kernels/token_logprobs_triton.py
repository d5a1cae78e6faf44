"""Triton: log π(y_t) = z_y/T − logsumexp(z/T) per token, and its fused backward
grad_t·(onehot(y_t) − softmax(z_t/T))/T written tile by tile. One program per token (a flat grid,
so no 65,535 grid-dimension limit). Launchers are called by the visd::token_logprobs custom op in
kernels/ops.py, which owns the autograd registration.
"""

import torch
import triton
import triton.language as tl

from kernels.triton_rows import (INTERPRETED, INTERPRETER_BLOCK_V, autotune_configs, row_logsumexp,
                                 write_logprob_grad, write_zeros)

__all__ = ["INTERPRETED", "token_logprobs_forward", "token_logprobs_backward"]


@triton.jit
def _forward_kernel(logits_ptr, row_stride, tokens_ptr, logprobs_ptr, max_ptr, log_sum_ptr, entropy_ptr, V, inv_t,
                    WITH_ENTROPY: tl.constexpr, BLOCK_V: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    row = logits_ptr + t * row_stride
    row_max, log_sum, entropy = row_logsumexp(row, V, inv_t, BLOCK_V, WITH_ENTROPY)
    y = tl.load(tokens_ptr + t)
    tl.store(logprobs_ptr + t, (tl.load(row + y).to(tl.float32) * inv_t - row_max) - log_sum)
    tl.store(max_ptr + t, row_max)
    tl.store(log_sum_ptr + t, log_sum)
    if WITH_ENTROPY:
        tl.store(entropy_ptr + t, entropy)


@triton.jit
def _backward_kernel(logits_ptr, row_stride, tokens_ptr, max_ptr, log_sum_ptr, grad_logprobs_ptr, out_ptr, V, inv_t,
                     BLOCK_V: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    g = tl.load(grad_logprobs_ptr + t)
    out_row = out_ptr + t * V
    if g != 0:
        write_logprob_grad(logits_ptr + t * row_stride, out_row, V, tl.load(tokens_ptr + t), inv_t,
                           tl.load(max_ptr + t), tl.load(log_sum_ptr + t), g, BLOCK_V)
    else:
        write_zeros(out_row, V, BLOCK_V)


_CONFIGS = autotune_configs(blocks=(2048, 4096, 8192), warps=(8, 16))
_forward_tuned = triton.autotune(_CONFIGS, key=["V", "WITH_ENTROPY"])(_forward_kernel)
_backward_tuned = triton.autotune(_CONFIGS, key=["V"])(_backward_kernel)


def token_logprobs_forward(logits: torch.Tensor, tokens: torch.Tensor, temperature: float, with_entropy: bool):
    n, vocab = logits.shape
    f32 = dict(dtype=torch.float32, device=logits.device)
    logprobs, row_max, log_sum = torch.empty(n, **f32), torch.empty(n, **f32), torch.empty(n, **f32)
    entropy = torch.empty(n if with_entropy else 0, **f32)
    if n:
        args = (logits, logits.stride(0), tokens, logprobs, row_max, log_sum, entropy if with_entropy else log_sum,
                vocab, 1.0 / temperature)
        if INTERPRETED:
            _forward_kernel[(n,)](*args, WITH_ENTROPY=with_entropy, BLOCK_V=INTERPRETER_BLOCK_V)
        else:
            _forward_tuned[(n,)](*args, WITH_ENTROPY=with_entropy)
    return logprobs, row_max, log_sum, entropy


def token_logprobs_backward(logits: torch.Tensor, tokens: torch.Tensor, row_max: torch.Tensor, log_sum: torch.Tensor,
                            grad_logprobs: torch.Tensor, temperature: float) -> torch.Tensor:
    n, vocab = logits.shape
    grad = torch.empty((n, vocab), dtype=logits.dtype, device=logits.device)
    if n:
        args = (logits, logits.stride(0), tokens, row_max, log_sum, grad_logprobs, grad, vocab, 1.0 / temperature)
        if INTERPRETED:
            _backward_kernel[(n,)](*args, BLOCK_V=INTERPRETER_BLOCK_V)
        else:
            _backward_tuned[(n,)](*args)
    return grad
