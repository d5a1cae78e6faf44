"""visd fused kernels: VISD's top-K-union teacher/student log-ratio and the clipped token-weighted
surrogate straight from logits (visd eq. 3–7, 16–17, Appendix E.3), without materializing a
full-vocabulary softmax. Three implementations agree: Triton (CUDA), C++ (CPU, csrc/), and the
PyTorch reference (kernels.reference).

Public API (DESIGN.md; logits [N, V] fp32/bf16 (fp64 for tests), tokens [N] int64):

    token_logprobs(logits, tokens, temperature=1.0, *, return_entropy=False)
        -> log π(y_t) [N] (fp32), differentiable; with return_entropy, (logprobs, entropy) from one sweep
    teacher_topk(teacher_logits, tokens, k=16, temperature=1.0) -> TeacherSupport
        the O(N·K) teacher summary; run it per chunk of teacher logits, join with TeacherSupport.cat
    topk_logratio(student_logits, teacher_logits, tokens, k=16, temperature=1.0) -> Δ_t [N], no grad
        (k = 0: the sampled-token variant log q(y_t) − log π(y_t))
    visd_policy_loss(student_logits, tokens, old_logprobs, advantages, delta, seq_lens, lam,
                     eps_w=0.2, clip_low=0.2, clip_high=0.2, temperature=1.0, *,
                     loss_mask=None, aggregation="seq_mean_token_mean",
                     return_stats=False, with_entropy=False, inplace_backward=False)
        -> loss (0-d), or (loss, PolicyLossStats) with return_stats=True

visd_policy_loss: `advantages` is the rollout advantage broadcast to its tokens [N]; `seq_lens` [B]
lists the contiguous sequences (sum = N); `delta` is a precomputed Δ_t [N], a TeacherSupport (Δ_t is
then computed inside the fused kernel from the student logits), or None (plain GRPO). Keywords:
  - loss_mask [N] (bool or 0/1): masked tokens (padding, prompt, ...) get zero loss and zero gradient
    and cost no softmax sweep; tokens with A = 0 or a binding ratio clip likewise skip the sweep.
  - aggregation: "seq_mean_token_mean" (eq. 16: token-mean within each sequence, mean over sequences
    that have an unmasked token) or "token_mean" (mean over all unmasked tokens of the batch).
  - return_stats: per-token Δ_t, m_t, Â_t, ρ_t, ℓ_t, clip flags (and entropy with with_entropy=True),
    written by the same fused pass — no second sweep over the logits. `stats.summary()` gives the
    scalars to log: delta/{mean,abs_mean,std}, token_weight/{mean,clip_low_frac,clip_high_frac},
    ratio/{mean,clip_frac}, advantages_hat/abs_mean, entropy/mean.
  - inplace_backward: the forward writes dL/dlogits into the student logits buffer itself (Liger
    style), saving one [N, V] buffer; the caller must not read the logits afterwards.

From hidden states (kernels.linear_ops): lm_head's matmul fused in, chunked over tokens like Liger's fused
linear cross-entropy, so no [N, V] logits exist — hidden [N, H] and lm_head_weight [V, H] replace the
logits, every other argument means what it means above:

    linear_token_logprobs(hidden, lm_head_weight, tokens, temperature=1.0, *, chunk_tokens=256)
        -> log π(y_t) [N], differentiable w.r.t. hidden and lm_head_weight
    linear_teacher_topk(hidden, lm_head_weight, tokens, k=16, temperature=1.0, *, chunk_tokens=256)
        -> TeacherSupport
    linear_visd_policy_loss(hidden, lm_head_weight, tokens, old_logprobs, advantages, delta, seq_lens, lam,
                            eps_w=0.2, clip_low=0.2, clip_high=0.2, temperature=1.0, *, chunk_tokens=256,
                            loss_mask=None, aggregation="seq_mean_token_mean", return_stats=False,
                            with_entropy=False)
        -> loss (0-d) or (loss, PolicyLossStats), differentiable w.r.t. hidden and lm_head_weight

Memory beyond the inputs and the two gradients: one [chunk_tokens, V] logits chunk and O(N·(K + H))
(plus grad_W's fp32 accumulator for 16-bit weights); kernels/linear_ops.py says why chunked rather than
fully fused (the tested row kernels are reused; the matmul is cuBLAS's, or the CPU BLAS's).

The O(N) objectives around log-probs (GSPO, self-distillation NLL, k3 KL, aggregation, m_t, Â_t) are
in kernels.objectives and re-exported here.

Backends: CUDA → Triton, CPU → C++ (build with `make csrc`; the library is found at
$VISD_CPU_KERNELS_LIB or <repo>/build/libvisd_cpu_kernels.so, and if it is missing CPU ops fall
back to the reference with one loud warning). VISD_KERNEL_BACKEND=reference|triton|cpp forces one;
triton on CPU tensors runs the Triton interpreter (TRITON_INTERPRET=1).

Not the Hugging Face `kernels` package: this package has no distribution named `kernels` and its
version is below the range transformers accepts, so transformers' is_kernels_available() is False.
"""

from kernels.linear_ops import linear_teacher_topk, linear_token_logprobs, linear_visd_policy_loss
from kernels.objectives import (AGGREGATIONS, aggregate, aggregation_weights, gspo_loss, k3_kl,
                                reweighted_advantage, self_distillation_nll, token_weight)
from kernels.ops import teacher_topk, token_logprobs, topk_logratio, visd_policy_loss
from kernels.stats import PolicyLossStats
from kernels.support import TeacherSupport

__version__ = "0.1.0"  # the visd distribution's version; far below the HF `kernels` range transformers wants

__all__ = [
    "AGGREGATIONS", "PolicyLossStats", "TeacherSupport", "aggregate", "aggregation_weights", "gspo_loss",
    "k3_kl", "linear_teacher_topk", "linear_token_logprobs", "linear_visd_policy_loss", "reweighted_advantage",
    "self_distillation_nll", "teacher_topk", "token_logprobs", "token_weight", "topk_logratio", "visd_policy_loss",
]
