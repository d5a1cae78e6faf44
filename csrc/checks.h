// Argument checks and dtype dispatch shared by the CPU ops.
#pragma once

#include <torch/torch.h>

#include "vec_math.h"

namespace visd {

inline void check_logits_and_tokens(const at::Tensor& logits, const at::Tensor& tokens) {
  TORCH_CHECK(logits.device().is_cpu(), "visd_cpu: logits must be on the CPU");
  TORCH_CHECK(logits.dim() == 2, "visd_cpu: logits must be [N, V], got ", logits.sizes());
  TORCH_CHECK(logits.stride(1) == 1, "visd_cpu: logits rows must be contiguous");
  TORCH_CHECK(tokens.dim() == 1 && tokens.size(0) == logits.size(0) && tokens.scalar_type() == at::kLong,
              "visd_cpu: tokens must be int64 [N] matching logits");
  TORCH_CHECK(tokens.is_contiguous(), "visd_cpu: tokens must be contiguous");
}

inline void check_per_token(const at::Tensor& t, const at::Tensor& logits, const char* name) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == logits.size(0) && t.is_contiguous(), "visd_cpu: ", name,
              " must be a contiguous [N] tensor");
  TORCH_CHECK(t.scalar_type() == (logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat),
              "visd_cpu: ", name, " must be fp64 for fp64 logits, else fp32");
}

// Per-token outputs are in the accumulation dtype: fp64 for fp64 logits, else fp32.
inline at::TensorOptions acc_options(const at::Tensor& logits) {
  return logits.options().dtype(logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
}

// Calls f.template operator()<S>() with S the storage type of the logits (float, double, bf16 bits).
template <typename F>
void dispatch_logits(const at::Tensor& logits, F&& f) {
  switch (logits.scalar_type()) {
    case at::kFloat: return f.template operator()<float>();
    case at::kDouble: return f.template operator()<double>();
    case at::kBFloat16: return f.template operator()<bf16_bits>();
    default: TORCH_CHECK(false, "visd_cpu: logits must be fp32, bf16 or fp64, got ", logits.scalar_type());
  }
}

template <typename S>
const S* rows_of(const at::Tensor& t) {
  return reinterpret_cast<const S*>(t.data_ptr());
}
template <typename S>
S* mutable_rows_of(const at::Tensor& t) {
  return reinterpret_cast<S*>(t.data_ptr());
}

}  // namespace visd
