#include "render_core.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace densehead {
namespace {

// Vertices beyond this many pixels from the origin are treated like NaN: their triangles are
// skipped. It keeps the float edge functions well inside their precision and the integer
// conversions in range, whatever garbage comes in.
constexpr float kMaxCoord = 1.0e6f;
constexpr float kMaxDepth = 1.0e30f;
constexpr float kEmpty = -std::numeric_limits<float>::infinity();

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector) && __has_builtin(__builtin_convertvector)
#define DENSEHEAD_HAS_VECTOR_BUILTINS 1
#endif
#endif
// -DDENSEHEAD_NO_VECTORS builds the scalar fallback (to test it on GCC).
#if defined(DENSEHEAD_HAS_VECTOR_BUILTINS) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(DENSEHEAD_NO_VECTORS)
#define DENSEHEAD_VECTORS 1
// Forced inlining: the helpers must be compiled inside each target clone that calls them.
#define DENSEHEAD_INLINE inline __attribute__((always_inline))
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
#else
#define DENSEHEAD_VECTORS 0
#define DENSEHEAD_INLINE inline
#endif

// Hot loops are compiled twice, for baseline x86-64 and for AVX2, and picked at load time
// (GCC function multiversioning through an ifunc). No -march flags: the module stays portable.
#if DENSEHEAD_VECTORS && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    defined(__ELF__)
#define DENSEHEAD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DENSEHEAD_CLONES
#endif

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point& t) {
    const auto now = Clock::now();
    const double ms = std::chrono::duration<double, std::milli>(now - t).count();
    t = now;
    return ms;
}

// floor/ceil through an int conversion: std::floor is a libm call on baseline x86-64 (no
// SSE4.1 roundss), and this runs four times per triangle. Inputs are bounded by kMaxCoord.
inline int floor_i(float x) {
    const int i = static_cast<int>(x);
    return i - (x < static_cast<float>(i));
}
inline int ceil_i(float x) {
    const int i = static_cast<int>(x);
    return i + (x > static_cast<float>(i));
}

inline float clamp01(float v) {
    // Written so that NaN becomes 0: std::max(0, NaN) returns its first argument.
    return std::min(1.0f, std::max(0.0f, v));
}

// The part of the frame the faces can touch (union of their boxes, clipped to the frame).
struct Region {
    int x0 = 0, y0 = 0, w = 0, h = 0;
};

// One z-buffer cell: depth and the winner's colour packed as B | G << 8 | R << 16. Keeping
// both in 8 bytes means a 2x2 block touches two cache lines; with separate float planes it
// was eight, and the scattered triangle order made that the main cost of rasterizing.
struct Pixel {
    float z;
    uint32_t bgr;
};

// Buffers reused between calls of the same thread: no allocation in the steady state, and no
// sharing between threads (the live page renders from a worker thread).
struct Scratch {
    std::vector<uint8_t> valid;     // faces * n: vertex usable
    std::vector<float> padded;      // faces * n * 4: x, y, z, 0 per vertex (one 16-byte load)
    std::vector<float> colors;      // n * 4 (B, G, R, unused), current face, 0..255
    std::vector<float> normals;     // n * 4 (x, y, z, 0), current face
    std::vector<Pixel> pixels;      // (region w + 1) * (region h + 1)
};
thread_local Scratch scratch;

struct FaceInfo {
    float min_x, max_x, min_y, max_y, min_z, max_z;
    int n_invalid;
};

// Largest index read as unsigned (negatives become huge): a loop the compiler vectorizes.
DENSEHEAD_CLONES uint32_t max_index(const int32_t* tri, int count) {
    uint32_t top = 0;
    for (int k = 0; k < count; ++k) {
        const auto i = static_cast<uint32_t>(tri[k]);
        top = i > top ? i : top;
    }
    return top;
}

void check_indices(const int32_t* tri, int n_tri, int n_vertices) {
    // Unsigned compare catches negatives too; a single pass, done once per call.
    const auto limit = static_cast<uint32_t>(n_vertices);
    if (n_tri == 0 || max_index(tri, 3 * n_tri) < limit) return;
    for (int k = 0; k < 3 * n_tri; ++k) {
        if (static_cast<uint32_t>(tri[k]) >= limit) {
            throw std::invalid_argument(
                "triangle " + std::to_string(k / 3) + " uses vertex index " +
                std::to_string(tri[k]) + ", outside [0, " + std::to_string(n_vertices) + ")");
        }
    }
}


#if DENSEHEAD_VECTORS
// The three corners of triangles t0 .. t0 + 7 as eight-lane vectors (the tail repeats the last
// triangle, switched off in `ok`, which is -1 for the lanes to draw). The vertices come from
// the padded copy (x, y, z, 0 per vertex): one 16-byte load per corner, then 4x4 transposes.
struct Batch {
    alignas(32) int32_t i0[8], i1[8], i2[8];
    v8f ax, ay, az, bx, by, bz, cx, cy, cz;
    v8i ok;
};

DENSEHEAD_INLINE void transpose_corners(const float* pv, const int32_t* idx, v8f& x, v8f& y,
                                        v8f& z) {
    // Rows hold corners j and j + 4 in their two 128-bit halves, so that every shuffle stays
    // within a half (one instruction each with AVX2).
    v8f r[4];
    for (int j = 0; j < 4; ++j) {
        v4f lo, hi;
        std::memcpy(&lo, pv + 4 * static_cast<size_t>(idx[j]), 16);
        std::memcpy(&hi, pv + 4 * static_cast<size_t>(idx[j + 4]), 16);
        r[j] = __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7);
    }
    const v8f t0 = __builtin_shufflevector(r[0], r[1], 0, 8, 1, 9, 4, 12, 5, 13);
    const v8f t1 = __builtin_shufflevector(r[2], r[3], 0, 8, 1, 9, 4, 12, 5, 13);
    const v8f t2 = __builtin_shufflevector(r[0], r[1], 2, 10, 3, 11, 6, 14, 7, 15);
    const v8f t3 = __builtin_shufflevector(r[2], r[3], 2, 10, 3, 11, 6, 14, 7, 15);
    x = __builtin_shufflevector(t0, t1, 0, 1, 8, 9, 4, 5, 12, 13);
    y = __builtin_shufflevector(t0, t1, 2, 3, 10, 11, 6, 7, 14, 15);
    z = __builtin_shufflevector(t2, t3, 0, 1, 8, 9, 4, 5, 12, 13);
}

// The inverse: eight lanes of x, y, z back to eight (x, y, z, 0) vectors.
DENSEHEAD_INLINE void to_aos(v8f x, v8f y, v8f z, v4f out[8]) {
    const v8f zero = {};
    for (int h = 0; h < 2; ++h) {
        const v4f xs = h ? __builtin_shufflevector(x, x, 4, 5, 6, 7)
                         : __builtin_shufflevector(x, x, 0, 1, 2, 3);
        const v4f ys = h ? __builtin_shufflevector(y, y, 4, 5, 6, 7)
                         : __builtin_shufflevector(y, y, 0, 1, 2, 3);
        const v4f zs = h ? __builtin_shufflevector(z, z, 4, 5, 6, 7)
                         : __builtin_shufflevector(z, z, 0, 1, 2, 3);
        const v4f ws = __builtin_shufflevector(zero, zero, 0, 1, 2, 3);
        const v4f t0 = __builtin_shufflevector(xs, ys, 0, 4, 1, 5);  // x0 y0 x1 y1
        const v4f t1 = __builtin_shufflevector(xs, ys, 2, 6, 3, 7);  // x2 y2 x3 y3
        const v4f t2 = __builtin_shufflevector(zs, ws, 0, 4, 1, 5);  // z0 0 z1 0
        const v4f t3 = __builtin_shufflevector(zs, ws, 2, 6, 3, 7);  // z2 0 z3 0
        out[4 * h] = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
        out[4 * h + 1] = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
        out[4 * h + 2] = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
        out[4 * h + 3] = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
    }
}

template <bool CheckValid>
DENSEHEAD_INLINE void gather(Batch& b, const float* pv, const uint8_t* valid,
                             const int32_t* tri, int t0, int n_tri) {
    alignas(32) int32_t ok[8];
    if (t0 + 8 <= n_tri) {  // every batch but the last
        const int32_t* p = tri + 3 * static_cast<size_t>(t0);
        for (int j = 0; j < 8; ++j) {
            b.i0[j] = p[3 * j], b.i1[j] = p[3 * j + 1], b.i2[j] = p[3 * j + 2];
            ok[j] = -1;
        }
    } else {
        for (int j = 0; j < 8; ++j) {
            const int t = t0 + j < n_tri ? t0 + j : n_tri - 1;
            b.i0[j] = tri[3 * t], b.i1[j] = tri[3 * t + 1], b.i2[j] = tri[3 * t + 2];
            ok[j] = -static_cast<int32_t>(t0 + j < n_tri);
        }
    }
    if (CheckValid) {
        for (int j = 0; j < 8; ++j) {
            ok[j] &= -static_cast<int32_t>(valid[b.i0[j]] & valid[b.i1[j]] & valid[b.i2[j]]);
        }
    }
    std::memcpy(&b.ok, ok, 32);
    transpose_corners(pv, b.i0, b.ax, b.ay, b.az);
    transpose_corners(pv, b.i1, b.bx, b.by, b.bz);
    transpose_corners(pv, b.i2, b.cx, b.cy, b.cz);
}
#endif

FaceInfo scan_face_scalar(const float* v, int begin, int n, uint8_t* valid, float* padded,
                          FaceInfo f) {
    for (int i = begin; i < n; ++i) {
        const float x = v[3 * i], y = v[3 * i + 1], z = v[3 * i + 2];
        padded[4 * i] = x, padded[4 * i + 1] = y, padded[4 * i + 2] = z, padded[4 * i + 3] = 0.0f;
        // One comparison per axis rejects NaN, inf and huge values alike.
        const bool ok = std::fabs(x) < kMaxCoord && std::fabs(y) < kMaxCoord &&
                        std::fabs(z) < kMaxDepth;
        valid[i] = ok;
        if (!ok) {
            ++f.n_invalid;
            continue;
        }
        f.min_x = std::min(f.min_x, x);
        f.max_x = std::max(f.max_x, x);
        f.min_y = std::min(f.min_y, y);
        f.max_y = std::max(f.max_y, y);
        f.min_z = std::min(f.min_z, z);
        f.max_z = std::max(f.max_z, z);
    }
    return f;
}

// Validity of each vertex, the bounds of the valid ones, and the padded copy (x, y, z, 0).
// Eight vertices per step: eight 16-byte loads (each reads the next vertex's x too, so the
// last vertex is left to the scalar loop), stored back with lane 3 zeroed and transposed
// for the tests and bounds, all without branches.
DENSEHEAD_CLONES FaceInfo scan_face(const float* v, int n, uint8_t* valid, float* padded) {
    FaceInfo f{kMaxCoord, -kMaxCoord, kMaxCoord, -kMaxCoord, kMaxDepth, -kMaxDepth, 0};
    int i = 0;
#if DENSEHEAD_VECTORS
    const v8f zero = {};
    v8f mnx = zero + kMaxCoord, mny = zero + kMaxCoord, mnz = zero + kMaxDepth;
    v8f mxx = zero - kMaxCoord, mxy = zero - kMaxCoord, mxz = zero - kMaxDepth;
    v8i bad = {};
    const v4f keep_xyz = {1.0f, 1.0f, 1.0f, 0.0f};
    for (; i + 8 < n; i += 8) {
        v4f r[8];
        for (int j = 0; j < 8; ++j) {
            std::memcpy(&r[j], v + 3 * static_cast<size_t>(i + j), 16);
            // Lane 3 is the next vertex's x: zeroed (NaN * 0 stays NaN, so select instead).
            const v4i m = keep_xyz != 0.0f;
            r[j] = m ? r[j] : 0.0f;
        }
        std::memcpy(padded + 4 * static_cast<size_t>(i), r, sizeof r);
        v8f x, y, z;
        const int32_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
        transpose_corners(reinterpret_cast<const float*>(r), idx, x, y, z);
        const v8f ax = x < zero ? -x : x, ay = y < zero ? -y : y, az = z < zero ? -z : z;
        const v8i ok = (ax < kMaxCoord) & (ay < kMaxCoord) & (az < kMaxDepth);
        for (int j = 0; j < 8; ++j) valid[i + j] = static_cast<uint8_t>(ok[j] & 1);
        bad += ok + 1;  // -1 + 1 = 0 for valid lanes, 1 for invalid ones
        mnx = ok ? (x < mnx ? x : mnx) : mnx;
        mny = ok ? (y < mny ? y : mny) : mny;
        mnz = ok ? (z < mnz ? z : mnz) : mnz;
        mxx = ok ? (x > mxx ? x : mxx) : mxx;
        mxy = ok ? (y > mxy ? y : mxy) : mxy;
        mxz = ok ? (z > mxz ? z : mxz) : mxz;
    }
    for (int j = 0; j < 8; ++j) {
        f.min_x = std::min(f.min_x, mnx[j]), f.max_x = std::max(f.max_x, mxx[j]);
        f.min_y = std::min(f.min_y, mny[j]), f.max_y = std::max(f.max_y, mxy[j]);
        f.min_z = std::min(f.min_z, mnz[j]), f.max_z = std::max(f.max_z, mxz[j]);
        f.n_invalid += bad[j];
    }
#endif
    return scan_face_scalar(v, i, n, valid, padded, f);
}

// Area-weighted vertex normals, unnormalised, 4 floats per vertex (x, y, z, 0: one 16-byte
// add per corner); the return value is the summed z of the triangle normals, whose sign says
// which way the face looks (see shade_mesh). Eight cross products per vector step, then the
// scalar scatter-add in triangle order (the sums come out exactly as one triangle at a time).
template <bool CheckValid>
DENSEHEAD_CLONES double vertex_normals(const float* v, const float* pv, const int32_t* tri,
                                       int n_tri, int n, const uint8_t* valid, float* nrm) {
    std::fill(nrm, nrm + 4 * static_cast<size_t>(n), 0.0f);
    double total_z = 0.0;
#if DENSEHEAD_VECTORS
    // One triangle per step on (x, y, z, 0) vectors: three 16-byte corner loads, the cross
    // product by lane shuffles (same products and differences as the scalar formula), three
    // 16-byte adds. The z sum runs in float over 64 triangles, then in double (only its sign
    // is used).
    (void)v;
    int t = 0;
    while (t < n_tri) {
        const int end = std::min(n_tri, t + 64);
        v4f tot = {};
        for (; t < end; ++t) {
            const int i0 = tri[3 * t], i1 = tri[3 * t + 1], i2 = tri[3 * t + 2];
            if (CheckValid && !(valid[i0] & valid[i1] & valid[i2])) continue;
            v4f a, b, c;
            std::memcpy(&a, pv + 4 * static_cast<size_t>(i0), 16);
            std::memcpy(&b, pv + 4 * static_cast<size_t>(i1), 16);
            std::memcpy(&c, pv + 4 * static_cast<size_t>(i2), 16);
            const v4f u = b - a, w = c - a;
            const v4f nrm_t = __builtin_shufflevector(u, u, 1, 2, 0, 3) *
                                  __builtin_shufflevector(w, w, 2, 0, 1, 3) -
                              __builtin_shufflevector(u, u, 2, 0, 1, 3) *
                                  __builtin_shufflevector(w, w, 1, 2, 0, 3);
            tot += nrm_t;
            for (const int i : {i0, i1, i2}) {
                v4f acc;
                std::memcpy(&acc, nrm + 4 * static_cast<size_t>(i), 16);
                acc += nrm_t;
                std::memcpy(nrm + 4 * static_cast<size_t>(i), &acc, 16);
            }
        }
        total_z += static_cast<double>(tot[2]);
    }
#else
    (void)pv;
    for (int t = 0; t < n_tri; ++t) {
        const int i0 = tri[3 * t], i1 = tri[3 * t + 1], i2 = tri[3 * t + 2];
        if (CheckValid && !(valid[i0] & valid[i1] & valid[i2])) continue;
        const float* a = v + 3 * i0;
        const float* b = v + 3 * i1;
        const float* c = v + 3 * i2;
        const float ux = b[0] - a[0], uy = b[1] - a[1], uz = b[2] - a[2];
        const float wx = c[0] - a[0], wy = c[1] - a[1], wz = c[2] - a[2];
        const float nx = uy * wz - uz * wy;
        const float ny = uz * wx - ux * wz;
        const float nz = ux * wy - uy * wx;
        total_z += nz;
        for (const int i : {i0, i1, i2}) {
            nrm[4 * i] += nx;
            nrm[4 * i + 1] += ny;
            nrm[4 * i + 2] += nz;
        }
    }
#endif
    return total_z;
}

void normalize3(float* d, const float fallback[3]) {
    const float len = std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
    if (!(len > 1e-12f) || !std::isfinite(len)) {
        std::copy(fallback, fallback + 3, d);
        return;
    }
    for (int k = 0; k < 3; ++k) d[k] /= len;
}

constexpr int kLut = 256;

// x ** e for a whole e >= 0 by repeated squaring (x ** 0 = 1, also for x = 0, like std::pow).
template <typename T>
DENSEHEAD_INLINE T int_pow(T x, int e) {
    T r = x * 0.0f + 1.0f;
    for (; e; e >>= 1) {
        if (e & 1) r *= x;
        x *= x;
    }
    return r;
}

// The per-vertex loop of shade_mesh: eight vertices per step in vectors (selects instead of
// branches), the table read lane by lane; scalar for the tail and without vector extensions.
DENSEHEAD_INLINE void shade_one(float x, float y, float z, float sign, const float* l,
                                const float* h, const float* lut, int ipow, float ambient,
                                float diffuse, const float* base, const float* spec_col,
                                float* out) {
    const float len2 = x * x + y * y + z * z;
    // Unused or fully degenerate vertices keep a camera-facing normal.
    if (!(len2 > 0.0f) || !(len2 < std::numeric_limits<float>::infinity())) {
        x = 0.0f, y = 0.0f, z = 1.0f;
    } else {
        const float inv = sign / std::sqrt(len2);
        x *= inv, y *= inv, z *= inv;
    }
    const float ndl = std::max(0.0f, x * l[0] + y * l[1] + z * l[2]);
    const float ndh = std::min(1.0f, std::max(0.0f, x * h[0] + y * h[1] + z * h[2]));
    float spec;
    if (ipow >= 0) {
        spec = int_pow(ndh, ipow);
    } else {
        const float pos = ndh * (kLut - 1);
        const int k = static_cast<int>(pos);
        spec = lut[k] + (pos - k) * (lut[k + 1] - lut[k]);
    }
    const float diff = ambient + diffuse * ndl;
    for (int c = 0; c < 3; ++c) out[c] = 255.0f * clamp01(base[c] * diff + spec_col[c] * spec);
    out[3] = 0.0f;
}

DENSEHEAD_CLONES void shade_vertices(const float* nrm, int n, float sign, const float* l,
                                     const float* h, const float* lut, int ipow, float ambient,
                                     float diffuse, const float* base, const float* spec_col,
                                     float* out) {
    int i = 0;
#if DENSEHEAD_VECTORS
    const v8f zero = {}, one = zero + 1.0f;
    for (; i + 8 <= n; i += 8) {
        v8f x, y, z;
        const int32_t idx[8] = {i, i + 1, i + 2, i + 3, i + 4, i + 5, i + 6, i + 7};
        transpose_corners(nrm, idx, x, y, z);
        const v8f len2 = x * x + y * y + z * z;
        const v8i good = (len2 > zero) & (len2 < std::numeric_limits<float>::infinity());
        v8f root = good ? len2 : one;
        for (int j = 0; j < 8; ++j) root[j] = std::sqrt(root[j]);
        const v8f inv = sign / root;
        x = good ? x * inv : zero;
        y = good ? y * inv : zero;
        z = good ? z * inv : one;
        v8f ndl = x * l[0] + y * l[1] + z * l[2];
        ndl = ndl > zero ? ndl : zero;
        v8f ndh = x * h[0] + y * h[1] + z * h[2];
        ndh = ndh > zero ? ndh : zero;
        ndh = ndh < one ? ndh : one;
        v8f spec;
        if (ipow >= 0) {
            spec = int_pow(ndh, ipow);
        } else {
            const v8f pos = ndh * static_cast<float>(kLut - 1);
            const v8i k = __builtin_convertvector(pos, v8i);
            v8f lo, hi;
            for (int j = 0; j < 8; ++j) lo[j] = lut[k[j]], hi[j] = lut[k[j] + 1];
            spec = lo + (pos - __builtin_convertvector(k, v8f)) * (hi - lo);
        }
        const v8f diff = ambient + diffuse * ndl;
        v8f ch[3];
        for (int c = 0; c < 3; ++c) {
            v8f v = base[c] * diff + spec_col[c] * spec;
            v = v > zero ? v : zero;
            v = v < one ? v : one;
            ch[c] = 255.0f * v;
        }
        v4f px[8];
        to_aos(ch[0], ch[1], ch[2], px);
        std::memcpy(out + 4 * static_cast<size_t>(i), px, sizeof px);
    }
#endif
    for (; i < n; ++i) {
        shade_one(nrm[4 * i], nrm[4 * i + 1], nrm[4 * i + 2], sign, l, h, lut, ipow, ambient,
                  diffuse, base, spec_col, out + 4 * i);
    }
}

// Per-vertex lit colour, 0..255 BGR, 4 floats per vertex. The normals (unnormalised planes from
// vertex_normals) are flipped as a whole so that they face the camera (+z): the summed signed
// area of a face seen from the front has the sign of the front side, which makes lighting
// independent of the mesh's winding order. pow() per vertex would cost more than the whole
// raster: a whole shininess up to 64 (the usual case) is done by repeated squaring, exact up
// to float rounding; any other comes from a small table with linear interpolation.
void shade_mesh(const float* nrm, int n, double total_z, const Light& light,
                const float color[3], float* out) {
    constexpr float kFront[3] = {0.0f, 0.0f, 1.0f};
    float l[3] = {light.direction[0], light.direction[1], light.direction[2]};
    normalize3(l, kFront);
    float h[3] = {l[0], l[1], l[2] + 1.0f};  // Blinn half vector with the viewer at +z
    normalize3(h, kFront);

    float lut[kLut + 1];
    const float shin = std::max(0.0f, light.shininess);
    for (int k = 0; k < kLut; ++k) lut[k] = std::pow(static_cast<float>(k) / (kLut - 1), shin);
    lut[kLut] = lut[kLut - 1];

    float base[3], spec_col[3];
    for (int c = 0; c < 3; ++c) {
        base[c] = color[c] * light.color[c];
        spec_col[c] = light.specular * light.color[c];
    }
    const float sign = total_z < 0.0 ? -1.0f : 1.0f;
    const int ipow = (shin == std::floor(shin) && shin <= 64.0f) ? static_cast<int>(shin) : -1;
    shade_vertices(nrm, n, sign, l, h, lut, ipow, light.ambient, light.diffuse, base, spec_col, out);
}

// Grey from the face's own depth range: nearest (largest z) is white. Reads the padded copy
// and writes whole 16-byte colours (B, G, R, 0), a loop the compiler vectorizes.
DENSEHEAD_CLONES void shade_depth(const float* pv, int n, const FaceInfo& f, float* out) {
    const float range = f.max_z - f.min_z;
    const float inv = range > 0.0f ? 1.0f / range : 0.0f;
    const float lo = f.min_z;
    for (int i = 0; i < n; ++i) {
        // A flat face (zero range) comes out white; clamp01 also tames invalid vertices.
        const float g = range > 0.0f ? 255.0f * clamp01((pv[4 * i + 2] - lo) * inv) : 255.0f;
        out[4 * i] = g, out[4 * i + 1] = g, out[4 * i + 2] = g, out[4 * i + 3] = 0.0f;
    }
}

// PNCC: normalised model x, y, z painted as R, G, B, i.e. B = z, G = y, R = x in BGR frames.
DENSEHEAD_CLONES void shade_pncc(const float* pncc, int n, float* out) {
    for (int i = 0; i < n; ++i) {
        out[4 * i] = 255.0f * clamp01(pncc[3 * i + 2]);
        out[4 * i + 1] = 255.0f * clamp01(pncc[3 * i + 1]);
        out[4 * i + 2] = 255.0f * clamp01(pncc[3 * i]);
        out[4 * i + 3] = 0.0f;
    }
}

// Colours are kept as 4 floats per vertex (B, G, R, unused) so that one 16-byte load fetches a
// vertex colour and the interpolation is three vector multiply-adds.
inline uint32_t pack_bgr(float c0, float c1, float c2) {
    // Colours are in 0..255 up to float rounding of the interpolation; clamp, round half up.
    auto q = [](float c) { return static_cast<uint32_t>(std::min(255.0f, std::max(0.0f, c)) + 0.5f); };
    return q(c0) | (q(c1) << 8) | (q(c2) << 16);
}

#if DENSEHEAD_VECTORS

DENSEHEAD_INLINE uint32_t interp_bgr(float b0, float b1, float b2, const float* ca,
                                     const float* cb, const float* cc) {
    v4f a, b, c;
    std::memcpy(&a, ca, 16), std::memcpy(&b, cb, 16), std::memcpy(&c, cc, 16);
    v4f x = b0 * a + b1 * b + b2 * c;
    const v4f lo = {0.0f, 0.0f, 0.0f, 0.0f}, hi = {255.0f, 255.0f, 255.0f, 255.0f};
    x = x > lo ? x : lo;  // NaN-free inputs here; written max/min style
    x = x < hi ? x : hi;
    const v4i q = __builtin_convertvector(x + 0.5f, v4i);
    return static_cast<uint32_t>(q[0] | (q[1] << 8) | (q[2] << 16));
}
#else
inline uint32_t interp_bgr(float b0, float b1, float b2, const float* ca, const float* cb,
                           const float* cc) {
    return pack_bgr(b0 * ca[0] + b1 * cb[0] + b2 * cc[0], b0 * ca[1] + b1 * cb[1] + b2 * cc[1],
                    b0 * ca[2] + b1 * cb[2] + b2 * cc[2]);
}
#endif

// Tests one pixel centre (barycentrics b0..b2) and keeps it if it is inside and nearer.
inline void plot_1(Pixel* px, float b0, float b1, float b2, float az, float bz, float cz,
                   const float* ca, const float* cb, const float* cc) {
    const float z = b0 * az + b1 * bz + b2 * cz;
    if ((b0 >= 0.0f) & (b1 >= 0.0f) & (b2 >= 0.0f) & (z > px->z)) {
        px->z = z;
        px->bgr = interp_bgr(b0, b1, b2, ca, cb, cc);
    }
}

// What both per-triangle paths need: the triangle's box of pixel centres clipped to the region,
// and the barycentric weights at its first centre with their steps along x and y (the edge
// function of the edge opposite each vertex divided by the signed area: positive inside
// whatever the winding). False for an empty box or a degenerate (or NaN) triangle.
struct TriangleSetup {
    int x0, x1, y0, y1;
    float e0x, e0y, e1x, e1y, e2x, e2y;
    float w0, w1, w2;
    float az, bz, cz;
    const float *ca, *cb, *cc;
    Pixel* first;  // the pixel at (x0, y0)
};

DENSEHEAD_INLINE bool setup_triangle(const float* v, const float* col, const int32_t* tri, int t,
                                     const Region& r, Pixel* pixels, TriangleSetup& s) {
    const int pitch = r.w + 1;
    const float lo_x = static_cast<float>(r.x0), hi_x = static_cast<float>(r.x0 + r.w - 1);
    const float lo_y = static_cast<float>(r.y0), hi_y = static_cast<float>(r.y0 + r.h - 1);
    const int i0 = tri[3 * t], i1 = tri[3 * t + 1], i2 = tri[3 * t + 2];
    const float ax = v[3 * i0], ay = v[3 * i0 + 1];
    const float bx = v[3 * i1], by = v[3 * i1 + 1];
    const float cx = v[3 * i2], cy = v[3 * i2 + 1];
    // Invalid vertices may hold NaN or 1e30 (callers skip those triangles; this clamp keeps the
    // int conversion defined regardless).
    s.x0 = ceil_i(std::min(std::max(std::min(ax, std::min(bx, cx)), lo_x), hi_x + 1));
    s.x1 = floor_i(std::max(std::min(std::max(ax, std::max(bx, cx)), hi_x), lo_x - 1));
    s.y0 = ceil_i(std::min(std::max(std::min(ay, std::min(by, cy)), lo_y), hi_y + 1));
    s.y1 = floor_i(std::max(std::min(std::max(ay, std::max(by, cy)), hi_y), lo_y - 1));
    if (s.x0 > s.x1 || s.y0 > s.y1) return false;
    const float area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax);
    if (!(std::fabs(area) > 1e-10f)) return false;
    const float inv_area = 1.0f / area;
    s.e0x = -(cy - by) * inv_area, s.e0y = (cx - bx) * inv_area;
    s.e1x = -(ay - cy) * inv_area, s.e1y = (ax - cx) * inv_area;
    s.e2x = -(by - ay) * inv_area, s.e2y = (bx - ax) * inv_area;
    const float px = static_cast<float>(s.x0), py = static_cast<float>(s.y0);
    s.w0 = s.e0x * (px - bx) + s.e0y * (py - by);
    s.w1 = s.e1x * (px - cx) + s.e1y * (py - cy);
    s.w2 = s.e2x * (px - ax) + s.e2y * (py - ay);
    s.az = v[3 * i0 + 2], s.bz = v[3 * i1 + 2], s.cz = v[3 * i2 + 2];
    s.ca = col + 4 * i0, s.cb = col + 4 * i1, s.cc = col + 4 * i2;
    s.first = pixels + (s.y0 - r.y0) * pitch + (s.x0 - r.x0);
    return true;
}

// Pixel centres sit at integer coordinates (a vertex at x = 10 is on the centre of column 10).
// A pixel is covered when its three barycentric weights are >= 0, so both windings draw and
// shared edges leave no cracks; the z-test (strictly nearer) picks the winner, the first drawn
// on ties. The pixel buffer has row pitch r.w + 1: one spare column and row so that a 2x2 block
// starting on the last pixel stays inside the allocation.
//
// One triangle at a time, every pixel centre of its clipped box evaluated directly. The scalar
// path, used for triangles bigger than 2x2 pixel centres (and for everything on compilers
// without vector extensions).
inline void raster_one(const float* v, const float* col, const int32_t* tri, int t,
                       const Region& r, Pixel* pixels) {
    TriangleSetup s;
    if (!setup_triangle(v, col, tri, t, r, pixels, s)) return;
    const int pitch = r.w + 1;
    const int x0 = s.x0, x1 = s.x1, y0 = s.y0, y1 = s.y1;
    const float e0x = s.e0x, e0y = s.e0y, e1x = s.e1x, e1y = s.e1y, e2x = s.e2x, e2y = s.e2y;
    const float w0 = s.w0, w1 = s.w1, w2 = s.w2, az = s.az, bz = s.bz, cz = s.cz;
    const float *ca = s.ca, *cb = s.cb, *cc = s.cc;
    Pixel* first = s.first;
    for (int y = 0; y <= y1 - y0; ++y) {
        const float fy = static_cast<float>(y);
        Pixel* row = first + y * pitch;
        for (int x = 0; x <= x1 - x0; ++x) {
            // Evaluated directly rather than stepped: keeps float error from accumulating.
            const float fx = static_cast<float>(x);
            plot_1(row + x, w0 + e0x * fx + e0y * fy, w1 + e1x * fx + e1y * fy,
                   w2 + e2x * fx + e2y * fy, az, bz, cz, ca, cb, cc);
        }
    }
}

#if DENSEHEAD_VECTORS
// Eight triangles per step. At 200 px face width almost every triangle is smaller than a pixel:
// its clipped box holds 0 to 4 pixel centres (at most a 2x2 block). For those the box, the
// setup (one vector division for eight areas) and the inside test of the four candidate
// centres run in 8-wide vectors, with no branches; then only the (lane, centre) pairs that are
// inside are visited, in triangle order, for the z-test and the colour. A batch holding a
// triangle with a bigger box is handed lane by lane to raster_one, which keeps the order.
// Written in GCC vector extensions: SSE2 pairs on baseline x86-64, AVX2 in the avx2 clone.
DENSEHEAD_INLINE v8i floor_v(v8f x) {
    const v8i i = __builtin_convertvector(x, v8i);
    return i + (x < __builtin_convertvector(i, v8f));  // true lanes are -1
}
DENSEHEAD_INLINE v8i ceil_v(v8f x) {
    const v8i i = __builtin_convertvector(x, v8i);
    return i - (x > __builtin_convertvector(i, v8f));
}
DENSEHEAD_INLINE v8f vmin(v8f a, v8f b) { return a < b ? a : b; }  // NaN in a gives b
DENSEHEAD_INLINE v8f vmax(v8f a, v8f b) { return a > b ? a : b; }

// A triangle whose box holds more than 2x2 pixel centres: the setup as in raster_one, then
// blocks of 4x2 centres in eight lanes, the inside ones visited for the z-test.
DENSEHEAD_INLINE void raster_big(const float* v, const float* col, const int32_t* tri, int t,
                                 const Region& r, Pixel* pixels) {
    TriangleSetup s;
    if (!setup_triangle(v, col, tri, t, r, pixels, s)) return;
    const int pitch = r.w + 1;
    const int x0 = s.x0, x1 = s.x1, y0 = s.y0, y1 = s.y1;
    const float e0x = s.e0x, e0y = s.e0y, e1x = s.e1x, e1y = s.e1y, e2x = s.e2x, e2y = s.e2y;
    const float w0 = s.w0, w1 = s.w1, w2 = s.w2, az = s.az, bz = s.bz, cz = s.cz;
    const float *ca = s.ca, *cb = s.cb, *cc = s.cc;
    Pixel* first = s.first;
    const v8i lane_dx = {0, 1, 2, 3, 0, 1, 2, 3}, lane_dy = {0, 0, 0, 0, 1, 1, 1, 1};
    const v8i lane_bit = {1, 2, 4, 8, 16, 32, 64, 128};
    const v8f zero = {};
    const int nx = x1 - x0, ny = y1 - y0;
    for (int by0 = 0; by0 <= ny; by0 += 2) {
        for (int bx0 = 0; bx0 <= nx; bx0 += 4) {
            const v8i dxi = lane_dx + bx0, dyi = lane_dy + by0;
            const v8f fx = __builtin_convertvector(dxi, v8f), fy = __builtin_convertvector(dyi, v8f);
            const v8f b0 = w0 + e0x * fx + e0y * fy;
            const v8f b1 = w1 + e1x * fx + e1y * fy;
            const v8f b2 = w2 + e2x * fx + e2y * fy;
            const v8i in = (dxi <= nx) & (dyi <= ny) & (b0 >= zero) & (b1 >= zero) & (b2 >= zero);
            const v8i lb = in & lane_bit;
            uint32_t bits = static_cast<uint32_t>((lb[0] | lb[1] | lb[2] | lb[3]) |
                                                  (lb[4] | lb[5] | lb[6] | lb[7]));
            if (!bits) continue;
            const v8f z = b0 * az + b1 * bz + b2 * cz;
            while (bits) {
                const int k = __builtin_ctz(bits);
                bits &= bits - 1;
                Pixel* p = first + (by0 + (k >> 2)) * pitch + bx0 + (k & 3);
                if (z[k] > p->z) {
                    p->z = z[k];
                    p->bgr = interp_bgr(b0[k], b1[k], b2[k], ca, cb, cc);
                }
            }
        }
    }
}

// G x G candidate centres per triangle in the batch path: G = 2 for faces whose triangles are
// mostly under a pixel, G = 3 for bigger ones (fewer triangles handed to raster_big).
template <bool CheckValid, int G>
DENSEHEAD_INLINE void raster_face_impl(const float* v, const float* pv, const uint8_t* valid,
                                       const float* col, const int32_t* tri, int n_tri,
                                       const Region& r, Pixel* pixels) {
    constexpr int kSlots = G * G;
    constexpr int kLanesPerWord = 64 / kSlots >= 8 ? 8 : 4;
    const int pitch = r.w + 1;
    const float lo_x = static_cast<float>(r.x0), hi_x = static_cast<float>(r.x0 + r.w - 1);
    const float lo_y = static_cast<float>(r.y0), hi_y = static_cast<float>(r.y0 + r.h - 1);
    int offset[kSlots];
    for (int s = 0; s < kSlots; ++s) offset[s] = (s / G) * pitch + (s % G);
    for (int t0 = 0; t0 < n_tri; t0 += 8) {
        Batch bt;
        gather<CheckValid>(bt, pv, valid, tri, t0, n_tri);
        const v8f Ax = bt.ax, Ay = bt.ay, Az = bt.az, Bx = bt.bx, By = bt.by, Bz = bt.bz;
        const v8f Cx = bt.cx, Cy = bt.cy, Cz = bt.cz;
        const int32_t* i0 = bt.i0;
        const int32_t* i1 = bt.i1;
        const int32_t* i2 = bt.i2;
        v8i ok = bt.ok;

        const v8i x0 = ceil_v(vmin(vmax(vmin(Ax, vmin(Bx, Cx)), lo_x + v8f{}), hi_x + 1.0f + v8f{}));
        const v8i x1 = floor_v(vmax(vmin(vmax(Ax, vmax(Bx, Cx)), hi_x + v8f{}), lo_x - 1.0f + v8f{}));
        const v8i y0 = ceil_v(vmin(vmax(vmin(Ay, vmin(By, Cy)), lo_y + v8f{}), hi_y + 1.0f + v8f{}));
        const v8i y1 = floor_v(vmax(vmin(vmax(Ay, vmax(By, Cy)), hi_y + v8f{}), lo_y - 1.0f + v8f{}));
        const v8f area = (Bx - Ax) * (Cy - Ay) - (By - Ay) * (Cx - Ax);
        ok &= (x0 <= x1) & (y0 <= y1) & ((area > 1e-10f) | (area < -1e-10f));
        if (!(ok[0] | ok[1] | ok[2] | ok[3] | ok[4] | ok[5] | ok[6] | ok[7])) continue;
        const v8i span_x = x1 - x0, span_y = y1 - y0;
        const v8i big = ok & ((span_x > G - 1) | (span_y > G - 1));

        const v8f inv_area = 1.0f / (ok ? area : 1.0f + v8f{});
        const v8f e0x = -(Cy - By) * inv_area, e0y = (Cx - Bx) * inv_area;
        const v8f e1x = -(Ay - Cy) * inv_area, e1y = (Ax - Cx) * inv_area;
        const v8f e2x = -(By - Ay) * inv_area, e2y = (Bx - Ax) * inv_area;
        const v8f px = __builtin_convertvector(x0, v8f), py = __builtin_convertvector(y0, v8f);
        const v8f w0 = e0x * (px - Bx) + e0y * (py - By);
        const v8f w1 = e1x * (px - Cx) + e1y * (py - Cy);
        const v8f w2 = e2x * (px - Ax) + e2y * (py - Ay);

        alignas(32) float B0[kSlots][8], B1[kSlots][8], B2[kSlots][8], Z[kSlots][8];
        alignas(32) int32_t bits_lane[8], base[8];
        v8i bits = {};
        const v8i small = ok & ~big;
        const v8f zero = {};
        for (int s = 0; s < kSlots; ++s) {
            // The centre (x0 + dx, y0 + dy): w + e_x * dx + e_y * dy with the terms for 0 left
            // out (same values as raster_one / raster_big: the steps are finite).
            const int dx = s % G, dy = s / G;
            v8f b0 = w0, b1 = w1, b2 = w2;
            if (dx) {
                const float f = static_cast<float>(dx);
                b0 += e0x * f, b1 += e1x * f, b2 += e2x * f;
            }
            if (dy) {
                const float f = static_cast<float>(dy);
                b0 += e0y * f, b1 += e1y * f, b2 += e2y * f;
            }
            v8i in = small & (b0 >= zero) & (b1 >= zero) & (b2 >= zero);
            if (dx) in &= span_x >= dx;
            if (dy) in &= span_y >= dy;
            bits |= in & (1 << s);
            const v8f z = b0 * Az + b1 * Bz + b2 * Cz;
            std::memcpy(B0[s], &b0, 32), std::memcpy(B1[s], &b1, 32);
            std::memcpy(B2[s], &b2, 32), std::memcpy(Z[s], &z, 32);
        }
        const v8i base_v = (y0 - r.y0) * pitch + (x0 - r.x0);
        std::memcpy(bits_lane, &bits, 32);
        std::memcpy(base, &base_v, 32);

        auto visit = [&](uint32_t lane_bits, int j) {
            while (lane_bits) {
                const int s = __builtin_ctz(lane_bits);
                lane_bits &= lane_bits - 1;
                Pixel* p = pixels + base[j] + offset[s];
                const float z = Z[s][j];
                if (z > p->z) {
                    p->z = z;
                    p->bgr = interp_bgr(B0[s][j], B1[s][j], B2[s][j], col + 4 * i0[j],
                                        col + 4 * i1[j], col + 4 * i2[j]);
                }
            }
        };
        if (big[0] | big[1] | big[2] | big[3] | big[4] | big[5] | big[6] | big[7]) {
            for (int j = 0; j < 8; ++j) {
                if (big[j]) raster_big(v, col, tri, t0 + j, r, pixels);
                else visit(static_cast<uint32_t>(bits_lane[j]), j);
            }
            continue;
        }
        // All (lane, centre) pairs in one or two 64-bit words, lane-major: triangle order is
        // kept.
        for (int w = 0; w < 8; w += kLanesPerWord) {
          uint64_t all = 0;
          for (int j = 0; j < kLanesPerWord; ++j) {
              all |= static_cast<uint64_t>(bits_lane[w + j]) << (kSlots * j);
          }
          while (all) {
            const int k = __builtin_ctzll(all);
            all &= all - 1;
            const int j = w + k / kSlots, s = k % kSlots;
            Pixel* p = pixels + base[j] + offset[s];
            const float z = Z[s][j];
            if (z > p->z) {
                p->z = z;
                p->bgr = interp_bgr(B0[s][j], B1[s][j], B2[s][j], col + 4 * i0[j],
                                    col + 4 * i1[j], col + 4 * i2[j]);
            }
          }
        }
    }
}
#endif

// Rasterizes all triangles of one face (skipping those with an invalid vertex when
// CheckValid) into the region's pixel buffer.
template <bool CheckValid>
DENSEHEAD_CLONES void raster_face(const float* v, const float* pv, const uint8_t* valid,
                                  const float* col, const int32_t* tri, int n_tri,
                                  const Region& r, Pixel* pixels, bool big_triangles) {
#if DENSEHEAD_VECTORS
    if (big_triangles) {
        raster_face_impl<CheckValid, 3>(v, pv, valid, col, tri, n_tri, r, pixels);
    } else {
        raster_face_impl<CheckValid, 2>(v, pv, valid, col, tri, n_tri, r, pixels);
    }
#else
    (void)big_triangles, (void)pv;
    for (int t = 0; t < n_tri; ++t) {
        if (CheckValid && !(valid[tri[3 * t]] & valid[tri[3 * t + 1]] & valid[tri[3 * t + 2]])) {
            continue;
        }
        raster_one(v, col, tri, t, r, pixels);
    }
#endif
}

// out = frame + alpha * (colour - frame) on the covered pixels only.
DENSEHEAD_CLONES void blend(const Job& job, const Region& r, const Pixel* pixels) {
    const float a = job.alpha;
    const int stride = 3 * job.frame.width;
    for (int y = 0; y < r.h; ++y) {
        uint8_t* dst = job.frame.data + static_cast<size_t>(r.y0 + y) * stride + 3 * r.x0;
        const Pixel* src = pixels + static_cast<size_t>(y) * (r.w + 1);
        int x = 0;
#if DENSEHEAD_VECTORS
        // Eight pixels per step, without branches per pixel: uncovered pixels are written back
        // unchanged. Same float arithmetic as the scalar loop below.
        for (; x + 8 <= r.w; x += 8) {
            v8f z;
            v8i c;
            for (int j = 0; j < 8; ++j) {
                z[j] = src[x + j].z;
                c[j] = static_cast<int32_t>(src[x + j].bgr);
            }
            const v8i covered = z != kEmpty;
            if (!(covered[0] | covered[1] | covered[2] | covered[3] | covered[4] | covered[5] |
                  covered[6] | covered[7])) {
                continue;
            }
            uint8_t* d = dst + 3 * x;
            for (int k = 0; k < 3; ++k) {
                v8i old;
                for (int j = 0; j < 8; ++j) old[j] = d[3 * j + k];
                const v8f f = __builtin_convertvector(old, v8f);
                const v8f col = __builtin_convertvector((c >> (8 * k)) & 255, v8f);
                const v8f val = f + a * (col - f);
                const v8i out = covered ? __builtin_convertvector(val + 0.5f, v8i) : old;
                for (int j = 0; j < 8; ++j) d[3 * j + k] = static_cast<uint8_t>(out[j]);
            }
        }
#endif
        for (; x < r.w; ++x) {
            if (src[x].z == kEmpty) continue;
            const uint32_t c = src[x].bgr;
            for (int k = 0; k < 3; ++k) {
                const float f = dst[3 * x + k];
                const float val = f + a * (static_cast<float>((c >> (8 * k)) & 255u) - f);
                dst[3 * x + k] = static_cast<uint8_t>(val + 0.5f);  // val is within 0..255
            }
        }
    }
}

// Shared by render() and depth_map(): fills the scratch pixel buffer of the returned region.
Region rasterize_all(const Job& job, Timings& tm, Pixel*& pixels) {
    auto t = Clock::now();
    const int n = job.n_vertices;
    const int n_faces = static_cast<int>(job.faces.size());
    Scratch& s = scratch;

    if (n_faces > 0) check_indices(job.triangles, job.n_triangles, n);
    s.valid.resize(static_cast<size_t>(n_faces) * n);
    s.padded.resize(static_cast<size_t>(n_faces) * 4 * n);
    std::vector<FaceInfo> info(n_faces);
    float min_x = kMaxCoord, max_x = -kMaxCoord, min_y = kMaxCoord, max_y = -kMaxCoord;
    for (int f = 0; f < n_faces; ++f) {
        info[f] = scan_face(job.faces[f], n, s.valid.data() + static_cast<size_t>(f) * n,
                            s.padded.data() + static_cast<size_t>(f) * 4 * n);
        if (info[f].n_invalid == n) continue;
        min_x = std::min(min_x, info[f].min_x);
        max_x = std::max(max_x, info[f].max_x);
        min_y = std::min(min_y, info[f].min_y);
        max_y = std::max(max_y, info[f].max_y);
    }
    Region r;
    const int W = job.frame.width, H = job.frame.height;
    if (min_x <= max_x && min_y <= max_y) {
        r.x0 = std::max(0, ceil_i(min_x));
        r.y0 = std::max(0, ceil_i(min_y));
        const int x1 = std::min(W - 1, floor_i(max_x));
        const int y1 = std::min(H - 1, floor_i(max_y));
        r.w = std::max(0, x1 - r.x0 + 1);
        r.h = std::max(0, y1 - r.y0 + 1);
    }
    if (r.w == 0 || r.h == 0) {
        r.w = r.h = 0;
        tm.prepare_ms += ms_since(t);
        return r;
    }
    const size_t npix = static_cast<size_t>(r.w + 1) * (r.h + 1);
    s.pixels.assign(npix, Pixel{kEmpty, 0u});
    pixels = s.pixels.data();
    s.colors.resize(static_cast<size_t>(4) * n);
    if (job.mode == Mode::Mesh) s.normals.resize(static_cast<size_t>(4) * n);
    tm.prepare_ms += ms_since(t);

    for (int f = 0; f < n_faces; ++f) {
        if (info[f].n_invalid == n) continue;
        const float* v = job.faces[f];
        const uint8_t* valid = s.valid.data() + static_cast<size_t>(f) * n;
        const float* pv = s.padded.data() + static_cast<size_t>(f) * 4 * n;
        const bool check = info[f].n_invalid > 0;
        switch (job.mode) {
            case Mode::Mesh:
            {
                const double total_z =
                    check ? vertex_normals<true>(v, pv, job.triangles, job.n_triangles, n, valid,
                                                 s.normals.data())
                          : vertex_normals<false>(v, pv, job.triangles, job.n_triangles, n, valid,
                                                  s.normals.data());
                tm.normals_ms += ms_since(t);
                shade_mesh(s.normals.data(), n, total_z, job.light, job.color, s.colors.data());
            }
                break;
            case Mode::Depth:
                shade_depth(pv, n, info[f], s.colors.data());
                break;
            case Mode::Pncc:
                shade_pncc(job.pncc, n, s.colors.data());
                break;
        }
        tm.shade_ms += ms_since(t);
        // Triangles of a face bigger on screen than one pixel each on average: 3x3 candidate
        // centres per triangle in the batch path, else 2x2. Only the speed depends on it.
        const double face_area = (static_cast<double>(info[f].max_x) - info[f].min_x) *
                                 (static_cast<double>(info[f].max_y) - info[f].min_y);
        const bool big = face_area > static_cast<double>(job.n_triangles);
        if (check) {
            raster_face<true>(v, pv, valid, s.colors.data(), job.triangles, job.n_triangles, r,
                              pixels, big);
        } else {
            raster_face<false>(v, pv, valid, s.colors.data(), job.triangles, job.n_triangles, r,
                               pixels, big);
        }
        tm.raster_ms += ms_since(t);
    }
    return r;
}

}  // namespace

Timings render(const Job& job) {
    Timings tm;
    Pixel* pixels = nullptr;
    const Region r = rasterize_all(job, tm, pixels);
    auto t = Clock::now();
    if (job.black_background) {
        std::memset(job.frame.data, 0, static_cast<size_t>(job.frame.height) * job.frame.width * 3);
    }
    if (r.w > 0) blend(job, r, pixels);
    tm.blend_ms += ms_since(t);
    return tm;
}

Timings depth_map(const Job& job, float* out) {
    Timings tm;
    Job depth_job = job;
    depth_job.mode = Mode::Depth;
    Pixel* pixels = nullptr;
    const Region r = rasterize_all(depth_job, tm, pixels);
    auto t = Clock::now();
    const int W = job.frame.width;
    std::fill(out, out + static_cast<size_t>(job.frame.height) * W,
              std::numeric_limits<float>::quiet_NaN());
    for (int y = 0; y < r.h; ++y) {
        const Pixel* src = pixels + static_cast<size_t>(y) * (r.w + 1);
        float* o = out + static_cast<size_t>(r.y0 + y) * W + r.x0;
        for (int x = 0; x < r.w; ++x) {
            if (src[x].z != kEmpty) o[x] = src[x].z;
        }
    }
    tm.blend_ms += ms_since(t);
    return tm;
}

}  // namespace densehead
