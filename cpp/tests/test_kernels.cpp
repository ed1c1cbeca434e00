// C++ test of the core, without Python: every ISA this CPU runs against a
// long-double reference, the ISAs against each other, and bitwise determinism
// across thread counts.  .ci/emulated.sh builds it (.ci/build_kernel_test.sh)
// natively, runs it under qemu for other x86 CPUs, and cross-compiles it for
// AArch64.
//
//   test_kernels [expected-isa]    exits non-zero on any failure; with an
//                                  argument, also checks which ISA is active.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <random>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

#include "gncpu/gncpu.h"

namespace {

int failures = 0;

#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            ++failures;                                   \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                 \
            fprintf(stderr, "\n");                        \
        }                                                 \
    } while (0)

struct Shape {
    int64_t batch, channels, spatial, groups;
};

template <class T>
std::vector<long double> reference(const std::vector<T>& x, const Shape& s,
                                   const std::vector<T>& w, const std::vector<T>& b,
                                   double eps) {
    std::vector<long double> y(x.size());
    const int64_t cpg = s.channels / s.groups, size = cpg * s.spatial;
    for (int64_t g = 0; g < s.batch * s.groups; ++g) {
        const T* xg = x.data() + g * size;
        long double mean = 0, var = 0;
        for (int64_t i = 0; i < size; ++i) mean += xg[i];
        mean /= size;
        for (int64_t i = 0; i < size; ++i) var += (xg[i] - mean) * (xg[i] - mean);
        var /= size;
        const long double rstd = 1.0L / sqrtl(var + eps);
        for (int64_t i = 0; i < size; ++i) {
            const int64_t c = (g % s.groups) * cpg + i / s.spatial;
            y[g * size + i] = (xg[i] - mean) * rstd * w[c] + b[c];
        }
    }
    return y;
}

long double activate(long double v, gncpu_activation act) {
    switch (act) {
        case GNCPU_ACT_SILU: return v / (1.0L + expl(-v));
        case GNCPU_ACT_RELU: return v < 0 ? 0.0L : v;
        case GNCPU_ACT_GELU: return 0.5L * v * (1.0L + erfl(v / sqrtl(2.0L)));
        default: return v;
    }
}

gncpu_problem problem(gncpu_dtype dtype, gncpu_layout layout, const void* x, void* y,
                      const Shape& s, const void* w, const void* b, double eps,
                      gncpu_activation act, int threads) {
    gncpu_problem p;
    p.dtype = dtype;
    p.layout = layout;
    p.batch = s.batch;
    p.channels = s.channels;
    p.spatial = s.spatial;
    p.num_groups = s.groups;
    p.x = x;
    p.y = y;
    p.weight = w;
    p.bias = b;
    p.mean = nullptr;
    p.rstd = nullptr;
    p.eps = eps;
    p.activation = act;
    p.num_threads = threads;
    p.moments_mean = p.moments_m2 = nullptr;
    p.given_mean = p.given_rstd = nullptr;
    return p;
}

template <class T>
gncpu_status run(const std::vector<T>& x, std::vector<T>& y, const Shape& s,
                 const std::vector<T>& w, const std::vector<T>& b, int threads,
                 gncpu_activation act = GNCPU_ACT_NONE) {
    const gncpu_problem p = problem(sizeof(T) == 4 ? GNCPU_F32 : GNCPU_F64, GNCPU_NCHW, x.data(),
                                    y.data(), s, w.data(), b.data(), 1e-5, act, threads);
    return gncpu_group_norm(&p);
}

template <class T>
void check_shape(const Shape& s, double mean, double std_dev, double tolerance,
                 std::mt19937_64& rng) {
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<double> uniform(0.5, 1.5);
    std::vector<T> x(s.batch * s.channels * s.spatial), w(s.channels), b(s.channels);
    for (auto& v : x) v = static_cast<T>(mean + std_dev * normal(rng));
    for (auto& v : w) v = static_cast<T>(uniform(rng));
    for (auto& v : b) v = static_cast<T>(normal(rng));
    const std::vector<long double> expected = reference(x, s, w, b, 1e-5);

    std::vector<std::vector<T>> by_isa;
    for (int isa = 0; isa < gncpu_isa_count(); ++isa) {
        if (!gncpu_isa_supported(isa)) continue;
        gncpu_set_isa(isa);
        std::vector<T> y(x.size());
        CHECK(run(x, y, s, w, b, 1) == GNCPU_OK, "status");
        double worst = 0;
        for (size_t i = 0; i < y.size(); ++i) {
            const double err = fabs(static_cast<double>(y[i] - expected[i]));
            worst = err > worst || err != err ? err : worst;
        }
        CHECK(worst <= tolerance, "%s %s shape %lldx%lldx%lld G=%lld mean %g: error %.3g > %.3g",
              gncpu_isa_name(isa), sizeof(T) == 4 ? "f32" : "f64", (long long)s.batch,
              (long long)s.channels, (long long)s.spatial, (long long)s.groups, mean, worst,
              tolerance);
        for (int threads : {2, 3, 5}) {
            std::vector<T> z(x.size());
            run(x, z, s, w, b, threads);
            CHECK(memcmp(y.data(), z.data(), y.size() * sizeof(T)) == 0,
                  "%s: %d threads differ from 1", gncpu_isa_name(isa), threads);
        }
        for (gncpu_activation act : {GNCPU_ACT_SILU, GNCPU_ACT_RELU, GNCPU_ACT_GELU}) {
            std::vector<T> z(x.size());
            CHECK(run(x, z, s, w, b, 1, act) == GNCPU_OK, "status");
            double act_worst = 0;
            for (size_t i = 0; i < z.size(); ++i) {
                const double err = fabs(static_cast<double>(z[i] - activate(expected[i], act)));
                act_worst = err > act_worst || err != err ? err : act_worst;
            }
            CHECK(act_worst <= 4 * tolerance, "%s activation %d: error %.3g",
                  gncpu_isa_name(isa), static_cast<int>(act), act_worst);
        }
        by_isa.push_back(y);
    }
    for (size_t k = 1; k < by_isa.size(); ++k) {
        double diff = 0;
        for (size_t i = 0; i < x.size(); ++i) {
            const double d = fabs(static_cast<double>(by_isa[k][i] - by_isa[0][i]));
            diff = d > diff ? d : diff;
        }
        CHECK(diff <= 2 * tolerance, "ISAs disagree by %.3g", diff);
    }
}

// The test's own 16-bit codecs, independent of the library's.
uint16_t to_bf16(float f) {  // exact for the values used below
    uint32_t bits;
    memcpy(&bits, &f, 4);
    return static_cast<uint16_t>(bits >> 16);
}
float from_bf16(uint16_t b) {
    const uint32_t bits = static_cast<uint32_t>(b) << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
uint16_t to_half(float f) {  // exact for normal values with <= 11 significant bits
    if (f == 0.0f) return 0;
    uint32_t bits;
    memcpy(&bits, &f, 4);
    const uint32_t sign = (bits >> 16) & 0x8000u;
    const int exponent = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
    return static_cast<uint16_t>(sign | (exponent << 10) | ((bits >> 13) & 0x3ffu));
}
float from_half(uint16_t h) {
    const int exponent = (h >> 10) & 0x1f;
    const float mantissa = static_cast<float>(h & 0x3ff);
    float value = exponent == 0 ? ldexpf(mantissa, -24) : ldexpf(1024.0f + mantissa, exponent - 25);
    if (exponent == 31) value = (h & 0x3ff) ? NAN : INFINITY;
    return (h & 0x8000) ? -value : value;
}

// float16 and bfloat16 storage on every ISA: within one ulp (plus float32's
// cancellation floor) of a long-double reference, and the same for any thread count.
void check_16bit(bool bf16, std::mt19937_64& rng) {
    const Shape s{2, 8, 4101, 4};
    std::uniform_int_distribution<int> k(-255, 255);
    const size_t n = static_cast<size_t>(s.batch * s.channels * s.spatial);
    std::vector<float> xf(n), w(s.channels, 1.25f), b(s.channels, 0.5f);
    std::vector<uint16_t> x(n);
    for (size_t i = 0; i < n; ++i) {
        xf[i] = static_cast<float>(k(rng)) / 64.0f;
        x[i] = bf16 ? to_bf16(xf[i]) : to_half(xf[i]);
    }
    const std::vector<long double> expected = reference(xf, s, w, b, 1e-5);
    const long double relative = bf16 ? 1.0L / 128 : 1.0L / 1024;
    for (int isa = 0; isa < gncpu_isa_count(); ++isa) {
        if (!gncpu_isa_supported(isa)) continue;
        gncpu_set_isa(isa);
        std::vector<uint16_t> y(n), z(n);
        auto run16 = [&](std::vector<uint16_t>& out, int threads) {
            const gncpu_problem p = problem(bf16 ? GNCPU_BF16 : GNCPU_F16, GNCPU_NCHW, x.data(),
                                            out.data(), s, w.data(), b.data(), 1e-5,
                                            GNCPU_ACT_NONE, threads);
            return gncpu_group_norm(&p);
        };
        CHECK(run16(y, 1) == GNCPU_OK, "status");
        int bad = 0;
        for (size_t i = 0; i < n; ++i) {
            const long double got = bf16 ? from_bf16(y[i]) : from_half(y[i]);
            const long double allowed = relative * fabsl(expected[i]) + 1e-6L;
            bad += !(fabsl(got - expected[i]) <= allowed);
        }
        CHECK(bad == 0, "%s %s: %d values off by more than one ulp", gncpu_isa_name(isa),
              bf16 ? "bf16" : "f16", bad);
        run16(z, 3);
        CHECK(memcmp(y.data(), z.data(), n * 2) == 0, "%s 16-bit: threads differ",
              gncpu_isa_name(isa));
    }
}

// Channels-last equals the NCHW result transposed, on every ISA, for any
// thread count, including an outlier first row in every block.
void check_channels_last(std::mt19937_64& rng) {
    std::normal_distribution<double> normal(0.0, 1.0);
    const Shape shapes[] = {{2, 64, 300, 8}, {1, 6, 4097, 3}, {3, 5, 17, 5}, {1, 320, 64, 32}};
    for (const Shape& s : shapes) {
        const int64_t n = s.batch * s.channels * s.spatial;
        std::vector<float> nchw(n), nhwc(n), w(s.channels), b(s.channels);
        for (auto& v : nchw) v = static_cast<float>(1e3 + normal(rng));
        for (int64_t e = 0; e < s.batch; ++e)
            for (int64_t c = 0; c < s.channels; ++c) nchw[(e * s.channels + c) * s.spatial] = 1e4f;
        for (int64_t c = 0; c < s.channels; ++c) w[c] = 1.0f + 0.01f * c, b[c] = 0.5f - 0.01f * c;
        for (int64_t e = 0; e < s.batch; ++e)
            for (int64_t c = 0; c < s.channels; ++c)
                for (int64_t p = 0; p < s.spatial; ++p)
                    nhwc[(e * s.spatial + p) * s.channels + c] = nchw[(e * s.channels + c) * s.spatial + p];
        const std::vector<long double> expected = reference(nchw, s, w, b, 1e-5);
        // The outliers make outputs of magnitude ~30: 1e-5 per unit of output.
        long double scale = 1;
        for (long double v : expected) scale = fabsl(v) > scale ? fabsl(v) : scale;
        for (int isa = 0; isa < gncpu_isa_count(); ++isa) {
            if (!gncpu_isa_supported(isa)) continue;
            gncpu_set_isa(isa);
            std::vector<float> y(n), z(n);
            const gncpu_problem one = problem(GNCPU_F32, GNCPU_NHWC, nhwc.data(), y.data(), s,
                                              w.data(), b.data(), 1e-5, GNCPU_ACT_NONE, 1);
            CHECK(gncpu_group_norm(&one) == GNCPU_OK, "nhwc status");
            double worst = 0;
            for (int64_t e = 0; e < s.batch; ++e)
                for (int64_t c = 0; c < s.channels; ++c)
                    for (int64_t p = 0; p < s.spatial; ++p) {
                        const double err = fabs(static_cast<double>(
                            y[(e * s.spatial + p) * s.channels + c] - expected[(e * s.channels + c) * s.spatial + p]));
                        worst = err > worst || err != err ? err : worst;
                    }
            CHECK(worst <= 1e-5 * scale, "%s channels-last: error %.3g", gncpu_isa_name(isa), worst);
            const gncpu_problem three = problem(GNCPU_F32, GNCPU_NHWC, nhwc.data(), z.data(), s,
                                                w.data(), b.data(), 1e-5, GNCPU_ACT_NONE, 3);
            gncpu_group_norm(&three);
            CHECK(memcmp(y.data(), z.data(), n * sizeof(float)) == 0,
                  "%s channels-last: threads differ", gncpu_isa_name(isa));
        }
    }
}

// Statistics as data: the moments measured alone (y = NULL, in double lanes)
// are the groups' to double rounding at an offset of 1e4 standard deviations
// (the mean to 1e-15 of its magnitude, M2 to 1e-12);
// handed back as given statistics they normalise as one call does (the same
// to float rounding), in both layouts, on every ISA, bitwise the same on 1
// and 3 threads.
void check_given_stats(std::mt19937_64& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (const Shape s : {Shape{2, 8, 33, 4}, Shape{1, 64, 300, 32}}) {
        const int64_t n = s.batch * s.channels * s.spatial, groups = s.batch * s.groups;
        const int64_t size = s.channels / s.groups * s.spatial;
        std::vector<float> x(n), w(s.channels), b(s.channels);
        for (auto& v : x) v = 1e4f + normal(rng);
        for (int64_t c = 0; c < s.channels; ++c) w[c] = 1.0f + 0.01f * c, b[c] = 0.1f * c;
        for (gncpu_layout layout : {GNCPU_NCHW, GNCPU_NHWC}) {
            std::vector<float> xl = x;  // the same groups in this layout
            if (layout == GNCPU_NHWC)
                for (int64_t e = 0; e < s.batch; ++e)
                    for (int64_t c = 0; c < s.channels; ++c)
                        for (int64_t p = 0; p < s.spatial; ++p)
                            xl[(e * s.spatial + p) * s.channels + c] = x[(e * s.channels + c) * s.spatial + p];
            std::vector<long double> exact_mean(groups), exact_m2(groups);
            for (int64_t g = 0; g < groups; ++g) {
                long double sum = 0, sq = 0;
                for (int64_t i = 0; i < size; ++i) sum += x[g * size + i];
                exact_mean[g] = sum / size;
                for (int64_t i = 0; i < size; ++i) sq += (x[g * size + i] - exact_mean[g]) * (x[g * size + i] - exact_mean[g]);
                exact_m2[g] = sq;
            }
            for (int isa = 0; isa < gncpu_isa_count(); ++isa) {
                if (!gncpu_isa_supported(isa)) continue;
                gncpu_set_isa(isa);
                const char* where = layout == GNCPU_NCHW ? "NCHW" : "NHWC";
                std::vector<float> y(n), z1(n), z3(n);
                std::vector<double> mean(groups), m2(groups), rstd(groups);
                gncpu_problem p = problem(GNCPU_F32, layout, xl.data(), y.data(), s, w.data(),
                                          b.data(), 1e-5, GNCPU_ACT_SILU, 3);
                CHECK(gncpu_group_norm(&p) == GNCPU_OK, "given: one call");
                p.y = nullptr, p.moments_mean = mean.data(), p.moments_m2 = m2.data();
                CHECK(gncpu_group_norm(&p) == GNCPU_OK, "given: moments alone");
                for (int64_t g = 0; g < groups; ++g) {
                    // (the mean's own rounding: an ulp of 1e4 is 1.8e-12 standard deviations)
                    const double mean_err = fabsl(mean[g] - exact_mean[g]) /
                                            (fabsl(exact_mean[g]) + sqrtl(exact_m2[g] / size));
                    const double m2_err = fabsl(m2[g] - exact_m2[g]) / exact_m2[g];
                    CHECK(mean_err <= 1e-15 && m2_err <= 1e-12, "%s %s: moments off by %.2g, %.2g",
                          gncpu_isa_name(isa), where, mean_err, m2_err);
                    rstd[g] = 1.0 / sqrt(m2[g] / static_cast<double>(size) + 1e-5);
                }
                p.moments_mean = p.moments_m2 = nullptr;
                p.given_mean = mean.data(), p.given_rstd = rstd.data();
                for (int threads : {1, 3}) {
                    p.y = threads == 1 ? z1.data() : z3.data(), p.num_threads = threads;
                    CHECK(gncpu_group_norm(&p) == GNCPU_OK, "given: normalised");
                }
                CHECK(memcmp(z1.data(), z3.data(), n * sizeof(float)) == 0,
                      "%s %s: given statistics, 1 and 3 threads differ", gncpu_isa_name(isa), where);
                double worst = 0;
                for (int64_t i = 0; i < n; ++i) worst = fmax(worst, fabs(static_cast<double>(z1[i] - y[i])));
                CHECK(worst <= 1e-5, "%s %s: given statistics off by %.2g", gncpu_isa_name(isa),
                      where, worst);
                p.moments_mean = mean.data();  // measured and given at once: refused
                CHECK(gncpu_group_norm(&p) == GNCPU_ERR_BAD_STATS, "given and measured");
            }
        }
    }
}

// Weight, bias and the statistics may lie inside x or y (in place): the same
// results as from separate buffers, on every layout and schedule.
void check_aliased_outputs(std::mt19937_64& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const Shape s{2, 8, 300, 4};
    const size_t n = static_cast<size_t>(s.batch * s.channels * s.spatial);
    for (gncpu_layout layout : {GNCPU_NCHW, GNCPU_NHWC}) {
        for (int mode = 0; mode < 2; ++mode) {
            gncpu_set_tuning(mode ? 4096 : 0, mode ? 16 : 0, 0);
            std::vector<float> x(n), w(s.channels), b(s.channels), y(n);
            std::vector<float> mean(s.batch * s.groups), rstd(s.batch * s.groups);
            for (auto& v : x) v = normal(rng);
            for (auto& v : w) v = 1.0f + 0.1f * normal(rng);
            for (auto& v : b) v = normal(rng);
            gncpu_problem p = problem(GNCPU_F32, layout, x.data(), y.data(), s, w.data(), b.data(),
                                      1e-5, GNCPU_ACT_NONE, 3);
            p.mean = mean.data(), p.rstd = rstd.data();
            CHECK(gncpu_group_norm(&p) == GNCPU_OK, "status");
            // In place, with weight, bias, mean and rstd all inside the tensor.
            std::vector<float> z = x;
            float* inside = z.data();
            memcpy(inside, w.data(), w.size() * 4), memcpy(inside + 8, b.data(), b.size() * 4);
            std::vector<float> source = z;  // the input the in-place call sees
            gncpu_problem q = problem(GNCPU_F32, layout, z.data(), z.data(), s, inside, inside + 8,
                                      1e-5, GNCPU_ACT_NONE, 3);
            q.mean = inside + 4, q.rstd = inside + 12;  // overlapping the parameters too
            std::vector<float> expected(n), expected_mean(mean.size()), expected_rstd(rstd.size());
            gncpu_problem r = problem(GNCPU_F32, layout, source.data(), expected.data(), s, w.data(),
                                      b.data(), 1e-5, GNCPU_ACT_NONE, 1);
            r.mean = expected_mean.data(), r.rstd = expected_rstd.data();
            CHECK(gncpu_group_norm(&r) == GNCPU_OK, "status");
            CHECK(gncpu_group_norm(&q) == GNCPU_OK, "aliased status");
            // z now holds y, except where the statistics were delivered last.
            for (size_t i = 20; i < n; ++i)
                CHECK(z[i] == expected[i], "layout %d mode %d: aliased y[%zu] differs", layout, mode, i);
            for (size_t i = 0; i < mean.size(); ++i) {
                CHECK(inside[4 + i] == expected_mean[i], "aliased mean");
                CHECK(inside[12 + i] == expected_rstd[i], "aliased rstd");
            }
        }
    }
    gncpu_set_tuning(0, 0, 0);
}

// The caller's floating-point modes hold for every thread of the team: with
// denormals-are-zero and flush-to-zero set by the caller (as
// torch.set_flush_denormal does), results still do not depend on the thread
// count.  Subnormal inputs make the modes matter.
void check_caller_floating_point_modes(std::mt19937_64& rng) {
#if defined(__x86_64__) || defined(_M_X64)
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const Shape s{2, 8, 4096, 4};
    std::vector<float> x(static_cast<size_t>(s.batch * s.channels * s.spatial));
    for (auto& v : x) v = 1e-39f * normal(rng);  // subnormal floats
    const unsigned saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040u);  // FTZ | DAZ
    for (int mode = 0; mode < 2; ++mode) {
        gncpu_set_tuning(mode ? 4096 : 0, 16, 0);  // whole groups, then split groups
        std::vector<float> one(x.size()), three(x.size());
        gncpu_problem p = problem(GNCPU_F32, GNCPU_NCHW, x.data(), one.data(), s, nullptr, nullptr,
                                  1e-5, GNCPU_ACT_NONE, 1);
        gncpu_group_norm(&p);
        p.y = three.data(), p.num_threads = 3;
        gncpu_group_norm(&p);
        CHECK(memcmp(one.data(), three.data(), one.size() * sizeof(float)) == 0,
              "mode %d: with the caller's FTZ/DAZ, 3 threads differ from 1", mode);
    }
    _mm_setcsr(saved);
    gncpu_set_tuning(0, 0, 0);
#else
    (void)rng;
#endif
}

}  // namespace

// The backward pass (NCHW and NHWC, no activation and SiLU) against a
// long-double reference fed the same statistics, on every ISA, and bitwise
// the same for 1 and 3 threads.
void check_backward(std::mt19937_64& rng) {
    const Shape s{3, 12, 50, 3};
    const int64_t n = s.batch * s.channels * s.spatial, cpg = s.channels / s.groups;
    std::normal_distribution<float> normal(2.0f, 1.5f);
    std::vector<float> x(n), dy(n), w(s.channels), b(s.channels);
    for (auto& v : x) v = normal(rng);
    for (auto& v : dy) v = normal(rng) - 2.0f;
    for (int64_t c = 0; c < s.channels; ++c) w[c] = 0.5f + 0.1f * c, b[c] = 0.2f * c - 1.0f;
    std::vector<float> mean(s.batch * s.groups), rstd(mean.size()), y(n);
    gncpu_problem fwd{GNCPU_F32, GNCPU_NCHW, s.batch, s.channels, s.spatial, s.groups,
                      x.data(), y.data(), w.data(), b.data(), mean.data(), rstd.data(), 1e-5,
                      GNCPU_ACT_NONE, 1, nullptr, nullptr, nullptr, nullptr};
    CHECK(gncpu_group_norm(&fwd) == GNCPU_OK, "forward status");
    for (int act : {GNCPU_ACT_NONE, GNCPU_ACT_SILU}) {
        // The reference: x^ and dz per value, then the per-group means.
        std::vector<long double> dx_ref(n), dw_ref(s.channels, 0.0L), db_ref(s.channels, 0.0L);
        for (int64_t g = 0; g < s.batch * s.groups; ++g) {
            const int64_t base = g * cpg * s.spatial;
            long double sum_wdz = 0, sum_wdz_xhat = 0;
            std::vector<long double> xhat(cpg * s.spatial), dz(cpg * s.spatial);
            for (int64_t i = 0; i < cpg * s.spatial; ++i) {
                const int64_t c = (g % s.groups) * cpg + i / s.spatial;
                xhat[i] = ((long double)x[base + i] - mean[g]) * rstd[g];
                const long double z = xhat[i] * w[c] + b[c];
                long double d = dy[base + i];
                if (act == GNCPU_ACT_SILU) {
                    const long double sg = 1.0L / (1.0L + expl(-z));
                    d *= sg * (1.0L + z * (1.0L - sg));
                }
                dz[i] = d;
                sum_wdz += w[c] * d, sum_wdz_xhat += w[c] * d * xhat[i];
                db_ref[c] += d, dw_ref[c] += d * xhat[i];
            }
            const long double count = cpg * s.spatial;
            for (int64_t i = 0; i < cpg * s.spatial; ++i) {
                const int64_t c = (g % s.groups) * cpg + i / s.spatial;
                dx_ref[base + i] = rstd[g] * (w[c] * dz[i] - sum_wdz / count -
                                              xhat[i] * sum_wdz_xhat / count);
            }
        }
        const auto worst = [](const std::vector<float>& got, const std::vector<long double>& want) {
            long double err = 0, scale = 0;
            for (size_t i = 0; i < got.size(); ++i) {
                err = fmaxl(err, fabsl(got[i] - want[i]));
                scale = fmaxl(scale, fabsl(want[i]));
            }
            return static_cast<double>(err / scale);
        };
        for (int layout : {GNCPU_NCHW, GNCPU_NHWC}) {
            // NHWC: the same values transposed to (n, s, c).
            const auto to_layout = [&](const std::vector<float>& v) {
                if (layout == GNCPU_NCHW) return v;
                std::vector<float> t(v.size());
                for (int64_t e = 0; e < s.batch; ++e)
                    for (int64_t c = 0; c < s.channels; ++c)
                        for (int64_t i = 0; i < s.spatial; ++i)
                            t[(e * s.spatial + i) * s.channels + c] = v[(e * s.channels + c) * s.spatial + i];
                return t;
            };
            const std::vector<float> xl = to_layout(x), dyl = to_layout(dy);
            for (int isa = 0; isa < gncpu_isa_count(); ++isa) {
                if (!gncpu_isa_supported(isa)) continue;
                gncpu_set_isa(isa);
                std::vector<float> dx[2], dw[2], db[2];
                for (int t = 0; t < 2; ++t) {
                    dx[t].assign(n, 0.0f), dw[t].assign(s.channels, 0.0f), db[t].assign(s.channels, 0.0f);
                    const gncpu_backward_problem bwd{
                        GNCPU_F32, static_cast<gncpu_layout>(layout), s.batch, s.channels, s.spatial,
                        s.groups, dyl.data(), xl.data(), mean.data(), rstd.data(), w.data(), b.data(),
                        dx[t].data(), dw[t].data(), db[t].data(), static_cast<gncpu_activation>(act),
                        t == 0 ? 1 : 3};
                    CHECK(gncpu_group_norm_backward(&bwd) == GNCPU_OK, "backward status");
                }
                std::vector<float> dx_nchw(n);
                for (size_t i = 0; i < dx_nchw.size(); ++i) dx_nchw[i] = dx[0][i];
                if (layout == GNCPU_NHWC) {
                    for (int64_t e = 0; e < s.batch; ++e)
                        for (int64_t c = 0; c < s.channels; ++c)
                            for (int64_t i = 0; i < s.spatial; ++i)
                                dx_nchw[(e * s.channels + c) * s.spatial + i] = dx[0][(e * s.spatial + i) * s.channels + c];
                }
                const double errors[3] = {worst(dx_nchw, dx_ref), worst(dw[0], dw_ref), worst(db[0], db_ref)};
                for (double e : errors)
                    CHECK(e <= 1e-5, "%s backward layout %d activation %d: error %.3g",
                          gncpu_isa_name(isa), layout, act, e);
                CHECK(dx[0] == dx[1] && dw[0] == dw[1] && db[0] == db[1],
                      "%s backward: 1 and 3 threads differ", gncpu_isa_name(isa));
            }
        }
    }
    // Refused without writing: grad_x partly over x.
    std::vector<float> buffer(n + 1, 7.0f);
    gncpu_backward_problem bad{GNCPU_F32, GNCPU_NCHW, s.batch, s.channels, s.spatial, s.groups,
                               dy.data(), buffer.data(), mean.data(), rstd.data(), nullptr, nullptr,
                               buffer.data() + 1, nullptr, nullptr, GNCPU_ACT_NONE, 1};
    CHECK(gncpu_group_norm_backward(&bad) == GNCPU_ERR_OVERLAP, "backward partial overlap");
    bad.grad_x = nullptr, bad.mean = nullptr;
    CHECK(gncpu_group_norm_backward(&bad) == GNCPU_ERR_NULL_POINTER, "backward null mean");
    for (float v : buffer) CHECK(v == 7.0f, "a backward error path wrote");
}

int main(int argc, char** argv) {
    const int best = gncpu_active_isa();
    printf("active ISA: %s; supported:", gncpu_isa_name(best));
    for (int isa = 0; isa < gncpu_isa_count(); ++isa)
        if (gncpu_isa_supported(isa)) printf(" %s", gncpu_isa_name(isa));
    printf("; OpenMP %s\n", gncpu_openmp_enabled() ? "on" : "off");
    if (argc > 1) CHECK(strcmp(argv[1], gncpu_isa_name(best)) == 0, "expected ISA %s", argv[1]);

    // Small thresholds so that small tensors reach the split and streaming paths.
    std::mt19937_64 rng(20261123);
    const Shape shapes[] = {{2, 8, 1, 4},  {2, 6, 7, 3},    {1, 4, 17, 2},  {3, 8, 33, 8},
                            {1, 2, 65, 1}, {2, 4, 129, 2},  {1, 3, 2049, 3}, {1, 2, 4099, 1},
                            {2, 32, 64, 32}};
    for (int mode = 0; mode < 3; ++mode) {
        if (mode == 0) gncpu_set_tuning(0, 0, 0);
        if (mode == 1) gncpu_set_tuning(4096, 16, 0);  // split groups across threads
        if (mode == 2) gncpu_set_tuning(0, 0, 1);      // streaming stores
        for (const Shape& s : shapes) {
            for (double mean : {0.0, 1e4}) {
                check_shape<float>(s, mean, 1.0, 1e-5, rng);
                check_shape<double>(s, mean, 1.0, 1e-12 * (1 + fabs(mean)), rng);
            }
        }
    }
    gncpu_set_tuning(0, 0, 0);
    check_16bit(false, rng);
    check_16bit(true, rng);
    gncpu_set_tuning(4096, 16, 1);  // split and streaming paths for 16-bit storage too
    check_16bit(false, rng);
    check_16bit(true, rng);
    check_channels_last(rng);
    check_given_stats(rng);
    gncpu_set_tuning(0, 0, 0);
    check_channels_last(rng);
    check_given_stats(rng);

    // A constant group gives exactly the bias.
    for (int isa = 0; isa < gncpu_isa_count(); ++isa) {
        if (!gncpu_isa_supported(isa)) continue;
        gncpu_set_isa(isa);
        std::vector<float> x(2 * 4 * 100, 1000.5f), y(x.size()), w(4, 2.0f), b = {1, 2, 3, 4};
        const gncpu_problem p = problem(GNCPU_F32, GNCPU_NCHW, x.data(), y.data(), {2, 4, 100, 2},
                                        w.data(), b.data(), 1e-5, GNCPU_ACT_NONE, 1);
        gncpu_group_norm(&p);
        for (size_t i = 0; i < y.size(); ++i)
            CHECK(y[i] == b[(i / 100) % 4], "%s: constant group", gncpu_isa_name(isa));
    }
    gncpu_set_isa(best);

    // Bad arguments are refused without writing.
    std::vector<float> x(24, 1.0f), y(24, -1.0f);
    const gncpu_problem good =
        problem(GNCPU_F32, GNCPU_NCHW, x.data(), y.data(), {2, 6, 2, 3}, nullptr, nullptr, 1e-5,
                GNCPU_ACT_NONE, 1);
    CHECK(gncpu_check_problem(&good) == GNCPU_OK, "a good problem");
    gncpu_problem bad = good;
    bad.num_groups = 4;
    CHECK(gncpu_group_norm(&bad) == GNCPU_ERR_BAD_GROUPS, "groups");
    bad = good, bad.eps = -1;
    CHECK(gncpu_group_norm(&bad) == GNCPU_ERR_BAD_EPS, "eps");
    bad = good, bad.x = nullptr;
    CHECK(gncpu_group_norm(&bad) == GNCPU_ERR_NULL_POINTER, "null x");
    bad = good, bad.dtype = static_cast<gncpu_dtype>(GNCPU_DTYPE_COUNT);
    CHECK(gncpu_group_norm(&bad) == GNCPU_ERR_BAD_DTYPE, "dtype");
    bad = good, bad.layout = static_cast<gncpu_layout>(-1);
    CHECK(gncpu_group_norm(&bad) == GNCPU_ERR_BAD_LAYOUT, "layout");
    bad = good, bad.activation = static_cast<gncpu_activation>(GNCPU_ACT_COUNT);
    CHECK(gncpu_group_norm(&bad) == GNCPU_ERR_BAD_ACTIVATION, "activation");
    bad = good, bad.spatial = -1;
    CHECK(gncpu_group_norm(&bad) == GNCPU_ERR_BAD_SHAPE, "shape");
    CHECK(gncpu_group_norm(nullptr) == GNCPU_ERR_NULL_POINTER, "null problem");
    bad = good, bad.y = x.data() + 1;
    CHECK(gncpu_group_norm(&bad) == GNCPU_ERR_OVERLAP, "partial overlap");
    bad = good, bad.channels = 0, bad.num_groups = 2;
    CHECK(gncpu_group_norm(&bad) == GNCPU_ERR_BAD_GROUPS, "groups beyond max(C, 1)");
    for (float v : y) CHECK(v == -1.0f, "an error path wrote");

    check_aliased_outputs(rng);
    check_caller_floating_point_modes(rng);
    check_backward(rng);
    gncpu_set_isa(best);

    if (failures) {
        printf("%d checks failed\n", failures);
        return 1;
    }
    printf("all kernel checks passed\n");
    return 0;
}
