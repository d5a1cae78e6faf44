// Scalar building blocks of the CPU kernels, written so that GCC/Clang vectorize the loops that call
// them: no libm calls, no branches that cannot become blends, bf16 handled as raw 16-bit patterns.
// Everything here is `static`: row_kernels_isa.cpp includes it once per instruction set, and internal
// linkage keeps an AVX-512 copy from ever replacing the baseline one at link time.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#define VISD_INLINE static inline __attribute__((always_inline))

namespace visd {

// bf16 tensors are read and written as their bit patterns so the loops stay plain integer/float code.
using bf16_bits = uint16_t;

// Accumulation type: fp32 for fp32 and bf16 inputs, fp64 for fp64 inputs (gradcheck, fp64 truth).
template <typename S>
using acc_t = std::conditional_t<std::is_same_v<S, double>, double, float>;

VISD_INLINE float to_float(float x) { return x; }
VISD_INLINE double to_float(double x) { return x; }
VISD_INLINE float to_float(bf16_bits x) {
  const uint32_t bits = static_cast<uint32_t>(x) << 16;  // bf16 is the top half of an fp32
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

VISD_INLINE void store_from(float v, float* out) { *out = v; }
VISD_INLINE void store_from(double v, double* out) { *out = v; }
VISD_INLINE void store_from(float v, bf16_bits* out) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  bits += 0x7FFFu + ((bits >> 16) & 1u);  // round to nearest even (gradients are finite, no NaN path)
  *out = static_cast<bf16_bits>(bits >> 16);
}

template <typename A>
VISD_INLINE A max_of(A a, A b) { return a > b ? a : b; }
template <typename A>
VISD_INLINE A min_of(A a, A b) { return a < b ? a : b; }

// e^x for x <= ~0 (every call site subtracts a running max or a logsumexp first). Cephes expf's
// reduction x = n ln2 + r, |r| <= ln2/2, and degree-5 polynomial for e^r; n is rounded by adding
// 1.5 * 2^23, whose low mantissa bits then hold n, so 2^n is built from those bits directly. About
// 1.3 ulp. Results below 2^-125 flush to 0 (a probability that small changes nothing here), which
// also makes exp(-inf) = 0 for masked vocabulary entries.
VISD_INLINE float exp_approx(float x) {
  const float xc = x < -87.0f ? -87.0f : x;
  const float rounded = xc * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23 + x / ln2
  const float n = rounded - 12582912.0f;                           // round(x / ln2)
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;  // ln2 split in two for an exact reduction
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * (r * r) + (r + 1.0f);
  int32_t bits;
  std::memcpy(&bits, &rounded, sizeof bits);
  const int32_t exponent = (bits + 127) << 23;  // n sits in the low bits: 2^n in the exponent field
  float scale;
  std::memcpy(&scale, &exponent, sizeof scale);
  return x < -87.0f ? 0.0f : y * scale;
}
VISD_INLINE double exp_approx(double x) { return std::exp(x); }  // fp64 path: exactness over speed

}  // namespace visd
