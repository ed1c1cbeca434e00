// The table each ISA exports (see kernel_table.h), built as a constant
// expression: every (dtype, layout, streaming, activation) instantiation of
// the loops, indexed by the enum values of gncpu.h.

template <class S, int... kActs>
constexpr NchwKernels<typename S::Stored, typename S::Lanes::T> nchw_kernels(
        std::integer_sequence<int, kActs...>) {
    return {&block_moments<S>,
            {{&normalize_rows<S, false, kActs>...}, {&normalize_rows<S, true, kActs>...}},
            &exact_block_moments<S>,
            {&exact_normalize_rows<S, kActs>...}};
}

template <class S, int... kActs>
constexpr NhwcKernels<typename S::Stored, typename S::Lanes::T> nhwc_kernels(
        std::integer_sequence<int, kActs...>) {
    return {&nhwc_channel_moments<S>,
            {{&nhwc_normalize<S, false, kActs>...}, {&nhwc_normalize<S, true, kActs>...}},
            &exact_channel_moments<S>,
            {&exact_normalize_nhwc<S, kActs>...}};
}

template <class S, int... kActs>
constexpr NchwGradKernels<typename S::Stored, typename S::Lanes::T> nchw_grad_kernels(
        std::integer_sequence<int, kActs...>) {
    return {{&nchw_grad_row_sums<S, kActs>...},
            {{&nchw_grad_rows<S, false, kActs>...}, {&nchw_grad_rows<S, true, kActs>...}}};
}

template <class S, int... kActs>
constexpr NhwcGradKernels<typename S::Stored, typename S::Lanes::T> nhwc_grad_kernels(
        std::integer_sequence<int, kActs...>) {
    return {{&nhwc_grad_channel_sums<S, kActs>...},
            {{&nhwc_grad_run<S, false, kActs>...}, {&nhwc_grad_run<S, true, kActs>...}}};
}

template <class S, int... kActs>
constexpr KernelsFor<typename S::Stored, typename S::Lanes::T> kernels_for_each(
        std::integer_sequence<int, kActs...> activations) {
    return {nchw_kernels<S>(activations), nhwc_kernels<S>(activations),
            nchw_grad_kernels<S>(activations), nhwc_grad_kernels<S>(activations),
            {&exact_grad<S, kActs>...}};
}

template <class S>
constexpr KernelsFor<typename S::Stored, typename S::Lanes::T> kernels_for() {
    return kernels_for_each<S>(std::make_integer_sequence<int, GNCPU_ACT_COUNT>{});
}

constexpr KernelTable make_kernel_table(const char* name) {
#define GNCPU_TABLE_ENTRY(value, field, Stored, Compute, storage) kernels_for<storage>(),
    return {name, GNCPU_DTYPE_LIST(GNCPU_TABLE_ENTRY)};
#undef GNCPU_TABLE_ENTRY
}
