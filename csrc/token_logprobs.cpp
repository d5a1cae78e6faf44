// log pi(y_t) = z_y/T - logsumexp(z/T) per token, its fused backward, and (optionally) the entropy of
// softmax(z/T) from the same sweep. OpenMP over tokens; each token streams its own vocabulary row.
#include "ops.h"

#include "checks.h"
#include "row_kernels.h"

namespace visd {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> token_logprobs(const at::Tensor& logits,
                                                                          const at::Tensor& tokens,
                                                                          double temperature, bool with_entropy) {
  check_logits_and_tokens(logits, tokens);
  const int64_t N = logits.size(0), V = logits.size(1), stride = logits.stride(0);
  auto logprobs = at::empty({N}, acc_options(logits));
  auto row_max = at::empty({N}, acc_options(logits));
  auto log_sum = at::empty({N}, acc_options(logits));
  auto entropy = at::empty({with_entropy ? N : 0}, acc_options(logits));
  const int64_t* y = tokens.data_ptr<int64_t>();
  dispatch_logits(logits, [&]<typename S>() {
    using A = acc_t<S>;
    const S* base = rows_of<S>(logits);
    A* lp = static_cast<A*>(logprobs.data_ptr());
    A* out_max = static_cast<A*>(row_max.data_ptr());
    A* out_log_sum = static_cast<A*>(log_sum.data_ptr());
    A* out_ent = with_entropy ? static_cast<A*>(entropy.data_ptr()) : nullptr;
    const A inv_t = A(1.0 / temperature);
    const RowKernels<S>& rows = row_kernels<S>();
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; ++t) {
      const S* row = base + t * stride;
      const RowLse<A> r = rows.logsumexp(row, V, inv_t, with_entropy);
      out_max[t] = r.max;
      out_log_sum[t] = r.log_sum;
      lp[t] = (to_float(row[y[t]]) * inv_t - r.max) - r.log_sum;  // as torch's log_softmax rounds it
      if (with_entropy) out_ent[t] = r.entropy;
    }
  });
  return {logprobs, row_max, log_sum, entropy};
}

at::Tensor token_logprobs_backward(const at::Tensor& logits, const at::Tensor& tokens,
                                   const at::Tensor& row_max, const at::Tensor& log_sum,
                                   const at::Tensor& grad_logprobs, double temperature) {
  check_logits_and_tokens(logits, tokens);
  check_per_token(row_max, logits, "row_max");
  check_per_token(log_sum, logits, "log_sum");
  check_per_token(grad_logprobs, logits, "grad_logprobs");
  const int64_t N = logits.size(0), V = logits.size(1), stride = logits.stride(0);
  auto grad = at::empty({N, V}, logits.options());
  const int64_t* y = tokens.data_ptr<int64_t>();
  dispatch_logits(logits, [&]<typename S>() {
    using A = acc_t<S>;
    const S* base = rows_of<S>(logits);
    S* out = mutable_rows_of<S>(grad);
    const A* g = static_cast<const A*>(grad_logprobs.data_ptr());
    const A* maxes = static_cast<const A*>(row_max.data_ptr());
    const A* log_sums = static_cast<const A*>(log_sum.data_ptr());
    const A inv_t = A(1.0 / temperature);
    const RowKernels<S>& rows = row_kernels<S>();
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; ++t) {
      if (g[t] == 0) {
        rows.zero(out + t * V, V);  // masked / unused tokens skip the softmax sweep
      } else {
        const RowLse<A> lse{maxes[t], log_sums[t], A(0)};
        rows.logprob_grad(base + t * stride, out + t * V, V, y[t], inv_t, lse, g[t]);
      }
    }
  });
  return grad;
}

}  // namespace visd
