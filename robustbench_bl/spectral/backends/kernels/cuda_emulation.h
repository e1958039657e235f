// Host emulation of the CUDA subset that the spectral kernels use, so that the same .cu sources
// compile with a host C++ compiler and run on a CPU: how tests check their index arithmetic
// and bounds without a GPU. Include this header, then the .cu file, then EMU_EXPORT each kernel.
//
// The launcher runs every block and every thread in turn, one at a time, so a kernel that
// needs __syncthreads (threads of a block in lockstep) cannot be emulated here: none does.
#pragma once

#ifdef __CUDACC__
#error "cuda_emulation.h is for host compilers; nvcc and NVRTC provide the real CUDA"
#endif

#define __global__
#define __device__
#define __forceinline__ inline

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

// CUDA's vector types, with CUDA's alignment (8 and 16 bytes): torch's complex64 / complex128.
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) double2 {
    double x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

// The launch coordinates of the thread now running; the launcher sets them before each call.
static dim3 gridDim, blockDim, blockIdx, threadIdx;

template <typename Signature>
struct emu_launcher;

template <typename... Params>
struct emu_launcher<void(Params...)> {
    // kernel<<<grid, block>>>(args...) for a 1-D launch: every block, every thread, in order.
    template <void (*Kernel)(Params...)>
    static void launch(unsigned grid, unsigned block, Params... args) {
        gridDim = {grid, 1, 1};
        blockDim = {block, 1, 1};
        for (unsigned b = 0; b < grid; ++b)
            for (unsigned t = 0; t < block; ++t) {
                blockIdx = {b, 0, 0};
                threadIdx = {t, 0, 0};
                Kernel(args...);
            }
    }
};

// Exports `emu_launch_<kernel>`: a C-ABI pointer to void(unsigned grid, unsigned block, <the
// kernel's parameters>) for ctypes, which cannot name the C++ launcher instantiation itself.
#define EMU_EXPORT(kernel)                                                  \
    extern "C" void* const emu_launch_##kernel = reinterpret_cast<void*>( \
        &emu_launcher<decltype(kernel)>::launch<kernel>);
