// The CPU ops registered under torch.ops.visd_cpu (see register.cpp for their schemas).
#pragma once

#include <optional>
#include <tuple>

#include <torch/torch.h>

namespace visd {

// -> (logprobs [N], row max of z/T [N], log sum exp(z/T - max) [N], entropy [N] or [0])
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> token_logprobs(const at::Tensor& logits,
                                                                          const at::Tensor& tokens,
                                                                          double temperature, bool with_entropy);

// -> grad_logits [N, V] = grad_logprobs_t * (onehot(y_t) - softmax(z_t / T)) / T
at::Tensor token_logprobs_backward(const at::Tensor& logits, const at::Tensor& tokens,
                                   const at::Tensor& row_max, const at::Tensor& log_sum,
                                   const at::Tensor& grad_logprobs, double temperature);

// -> (topk ids [N, K], tempered topk logits [N, K], tempered logit at y_t [N], log q(y_t) [N] or [0];
//     the last only for K = 0)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> teacher_topk(const at::Tensor& logits,
                                                                        const at::Tensor& tokens,
                                                                        int64_t k, double temperature);

// -> (loss [], stats [9, N]); writes dL/dlogits into grad_out when given (grad_out may be logits).
std::tuple<at::Tensor, at::Tensor> policy_loss(
    const at::Tensor& logits, const at::Tensor& tokens, const at::Tensor& old_logprobs,
    const at::Tensor& advantages, const at::Tensor& loss_weights, const std::optional<at::Tensor>& delta,
    const std::optional<at::Tensor>& support_ids, const std::optional<at::Tensor>& support_logits,
    const std::optional<at::Tensor>& support_token_logit, const std::optional<at::Tensor>& support_token_logprob,
    double lam, double eps_w, double clip_low, double clip_high, double temperature, bool with_entropy,
    const std::optional<at::Tensor>& grad_out);

}  // namespace visd
