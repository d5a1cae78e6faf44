// Streaming primitives over one vocabulary row: the pieces every CPU op is built from. A row is read
// in L1-sized chunks; nothing of size V is ever allocated. They are compiled once per instruction set
// (row_kernels_isa.cpp) and row_kernels<S>() hands out the best set this CPU runs.
#pragma once

#include <cstdint>

#include "vec_math.h"

namespace visd {

// Online logsumexp of z/T over a row, kept as max + log_sum: log-probabilities are then formed as
// (z/T - max) - log_sum, which is as accurate as torch's log_softmax, whereas the single fp32 number
// max + log_sum would lose an ulp of |z/T| (4e-6 at |z/T| = 120). Optionally also the entropy.
template <typename A>
struct RowLse {
  A max;      // max of z/T
  A log_sum;  // log sum exp(z/T - max)
  A entropy;  // only filled when requested
};

template <typename A>
struct TopEntry {
  A value;
  int64_t index;
};

// S is the storage type of a row (float, double, bf16_bits), A = acc_t<S> its accumulation type.
template <typename S>
struct RowKernels {
  using A = acc_t<S>;
  // One streaming pass: logsumexp of row / T (and its entropy when asked).
  RowLse<A> (*logsumexp)(const S* row, int64_t V, A inv_t, bool with_entropy);
  // out = coef * (onehot(y) - softmax(row / T)) / T, the gradient of coef * log pi(y); `out` may
  // alias `row` (the in-place backward): every element is read before it is overwritten.
  void (*logprob_grad)(const S* row, S* out, int64_t V, int64_t y, A inv_t, const RowLse<A>& lse, A coef);
  void (*zero)(S* out, int64_t V);
  // Running top-k in one sweep; chunks whose max cannot beat the current k-th best are skipped after
  // one vectorized max. Ties go to the lower index. Writes ids and raw (untempered) values, best
  // first. `heap` is caller-owned scratch of k entries, reused across rows.
  void (*topk)(const S* row, int64_t V, int64_t k, TopEntry<A>* heap, int64_t* ids_out, A* values_out);
  const char* isa;  // which instruction set these were compiled for
};

// The kernels for this CPU: AVX-512, else AVX2+FMA, else the portable baseline. VISD_CPU_ISA=
// avx512|avx2|base caps the choice (tests run the lower sets on machines that have the higher ones).
template <typename S>
const RowKernels<S>& row_kernels();

}  // namespace visd
