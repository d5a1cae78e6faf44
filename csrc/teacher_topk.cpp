// The O(N*K) teacher summary (visd eq. 3, 20): one sweep per teacher row keeps a running top-K (ties to
// the lower index) and reads the teacher logit at y_t. Only K = 0 (the sampled-token variant) needs the
// full-vocabulary normalizer, to give log q(y_t): for K > 0 it cancels on U_t (eq. 21).
#include "ops.h"

#include <vector>

#include "checks.h"
#include "row_kernels.h"

namespace visd {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> teacher_topk(const at::Tensor& logits,
                                                                        const at::Tensor& tokens,
                                                                        int64_t k, double temperature) {
  check_logits_and_tokens(logits, tokens);
  const int64_t N = logits.size(0), V = logits.size(1), stride = logits.stride(0);
  TORCH_CHECK(k >= 0 && k <= V, "visd_cpu: teacher_topk needs 0 <= k <= V, got k=", k, ", V=", V);
  auto ids = at::empty({N, k}, logits.options().dtype(at::kLong));
  auto topk_logits = at::empty({N, k}, acc_options(logits));
  auto token_logit = at::empty({N}, acc_options(logits));
  auto token_logprob = at::empty({k == 0 ? N : 0}, acc_options(logits));
  const int64_t* y = tokens.data_ptr<int64_t>();
  dispatch_logits(logits, [&]<typename S>() {
    using A = acc_t<S>;
    const S* base = rows_of<S>(logits);
    int64_t* out_ids = ids.data_ptr<int64_t>();
    A* out_vals = static_cast<A*>(topk_logits.data_ptr());
    A* out_tok = static_cast<A*>(token_logit.data_ptr());
    A* out_logprob = k == 0 ? static_cast<A*>(token_logprob.data_ptr()) : nullptr;
    const A inv_t = A(1.0 / temperature);
    const RowKernels<S>& rows = row_kernels<S>();
#pragma omp parallel
    {
      std::vector<TopEntry<A>> heap(k);  // per-thread scratch, reused across rows
#pragma omp for schedule(dynamic, 16)
      for (int64_t t = 0; t < N; ++t) {
        const S* row = base + t * stride;
        out_tok[t] = to_float(row[y[t]]) * inv_t;
        if (k == 0) {
          const RowLse<A> lse = rows.logsumexp(row, V, inv_t, /*with_entropy=*/false);
          out_logprob[t] = (out_tok[t] - lse.max) - lse.log_sum;  // log q(y_t)
          continue;
        }
        // Top-K of z equals top-K of z/T for T > 0, so select on raw logits and scale the K winners.
        rows.topk(row, V, k, heap.data(), out_ids + t * k, out_vals + t * k);
        for (int64_t j = 0; j < k; ++j) out_vals[t * k + j] *= inv_t;
      }
    }
  });
  return {ids, topk_logits, token_logit, token_logprob};
}

}  // namespace visd
