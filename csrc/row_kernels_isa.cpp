// The row kernels, compiled once per instruction set: CMakeLists.txt builds this file with
// VISD_ISA=isa_base (portable flags), isa_avx2 (-mavx2 -mfma) and isa_avx512 (-mavx512*), each into
// its own namespace; row_kernels.cpp picks one at run time. Nothing from the STL is instantiated
// here, so no template compiled with AVX-512 can be shared (COMDAT) with the baseline code.
#ifndef VISD_ISA
#error "compile row_kernels_isa.cpp with -DVISD_ISA=<namespace>"
#endif

#include "row_kernels.h"

namespace visd {
namespace VISD_ISA {
namespace {

constexpr int64_t kLseChunk = 2048;  // per chunk: one fused exp-sum-and-max pass, then O(1) rescaling
constexpr int64_t kTopkChunk = 128;  // small, so a chunk that cannot enter the top-k is skipped cheaply
// A chunk is summed against the running max of the chunks before it (one pass instead of max-then-sum);
// if its own max exceeds that by more than this, exp could overflow, so it is summed again.
constexpr float kMaxStaleShift = 64.0f;  // e^64 * 2048 terms stays far below fp32's 3.4e38

template <typename A>
struct ChunkSums {
  A sum;     // sum_i exp(v_i - shift)
  A moment;  // sum_i exp(v_i - shift) * (v_i - shift), the entropy's first moment (when asked for)
  A max;     // max_i v_i
};

template <typename S>
acc_t<S> chunk_max(const S* x, int64_t n) {
  acc_t<S> m = -std::numeric_limits<acc_t<S>>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) {
    const acc_t<S> v = to_float(x[i]);
    m = v > m ? v : m;
  }
  return m;
}

// One pass over v = x / T: the sums against `shift` and the max. Masked entries (v = -inf) add e = 0
// and, to the moment, 0 * (-87) rather than 0 * inf = NaN (exp_approx is 0 below -87 anyway).
template <bool kMoment, typename S>
ChunkSums<acc_t<S>> chunk_sums(const S* x, int64_t n, acc_t<S> inv_t, acc_t<S> shift) {
  using A = acc_t<S>;
  A sum = 0, moment = 0, max = -std::numeric_limits<A>::infinity();
#pragma omp simd reduction(+ : sum, moment) reduction(max : max)
  for (int64_t i = 0; i < n; ++i) {
    const A v = to_float(x[i]) * inv_t;
    const A u = v - shift;
    const A e = exp_approx(u);
    sum += e;
    if constexpr (kMoment) moment += e * (u < A(-87) ? A(-87) : u);
    max = v > max ? v : max;
  }
  return {sum, moment, max};
}

template <typename S>
RowLse<acc_t<S>> row_logsumexp(const S* row, int64_t V, acc_t<S> inv_t, bool with_entropy) {
  using A = acc_t<S>;
  const A neg_inf = -std::numeric_limits<A>::infinity();
  A m = neg_inf;  // running max of z/T
  A s = 0;        // sum exp(z/T - m)
  A w = 0;        // sum exp(z/T - m) * (z/T - m): entropy = log s - w / s
  const auto recenter = [&](A new_m) {  // online softmax: move the running sums to a larger max
    const A f = std::exp(m - new_m);
    w = f * (w - (new_m - m) * s);
    s *= f;
    m = new_m;
  };
  const auto sums = [&](const S* x, int64_t n) {
    return with_entropy ? chunk_sums<true>(x, n, inv_t, m) : chunk_sums<false>(x, n, inv_t, m);
  };
  for (int64_t c0 = 0; c0 < V; c0 += kLseChunk) {
    const int64_t n = min_of(kLseChunk, V - c0);
    if (m == neg_inf) {  // nothing finite seen yet: take this chunk's max as the first shift
      m = chunk_max(row + c0, n) * inv_t;  // max commutes with the monotone scaling by 1/T
      if (m == neg_inf) continue;          // a fully masked chunk
    }
    ChunkSums<A> c = sums(row + c0, n);
    if (c.max > m + A(kMaxStaleShift)) {  // far above the stale shift: e^(v - m) may overflow, redo
      recenter(c.max);
      c = sums(row + c0, n);
    }
    s += c.sum;  // both against the same m
    w += c.moment;
    if (c.max > m) recenter(c.max);
  }
  const A log_s = std::log(s);
  return {m, log_s, with_entropy ? log_s - w / s : A(0)};
}

template <typename S>
void row_logprob_grad(const S* row, S* out, int64_t V, int64_t y, acc_t<S> inv_t, const RowLse<acc_t<S>>& lse,
                      acc_t<S> coef) {
  using A = acc_t<S>;
  // Locals, not lse.*: a float `out` could alias the struct, which would stop vectorization.
  const A max = lse.max, log_sum = lse.log_sum, scale = -coef * inv_t;
  const A logprob_y = (to_float(row[y]) * inv_t - max) - log_sum;  // read before the sweep overwrites it
#pragma omp simd
  for (int64_t i = 0; i < V; ++i) {  // -coef p_v / T, p_v formed without ever adding max + log_sum
    store_from(scale * exp_approx((to_float(row[i]) * inv_t - max) - log_sum), out + i);
  }
  store_from(-coef * inv_t * std::expm1(logprob_y), out + y);  // coef (1 - p_y) / T, no cancellation at p_y ~ 1
}

template <typename S>
void row_zero(S* out, int64_t V) {
  std::memset(out, 0, sizeof(S) * V);  // +0.0 is all-zero bits in fp32, fp64 and bf16
}

// Top-k bookkeeping: a binary heap whose root is the worst kept entry. `better` orders by value, then
// by lower index (the tie rule).
template <typename A>
VISD_INLINE bool better(const TopEntry<A>& a, const TopEntry<A>& b) {
  return a.value > b.value || (a.value == b.value && a.index < b.index);
}

template <typename A>
void sift_down(TopEntry<A>* heap, int64_t size, int64_t i) {
  for (;;) {
    int64_t worst = i;
    const int64_t left = 2 * i + 1, right = 2 * i + 2;
    if (left < size && better(heap[worst], heap[left])) worst = left;
    if (right < size && better(heap[worst], heap[right])) worst = right;
    if (worst == i) return;
    const TopEntry<A> t = heap[i];
    heap[i] = heap[worst];
    heap[worst] = t;
    i = worst;
  }
}

template <typename A>
void sift_up(TopEntry<A>* heap, int64_t i) {
  while (i > 0 && better(heap[(i - 1) / 2], heap[i])) {
    const int64_t parent = (i - 1) / 2;
    const TopEntry<A> t = heap[i];
    heap[i] = heap[parent];
    heap[parent] = t;
    i = parent;
  }
}

template <typename S>
void row_topk(const S* row, int64_t V, int64_t k, TopEntry<acc_t<S>>* heap, int64_t* ids_out,
              acc_t<S>* values_out) {
  int64_t size = 0;
  for (int64_t c0 = 0; c0 < V; c0 += kTopkChunk) {
    const int64_t n = min_of(kTopkChunk, V - c0);
    // Later indices lose ties, so a chunk enters only if some value is strictly above the k-th best.
    if (size == k && !(chunk_max(row + c0, n) > heap[0].value)) continue;
    for (int64_t i = 0; i < n; ++i) {
      const TopEntry<acc_t<S>> e{to_float(row[c0 + i]), c0 + i};
      if (size < k) {
        heap[size] = e;
        sift_up(heap, size++);
      } else if (better(e, heap[0])) {
        heap[0] = e;
        sift_down(heap, k, 0);
      }
    }
  }
  for (int64_t end = k - 1; end > 0; --end) {  // heapsort: the worst goes last, so best ends up first
    const TopEntry<acc_t<S>> t = heap[0];
    heap[0] = heap[end];
    heap[end] = t;
    sift_down(heap, end, 0);
  }
  for (int64_t j = 0; j < k; ++j) {
    ids_out[j] = heap[j].index;
    values_out[j] = heap[j].value;
  }
}

#define VISD_STRINGIFY(x) #x
#define VISD_NAME(x) VISD_STRINGIFY(x)

}  // namespace

template <typename S>
RowKernels<S> make_row_kernels() {
  return {&row_logsumexp<S>, &row_logprob_grad<S>, &row_zero<S>, &row_topk<S>, VISD_NAME(VISD_ISA)};
}

template RowKernels<float> make_row_kernels<float>();
template RowKernels<double> make_row_kernels<double>();
template RowKernels<bf16_bits> make_row_kernels<bf16_bits>();

}  // namespace VISD_ISA
}  // namespace visd
