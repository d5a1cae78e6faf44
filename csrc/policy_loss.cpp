// The fused VISD policy loss (visd eq. 3-7, 16-17) straight from student logits. Per token: one sweep
// for the online logsumexp, K gathers for the support log-ratio, O(1) scalar math, then (when a
// gradient is wanted and its coefficient is non-zero) one sweep writing c_t (onehot(y) - softmax) / T.
#include "ops.h"

#include <algorithm>

#include "checks.h"
#include "row_kernels.h"

namespace visd {
namespace {

// Rows of the [kStatRows, N] per-token stats tensor (kernels/stats.py reads the same layout).
enum StatRow : int64_t {
  kLogprob, kDelta, kTokenWeight, kAdvantageHat, kRatio, kTokenLoss, kRatioClipped, kWeightClip,
  kEntropy, kStatRows
};

// Where Delta_t comes from: nowhere (plain GRPO), a precomputed [N] tensor, or the teacher support.
enum class DeltaMode { kNone, kTensor, kSupport };

struct TokenTerms {
  double delta, token_weight, advantage_hat, ratio, loss, dloss_dlogprob;
  bool ratio_clipped;
  int weight_clip;  // -1 / +1 when m_t sits at 1 - eps_w / 1 + eps_w
};

struct LossParams {
  double lam, eps_w, clip_low, clip_high;
};

TokenTerms token_terms(double logprob, double old_logprob, double adv, double delta, bool has_delta,
                       const LossParams& p) {
  TokenTerms r{};
  r.delta = has_delta ? delta : 0.0;
  r.token_weight = 1.0;
  if (has_delta) {
    const double signed_delta = adv > 0 ? delta : (adv < 0 ? -delta : 0.0);  // sign(A) * Delta, eq. 5
    const double w = std::exp(signed_delta);
    r.token_weight = std::clamp(w, 1.0 - p.eps_w, 1.0 + p.eps_w);  // eq. 6
    r.weight_clip = w < 1.0 - p.eps_w ? -1 : (w > 1.0 + p.eps_w ? 1 : 0);
  }
  r.advantage_hat = adv * ((1.0 - p.lam) + p.lam * r.token_weight);  // eq. 7; lam = 0 gives A exactly
  r.ratio = std::exp(logprob - old_logprob);                          // eq. 17
  const double unclipped = r.ratio * r.advantage_hat;
  const double clipped = std::clamp(r.ratio, 1.0 - p.clip_low, 1.0 + p.clip_high) * r.advantage_hat;
  r.loss = -std::min(unclipped, clipped);  // eq. 16, negated: we minimize
  r.ratio_clipped = clipped < unclipped;   // the clipped branch is the min: no gradient
  r.dloss_dlogprob = r.ratio_clipped ? 0.0 : -unclipped;  // d(-rho A_hat)/d log pi = -rho A_hat
  return r;
}

// Delta_t on U_t = TopK_K(teacher) + {y_t} (eq. 20-22): both distributions renormalized on U_t, so the
// full-vocabulary normalizers cancel and only K + 1 logits of each side are needed.
template <typename S>
double support_logratio(const S* row, int64_t y, const int64_t* ids, const acc_t<S>* teacher,
                        double teacher_y, int64_t k, acc_t<S> inv_t) {
  const double student_y = to_float(row[y]) * inv_t;
  bool y_in_topk = false;
  double max_t = teacher_y, max_s = student_y;
  for (int64_t j = 0; j < k; ++j) {
    y_in_topk |= ids[j] == y;
    max_t = std::max(max_t, double(teacher[j]));
    max_s = std::max(max_s, double(to_float(row[ids[j]]) * inv_t));
  }
  double sum_t = y_in_topk ? 0.0 : std::exp(teacher_y - max_t);
  double sum_s = y_in_topk ? 0.0 : std::exp(student_y - max_s);
  for (int64_t j = 0; j < k; ++j) {
    sum_t += std::exp(double(teacher[j]) - max_t);
    sum_s += std::exp(double(to_float(row[ids[j]]) * inv_t) - max_s);
  }
  const double log_q_tilde = teacher_y - (max_t + std::log(sum_t));  // eq. 21, teacher
  const double log_pi_tilde = student_y - (max_s + std::log(sum_s));  // eq. 21, student
  return log_q_tilde - log_pi_tilde;                                   // eq. 22
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> policy_loss(
    const at::Tensor& logits, const at::Tensor& tokens, const at::Tensor& old_logprobs,
    const at::Tensor& advantages, const at::Tensor& loss_weights, const std::optional<at::Tensor>& delta,
    const std::optional<at::Tensor>& support_ids, const std::optional<at::Tensor>& support_logits,
    const std::optional<at::Tensor>& support_token_logit, const std::optional<at::Tensor>& support_token_logprob,
    double lam, double eps_w, double clip_low, double clip_high, double temperature, bool with_entropy,
    const std::optional<at::Tensor>& grad_out) {
  check_logits_and_tokens(logits, tokens);
  check_per_token(old_logprobs, logits, "old_logprobs");
  check_per_token(advantages, logits, "advantages");
  check_per_token(loss_weights, logits, "loss_weights");
  const int64_t N = logits.size(0), V = logits.size(1), stride = logits.stride(0);

  DeltaMode mode = DeltaMode::kNone;
  int64_t k = 0;
  if (delta.has_value()) {
    check_per_token(*delta, logits, "delta");
    mode = DeltaMode::kTensor;
  } else if (support_token_logit.has_value()) {
    TORCH_CHECK(support_ids.has_value() && support_logits.has_value(), "visd_cpu: incomplete support");
    check_per_token(*support_token_logit, logits, "support_token_logit");
    k = support_ids->size(1);
    TORCH_CHECK(support_ids->sizes() == support_logits->sizes() && support_ids->size(0) == N &&
                    support_ids->is_contiguous() && support_logits->is_contiguous(),
                "visd_cpu: support ids/logits must be contiguous [N, K]");
    TORCH_CHECK(k > 0 || support_token_logprob.has_value(), "visd_cpu: a K = 0 support needs log q(y_t)");
    if (k == 0) check_per_token(*support_token_logprob, logits, "support_token_logprob");
    mode = DeltaMode::kSupport;
  }
  int64_t out_stride = 0;
  if (grad_out.has_value()) {
    TORCH_CHECK(grad_out->sizes() == logits.sizes() && grad_out->scalar_type() == logits.scalar_type() &&
                    grad_out->stride(1) == 1,
                "visd_cpu: grad_out must match logits");
    out_stride = grad_out->stride(0);
  }

  auto stats = at::empty({kStatRows, N}, acc_options(logits));
  std::vector<double> weighted_loss(N, 0.0);  // summed in order afterwards: deterministic
  const LossParams params{lam, eps_w, clip_low, clip_high};
  const int64_t* y = tokens.data_ptr<int64_t>();

  dispatch_logits(logits, [&]<typename S>() {
    using A = acc_t<S>;
    const S* base = rows_of<S>(logits);
    S* out = grad_out.has_value() ? mutable_rows_of<S>(*grad_out) : nullptr;
    const A* old_lp = static_cast<const A*>(old_logprobs.data_ptr());
    const A* adv = static_cast<const A*>(advantages.data_ptr());
    const A* weight = static_cast<const A*>(loss_weights.data_ptr());
    const A* given_delta = mode == DeltaMode::kTensor ? static_cast<const A*>(delta->data_ptr()) : nullptr;
    const int64_t* sup_ids = mode == DeltaMode::kSupport ? support_ids->data_ptr<int64_t>() : nullptr;
    const A* sup_logits = mode == DeltaMode::kSupport ? static_cast<const A*>(support_logits->data_ptr()) : nullptr;
    const A* sup_tok = mode == DeltaMode::kSupport ? static_cast<const A*>(support_token_logit->data_ptr()) : nullptr;
    const A* sup_logprob =
        mode == DeltaMode::kSupport && k == 0 ? static_cast<const A*>(support_token_logprob->data_ptr()) : nullptr;
    A* st = static_cast<A*>(stats.data_ptr());
    const A inv_t = A(1.0 / temperature);
    const RowKernels<S>& rows = row_kernels<S>();

#pragma omp parallel for schedule(dynamic, 8)
    for (int64_t t = 0; t < N; ++t) {
      const S* row = base + t * stride;
      if (weight[t] == 0) {  // masked token: no loss, zero gradient, no sweep
        for (int64_t r = 0; r < kStatRows; ++r) st[r * N + t] = 0;
        if (out) rows.zero(out + t * out_stride, V);
        continue;
      }
      const RowLse<A> lse = rows.logsumexp(row, V, inv_t, with_entropy);
      const double logprob = double((to_float(row[y[t]]) * inv_t - lse.max) - lse.log_sum);  // full vocab: rho uses it
      double d = 0.0;
      if (mode == DeltaMode::kTensor) {
        d = given_delta[t];
      } else if (mode == DeltaMode::kSupport && k == 0) {
        d = double(sup_logprob[t]) - logprob;  // sampled-token variant: log q(y_t) - log pi(y_t)
      } else if (mode == DeltaMode::kSupport) {
        d = support_logratio(row, y[t], sup_ids + t * k, sup_logits + t * k, sup_tok[t], k, inv_t);
      }
      const TokenTerms tt = token_terms(logprob, old_lp[t], adv[t], d, mode != DeltaMode::kNone, params);
      st[kLogprob * N + t] = A(logprob);
      st[kDelta * N + t] = A(tt.delta);
      st[kTokenWeight * N + t] = A(tt.token_weight);
      st[kAdvantageHat * N + t] = A(tt.advantage_hat);
      st[kRatio * N + t] = A(tt.ratio);
      st[kTokenLoss * N + t] = A(tt.loss);
      st[kRatioClipped * N + t] = A(tt.ratio_clipped);
      st[kWeightClip * N + t] = A(tt.weight_clip);
      st[kEntropy * N + t] = with_entropy ? lse.entropy : A(0);
      weighted_loss[t] = double(weight[t]) * tt.loss;
      if (!out) continue;
      const double coef = double(weight[t]) * tt.dloss_dlogprob;  // c_t: dL/d log pi(y_t)
      if (coef == 0.0) {
        rows.zero(out + t * out_stride, V);  // clipped or zero-advantage token: skip the softmax sweep
      } else {
        rows.logprob_grad(row, out + t * out_stride, V, y[t], inv_t, lse, A(coef));
      }
    }
  });

  double loss = 0.0;
  for (double v : weighted_loss) loss += v;
  return {at::scalar_tensor(loss, acc_options(logits)), stats};
}

}  // namespace visd
