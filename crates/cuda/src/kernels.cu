// The CUDA executor's own kernels, compiled at run time by NVRTC (no toolkit needed at build
// time). Activations are fp16 (`h16`), channels last: element i of an h x w x c blob is channel
// i % c of pixel i / c. Arithmetic is in fp32.
//
// The element-wise kernels (one thread per output element, `INDEX`) take their arguments in
// the order `CudaPlan::launch` pushes them: the inputs, the output `y`, its length `n`, then
// their own parameters.

// (The tests also compile this file as C++ on the CPU, with `kernels_emulation.cpp`
// providing the CUDA built-ins and these conversions.)
#ifndef VSR_HOST_EMULATION
typedef unsigned short h16;
__device__ __forceinline__ float h2f(h16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ h16 f2h(float f) { h16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
#endif
#define INDEX long i = blockIdx.x * (long)blockDim.x + threadIdx.x; if (i >= n) return;

// ncnn's activations, by mode: 0 none; 1 leaky ReLU (p0 = slope, 0 for ReLU); 2 PReLU with a
// slope per channel; 3 PReLU with one slope; 4 sigmoid; 5 swish; 6 mish; 7 hard swish
// (p0 = alpha, p1 = beta); 8 clip (p0 = min, p1 = max); 9 tanh.
__device__ __forceinline__ float activate(float v, int mode, float p0, float p1, const float* slopes, int ch) {
    switch (mode) {
    case 1: return v > 0.f ? v : v * p0;
    case 2: return v > 0.f ? v : v * slopes[ch];
    case 3: return v > 0.f ? v : v * slopes[0];
    case 4: return 1.f / (1.f + expf(-v));
    case 5: return v / (1.f + expf(-v));
    case 6: return v * tanhf(log1pf(expf(v)));
    case 7: {
        float lower = -p1 / p0, upper = (1.f - p1) / p0;
        return v < lower ? 0.f : (v > upper ? v : v * (v * p0 + p1));
    }
    case 8: return fminf(fmaxf(v, p0), p1);
    case 9: return tanhf(v);
    default: return v;
    }
}

// A convolution's epilogue, in place: bias, then the activation.
extern "C" __global__ void bias_act(h16* y, const float* bias, const float* slopes, long n, int c, int mode, float p0, float p1) {
    INDEX
    int ch = i % c;
    y[i] = f2h(activate(h2f(y[i]) + bias[ch], mode, p0, p1, slopes, ch));
}

// A stand-alone activation (its input is still read by other layers).
extern "C" __global__ void act(const h16* x, h16* y, long n, const float* slopes, int c, int mode, float p0, float p1) {
    INDEX
    y[i] = f2h(activate(h2f(x[i]), mode, p0, p1, slopes, i % c));
}

// y = a op b with ncnn's broadcasting: each of a's and b's height, width and channels equals
// the output's or is 1. `bh` = 0 makes b the scalar `s`. A full-size operand is read at i.
// op: 0 add, 1 sub, 2 mul, 3 div, 4 max, 5 min, 6 pow, 7 reverse sub, 8 reverse div.
extern "C" __global__ void binary(const h16* a, const h16* b, h16* y, long n, int ow, int oc,
                                  int ah, int aw, int ac, int bh, int bw, int bc, int op, float s) {
    INDEX
    int ch = i % oc;
    long p = i / oc;
    int X = p % ow, Y = p / ow;
    long an = (long)ah * aw * ac, bn = (long)bh * bw * bc;
    float u = h2f(a[an == n ? i : ((long)(Y % ah) * aw + X % aw) * ac + ch % ac]);
    float v = bh == 0 ? s : h2f(b[bn == n ? i : ((long)(Y % bh) * bw + X % bw) * bc + ch % bc]);
    float r;
    switch (op) {
    case 0: r = u + v; break;
    case 1: r = u - v; break;
    case 2: r = u * v; break;
    case 3: r = u / v; break;
    case 4: r = fmaxf(u, v); break;
    case 5: r = fminf(u, v); break;
    case 6: r = powf(u, v); break;
    case 7: r = v - u; break;
    default: r = v / u; break;
    }
    y[i] = f2h(r);
}

// y = ca * a + cb * b (Eltwise sum with coefficients; plain addition is 1, 1).
extern "C" __global__ void axpby(const h16* a, const h16* b, h16* y, long n, float ca, float cb) {
    INDEX
    y[i] = f2h(ca * h2f(a[i]) + cb * h2f(b[i]));
}

extern "C" __global__ void pixel_shuffle(const h16* x, h16* y, long n, int w, int cout, int r) {
    INDEX
    int c = i % cout;
    long p = i / cout;
    int X = p % (w * r), Y = p / (w * r);
    int cin = c * r * r + (Y % r) * r + (X % r);
    y[i] = x[((long)(Y / r) * w + X / r) * (cout * r * r) + cin];
}

// Nearest, bilinear and bicubic resizing as ncnn samples them: per output row and column, the
// first source sample and `taps` weights (samples clamp at the last one).
extern "C" __global__ void resample(const h16* x, h16* y, long n, int ih, int iw, int ow, int c, int taps,
                                   const int* iy, const float* wy, const int* ix, const float* wx) {
    INDEX
    int ch = i % c;
    long p = i / c;
    int X = p % ow, Y = p / ow;
    float acc = 0.f;
    for (int a = 0; a < taps; a++) {
        int sy = min(iy[Y] + a, ih - 1);
        float row = 0.f;
        for (int b = 0; b < taps; b++) {
            int sx = min(ix[X] + b, iw - 1);
            row += wx[X * 4 + b] * h2f(x[((long)sy * iw + sx) * c + ch]);
        }
        acc += wy[Y * 4 + a] * row;
    }
    y[i] = f2h(acc);
}

// Zero border: `x` (ih x iw) placed at (top, left) of `y` (ow wide).
extern "C" __global__ void pad(const h16* x, h16* y, long n, int ih, int iw, int c, int top, int left, int ow) {
    INDEX
    int ch = i % c;
    long p = i / c;
    int X = (int)(p % ow) - left, Y = (int)(p / ow) - top;
    y[i] = (X >= 0 && X < iw && Y >= 0 && Y < ih) ? x[((long)Y * iw + X) * c + ch] : (h16)0;
}

// One input of a channel concatenation: its `cx` channels at `offset` of `ctot`.
extern "C" __global__ void copy_channels(const h16* x, h16* y, long n, int cx, int ctot, int offset) {
    INDEX
    y[(i / cx) * ctot + offset + i % cx] = x[i];
}

// An `oh x ow x oc` window of `x` (`iw` wide, `ic` channels) from (y0, x0, c0).
extern "C" __global__ void crop(const h16* x, h16* y, long n, int iw, int ic, int y0, int x0, int c0, int ow, int oc) {
    INDEX
    int ch = i % oc;
    long p = i / oc;
    int X = p % ow, Y = p / ow;
    y[i] = x[((long)(Y + y0) * iw + X + x0) * ic + c0 + ch];
}

// Global pooling (squeeze-excitation): each channel's mean, or its maximum when `max` is set
// (one block of 256 threads per channel).
extern "C" __global__ void channel_pool(const h16* x, h16* y, long hw, int c, int max) {
    __shared__ float part[256];
    int ch = blockIdx.x;
    float s = max ? -__int_as_float(0x7f800000) : 0.f;
    for (long p = threadIdx.x; p < hw; p += blockDim.x) {
        float v = h2f(x[p * c + ch]);
        s = max ? fmaxf(s, v) : s + v;
    }
    part[threadIdx.x] = s;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k /= 2) {
        if (threadIdx.x < k) {
            float o = part[threadIdx.x + k];
            part[threadIdx.x] = max ? fmaxf(part[threadIdx.x], o) : part[threadIdx.x] + o;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) y[ch] = f2h(max ? part[0] : part[0] / (float)hw);
}

// A small fully connected layer on a vector, then its activation (modes as `activate`).
extern "C" __global__ void dense(const h16* x, const float* w, const float* b, const float* slopes, h16* y,
                                 int in, int out, int mode, float p0, float p1) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out) return;
    float s = b[o];
    for (int i = 0; i < in; i++) s += w[(long)o * in + i] * h2f(x[i]);
    y[o] = f2h(activate(s, mode, p0, p1, slopes, o));
}

extern "C" __global__ void to_half(const float* x, h16* y, long n) { INDEX y[i] = f2h(x[i]); }
extern "C" __global__ void to_float(const h16* x, float* y, long n) { INDEX y[i] = h2f(x[i]); }
