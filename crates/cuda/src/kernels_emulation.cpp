// kernels.cu compiled for the CPU, so the tests check what the kernels compute on machines
// without a GPU. CUDA's built-ins are emulated: the caller sets the block and thread indices
// before calling a kernel (`emu_thread`), once per GPU thread; kernels that synchronise a
// block (channel_pool) run with one OS thread per GPU thread (`emu_channel_pool`).

#include <barrier>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

struct dim3 { unsigned x = 0, y = 0, z = 0; };
static thread_local dim3 blockIdx, blockDim, threadIdx;
static std::barrier<>* block_barrier = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define VSR_HOST_EMULATION

typedef unsigned short h16;
static inline float h2f(h16 h) { _Float16 v; std::memcpy(&v, &h, 2); return (float)v; }
static inline h16 f2h(float f) { _Float16 v = (_Float16)f; h16 h; std::memcpy(&h, &v, 2); return h; }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline void __syncthreads() { block_barrier->arrive_and_wait(); }

#include "kernels.cu"

// The GPU thread the next kernel call runs as.
extern "C" void emu_thread(unsigned block, unsigned block_dim, unsigned thread) {
    blockIdx.x = block;
    blockDim.x = block_dim;
    threadIdx.x = thread;
}

// channel_pool as launched: one block of 256 threads per channel.
extern "C" void emu_channel_pool(const h16* x, h16* y, long hw, int c, int max) {
    for (int b = 0; b < c; b++) {
        std::barrier<> barrier(256);
        block_barrier = &barrier;
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < 256; t++) {
            threads.emplace_back([=] {
                emu_thread(b, 256, t);
                channel_pool(x, y, hw, c, max);
            });
        }
        for (auto& t : threads) t.join();
    }
}
