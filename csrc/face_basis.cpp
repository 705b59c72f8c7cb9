// The dense face shape, mean + coefficients @ basis, with the basis stored in half precision.
//
// The product reads the whole basis once per face (50 x 115,095 numbers) and does two flops
// per number read, so its time is the time to read the basis: float32 is 23 MB, more than most
// CPUs' last-level cache share, half precision is 11.5 MB. Half precision keeps 11 significant
// bits, far below a pixel after projection (docs/measurements.md). numpy has no fast half
// precision product, hence this kernel.
//
// Layout: the basis is cut into blocks of 32 outputs; block g holds, for each coefficient k,
// the 32 basis values of outputs 32g..32g+31, so the whole product is one sequential read.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define DENSEHEAD_X86 1
#else
#define DENSEHEAD_X86 0
#endif

namespace py = pybind11;

namespace {

constexpr int kBlock = 32;  // a multiple of 8 (one AVX vector)

// IEEE half (binary16) to float, exact for every half value, subnormals and infinities too.
float half_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0x1fu) {
        bits = sign | 0x7f800000u | (mantissa << 13);  // infinity or NaN
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {  // subnormal: normalise it
        int e = -1;
        do {
            ++e;
            mantissa <<= 1;
        } while (!(mantissa & 0x400u));
        bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mantissa & 0x3ffu) << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

void shape_portable(const float* mean, const uint16_t* basis, const float* coeffs, int k_count,
                    int64_t blocks, float* out) {
    for (int64_t g = 0; g < blocks; ++g) {
        float acc[kBlock];
        for (int j = 0; j < kBlock; ++j) acc[j] = mean[g * kBlock + j];
        const uint16_t* b = basis + g * k_count * kBlock;
        for (int k = 0; k < k_count; ++k) {
            for (int j = 0; j < kBlock; ++j) acc[j] += coeffs[k] * half_to_float(b[k * kBlock + j]);
        }
        for (int j = 0; j < kBlock; ++j) out[g * kBlock + j] = acc[j];
    }
}

#if DENSEHEAD_X86
// F16C converts 8 halves in one instruction; every AVX2 CPU has it. A block's 32 values of one
// coefficient are one cache line. Eight accumulators (4 vectors x even and odd coefficients)
// keep eight chains of FMAs in flight: with fewer the loop waits on FMA latency, not memory.
__attribute__((target("avx2,fma,f16c"))) void shape_avx2(const float* mean,
                                                         const uint16_t* basis,
                                                         const float* coeffs, int k_count,
                                                         int64_t blocks, float* out) {
    constexpr int kVectors = kBlock / 8;
    for (int64_t g = 0; g < blocks; ++g) {
        const uint16_t* row = basis + g * k_count * kBlock;
        __m256 even[kVectors], odd[kVectors];
        for (int v = 0; v < kVectors; ++v) {
            even[v] = _mm256_loadu_ps(mean + g * kBlock + 8 * v);
            odd[v] = _mm256_setzero_ps();
        }
        int k = 0;
        for (; k + 2 <= k_count; k += 2, row += 2 * kBlock) {
            const __m256 c0 = _mm256_set1_ps(coeffs[k]);
            const __m256 c1 = _mm256_set1_ps(coeffs[k + 1]);
            for (int v = 0; v < kVectors; ++v) {
                const __m128i h0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 8 * v));
                const __m128i h1 =
                    _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + kBlock + 8 * v));
                even[v] = _mm256_fmadd_ps(c0, _mm256_cvtph_ps(h0), even[v]);
                odd[v] = _mm256_fmadd_ps(c1, _mm256_cvtph_ps(h1), odd[v]);
            }
        }
        if (k < k_count) {
            const __m256 c0 = _mm256_set1_ps(coeffs[k]);
            for (int v = 0; v < kVectors; ++v) {
                const __m128i h0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 8 * v));
                even[v] = _mm256_fmadd_ps(c0, _mm256_cvtph_ps(h0), even[v]);
            }
        }
        for (int v = 0; v < kVectors; ++v) {
            _mm256_storeu_ps(out + g * kBlock + 8 * v, _mm256_add_ps(even[v], odd[v]));
        }
    }
}
#endif

// Whether this CPU runs the vector loop. The plain loop converts halves bit by bit, over ten
// times slower than numpy's float32 product: the library uses this kernel only where this holds.
bool has_fast_path() {
#if DENSEHEAD_X86
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                            __builtin_cpu_supports("f16c");
    return yes;
#else
    return false;
#endif
}

// mean: float32 (32G,); basis: uint16 (G, K, 32) holding halves; coeffs: float32 (K,).
// Returns float32 (32G,): mean + the coefficients' sum of the basis. `portable` runs the plain
// C++ loop even where the AVX2 one could (for the tests).
py::array_t<float> dense_shape(const py::array_t<float, py::array::c_style>& mean,
                               const py::array_t<uint16_t, py::array::c_style>& basis,
                               const py::array_t<float, py::array::c_style>& coeffs,
                               bool portable) {
    if (basis.ndim() != 3 || basis.shape(2) != kBlock) {
        throw py::value_error("basis must be uint16 of shape (blocks, coefficients, " +
                              std::to_string(kBlock) + ")");
    }
    const int64_t blocks = basis.shape(0);
    const int64_t k_count = basis.shape(1);
    if (mean.ndim() != 1 || mean.shape(0) != blocks * kBlock) {
        throw py::value_error("mean must be float32 of shape (" + std::to_string(blocks * kBlock) +
                              ",) to match the basis");
    }
    if (coeffs.ndim() != 1 || coeffs.shape(0) != k_count) {
        throw py::value_error("coeffs must be float32 of shape (" + std::to_string(k_count) +
                              ",) to match the basis");
    }
    py::array_t<float> out(blocks * kBlock);
    const float* m = mean.data();
    const uint16_t* b = basis.data();
    const float* c = coeffs.data();
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        const bool vector = !portable && has_fast_path();
#if DENSEHEAD_X86
        if (vector) shape_avx2(m, b, c, static_cast<int>(k_count), blocks, o);
#endif
        if (!vector) shape_portable(m, b, c, static_cast<int>(k_count), blocks, o);
    }
    return out;
}

}  // namespace

PYBIND11_MODULE(_face_basis, m) {
    m.doc() = "the dense face shape from a half-precision basis (use densehead.engine.face_model)";
    m.def("dense_shape", &dense_shape, py::arg("mean"), py::arg("basis"), py::arg("coeffs"),
          py::arg("portable") = false,
          "float32 mean + coeffs @ basis, the basis half precision in blocks of 32 outputs.");
    m.def("has_fast_path", &has_fast_path,
          "Whether this CPU runs the vector loop (x86-64 with AVX2, FMA and F16C).");
}
