// Registers the CPU kernels as torch.ops.visd_cpu.*. They carry no autograd: kernels/ops.py wraps them
// in the differentiable torch.library custom ops (visd::*) that the public API calls.
#include <string>

#include <torch/library.h>

#include "ops.h"
#include "row_kernels.h"

namespace {
// Which instruction set the row kernels run with on this machine (benchmarks and tests report it).
std::string cpu_isa() { return visd::row_kernels<float>().isa; }
}  // namespace

TORCH_LIBRARY(visd_cpu, m) {
  m.def("cpu_isa() -> str", &cpu_isa);
  m.def("token_logprobs(Tensor logits, Tensor tokens, float temperature, bool with_entropy)"
        " -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("token_logprobs_backward(Tensor logits, Tensor tokens, Tensor row_max, Tensor log_sum,"
        " Tensor grad_logprobs, float temperature) -> Tensor");
  m.def("teacher_topk(Tensor logits, Tensor tokens, int k, float temperature)"
        " -> (Tensor, Tensor, Tensor, Tensor)");
  // grad_out is written when given; it may be `logits` itself (the in-place backward).
  m.def("policy_loss(Tensor logits, Tensor tokens, Tensor old_logprobs, Tensor advantages,"
        " Tensor loss_weights, Tensor? delta, Tensor? support_ids, Tensor? support_logits,"
        " Tensor? support_token_logit, Tensor? support_token_logprob, float lam, float eps_w, float clip_low,"
        " float clip_high, float temperature, bool with_entropy, Tensor(a!)? grad_out)"
        " -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(visd_cpu, CPU, m) {
  m.impl("token_logprobs", &visd::token_logprobs);
  m.impl("token_logprobs_backward", &visd::token_logprobs_backward);
  m.impl("teacher_topk", &visd::teacher_topk);
  m.impl("policy_loss", &visd::policy_loss);
}
