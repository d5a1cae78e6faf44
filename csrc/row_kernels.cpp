// Picks, once per process, the row kernels compiled for the best instruction set this CPU supports.
#include "row_kernels.h"

#include <cstdlib>
#include <cstring>

namespace visd {

#define VISD_DECLARE_ISA(ns)                \
  namespace ns {                            \
  template <typename S>                     \
  RowKernels<S> make_row_kernels();         \
  }
VISD_DECLARE_ISA(isa_base)
#if VISD_HAVE_AVX2
VISD_DECLARE_ISA(isa_avx2)
#endif
#if VISD_HAVE_AVX512
VISD_DECLARE_ISA(isa_avx512)
#endif
#undef VISD_DECLARE_ISA

namespace {

// VISD_CPU_ISA caps the choice (for tests and comparisons); unset means the best available.
bool allowed(const char* isa) {
  const char* cap = std::getenv("VISD_CPU_ISA");
  if (cap == nullptr || *cap == '\0' || std::strcmp(cap, "avx512") == 0) return true;
  if (std::strcmp(cap, "avx2") == 0) return std::strcmp(isa, "avx512") != 0;
  return std::strcmp(isa, "base") == 0;
}

template <typename S>
RowKernels<S> choose() {
#if VISD_HAVE_AVX512
  if (allowed("avx512") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return isa_avx512::make_row_kernels<S>();
  }
#endif
#if VISD_HAVE_AVX2
  if (allowed("avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return isa_avx2::make_row_kernels<S>();
  }
#endif
  return isa_base::make_row_kernels<S>();
}

}  // namespace

template <typename S>
const RowKernels<S>& row_kernels() {
  static const RowKernels<S> chosen = choose<S>();
  return chosen;
}

template const RowKernels<float>& row_kernels<float>();
template const RowKernels<double>& row_kernels<double>();
template const RowKernels<bf16_bits>& row_kernels<bf16_bits>();

}  // namespace visd
