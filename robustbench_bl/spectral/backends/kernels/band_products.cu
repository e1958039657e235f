// Fused per-frequency channel products of band-limited convolution (Dziedzic et al., 2019).
//
// Spectra are complex, frequency-first, C-contiguous, and hold only the kept band:
// X (K, N, C), W (K, C/groups, O), G and Y (K, N, O); K = kept frequencies. One thread owns
// one output cell: it multiplies with Gauss's three-multiplication complex product and sums in
// a register, so the K x N x C x O intermediate never exists in memory. Threads share nothing,
// so there is no shared memory and no __syncthreads. A *_conj flag says that an operand's
// memory holds its conjugate (a torch lazy-conjugate view), so no conjugate is materialized.
//
// Every kernel takes (a, b, out, K, N, C, O, groups, a_conj, b_conj); the three products differ
// only in which cell a thread owns and which operand rows it walks. Compiled by NVRTC through
// cupy.RawModule, by `nvcc -ptx` in the tests, and by g++ under cuda_emulation.h.

// Operand element i, conjugated when `conj` is set.
template <typename C2>
__device__ __forceinline__ C2 load(const C2* p, long long i, int conj) {
    C2 v = p[i];
    if (conj) v.y = -v.y;
    return v;
}

// acc += u * v with three real multiplications instead of four:
// (a + bi)(c + di) = (k1 - k3) + (k1 + k2)i, k1 = c(a + b), k2 = a(d - c), k3 = b(c + d).
template <typename C2>
__device__ __forceinline__ void multiply_add(C2& acc, C2 u, C2 v) {
    auto k1 = v.x * (u.x + u.y);
    auto k2 = u.x * (v.y - v.x);
    auto k3 = u.y * (v.x + v.y);
    acc.x += k1 - k3;
    acc.y += k1 + k2;
}

// The cell this thread owns, or -1 for the threads of the last block that overhang `cells`.
__device__ __forceinline__ long long owned_cell(long long cells) {
    long long cell = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    return cell < cells ? cell : -1;
}

// Y[k, n, o] = sum_c X[k, n, g*C/groups + c] W[k, c, o], g = o's group.
template <typename C2>
__device__ void forward_cell(const C2* x, const C2* w, C2* y, int K, int N, int C, int O, int groups,
                             int x_conj, int w_conj) {
    long long cell = owned_cell((long long)K * N * O);
    if (cell < 0) return;
    int o = (int)(cell % O);
    long long kn = cell / O;
    int k = (int)(kn / N);
    int cg = C / groups;
    const C2* x_row = x + kn * C + (long long)(o / (O / groups)) * cg;
    const C2* w_col = w + (long long)k * cg * O + o;
    C2 acc = {0, 0};
    for (int c = 0; c < cg; ++c) multiply_add(acc, load(x_row, c, x_conj), load(w_col, (long long)c * O, w_conj));
    y[cell] = acc;
}

// gX[k, n, c] = sum_o G[k, n, g*O/groups + o] conj(W[k, c mod C/groups, g*O/groups + o]), g = c's group.
template <typename C2>
__device__ void grad_input_cell(const C2* g, const C2* w, C2* gx, int K, int N, int C, int O, int groups,
                                int g_conj, int w_conj) {
    long long cell = owned_cell((long long)K * N * C);
    if (cell < 0) return;
    int c = (int)(cell % C);
    long long kn = cell / C;
    int k = (int)(kn / N);
    int cg = C / groups, og = O / groups, group = c / cg;
    const C2* g_row = g + kn * O + (long long)group * og;
    const C2* w_row = w + ((long long)k * cg + c % cg) * O + (long long)group * og;
    C2 acc = {0, 0};
    for (int o = 0; o < og; ++o) multiply_add(acc, load(g_row, o, g_conj), load(w_row, o, !w_conj));
    gx[cell] = acc;
}

// gW[k, c, o] = sum_n conj(X[k, n, g*C/groups + c]) G[k, n, o], g = o's group.
template <typename C2>
__device__ void grad_weight_cell(const C2* x, const C2* g, C2* gw, int K, int N, int C, int O, int groups,
                                 int x_conj, int g_conj) {
    int cg = C / groups;
    long long cell = owned_cell((long long)K * cg * O);
    if (cell < 0) return;
    int o = (int)(cell % O);
    long long kc = cell / O;
    int k = (int)(kc / cg);
    const C2* x_col = x + (long long)k * N * C + (long long)(o / (O / groups)) * cg + kc % cg;
    const C2* g_col = g + (long long)k * N * O + o;
    C2 acc = {0, 0};
    for (int n = 0; n < N; ++n)
        multiply_add(acc, load(x_col, (long long)n * C, !x_conj), load(g_col, (long long)n * O, g_conj));
    gw[cell] = acc;
}

// The entry points cupy_backend.py launches: one per product and precision, unmangled names.
#define BAND_PRODUCT_KERNEL(name, cell, C2)                                                          \
    extern "C" __global__ void name(const C2* a, const C2* b, C2* out, int K, int N, int C, int O, \
                                    int groups, int a_conj, int b_conj) {                            \
        cell<C2>(a, b, out, K, N, C, O, groups, a_conj, b_conj);                                     \
    }

BAND_PRODUCT_KERNEL(band_forward_f32, forward_cell, float2)
BAND_PRODUCT_KERNEL(band_forward_f64, forward_cell, double2)
BAND_PRODUCT_KERNEL(band_grad_input_f32, grad_input_cell, float2)
BAND_PRODUCT_KERNEL(band_grad_input_f64, grad_input_cell, double2)
BAND_PRODUCT_KERNEL(band_grad_weight_f32, grad_weight_cell, float2)
BAND_PRODUCT_KERNEL(band_grad_weight_f64, grad_weight_cell, double2)
