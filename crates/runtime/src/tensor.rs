//! Activations are stored channels-last (HWC): each pixel's channels are contiguous, so every
//! kernel can vectorise over channels and 1x1 convolutions are plain matrix products.

/// The shape of a tensor; `dims` as in ncnn (1 vector, 2 matrix, 3 image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub dims: u8,
}

impl Shape {
    pub fn image(h: usize, w: usize, c: usize) -> Self {
        Shape { h, w, c, dims: 3 }
    }

    pub fn len(&self) -> usize {
        self.h * self.w * self.c
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An activation tensor, channels-last. Vectors (ncnn's 1-D blobs) are `1 x 1 x c` with `dims == 1`,
/// which gives ncnn's rule that a vector broadcasts along channels for free.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    /// 1 for a vector, 2 for a matrix (one channel), 3 for an image.
    pub dims: u8,
    pub data: Vec<f32>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({}x{}x{}, dims={})",
            self.h, self.w, self.c, self.dims
        )
    }
}

impl Tensor {
    pub fn zeros(h: usize, w: usize, c: usize) -> Self {
        Self {
            h,
            w,
            c,
            dims: 3,
            data: vec![0.0; h * w * c],
        }
    }

    pub fn from_vec(h: usize, w: usize, c: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            h * w * c,
            "tensor data does not match its shape"
        );
        Self {
            h,
            w,
            c,
            dims: 3,
            data,
        }
    }

    /// A tensor of `shape` over `data`, whose length must match.
    pub fn with_shape(shape: Shape, mut data: Vec<f32>) -> Self {
        data.resize(shape.len(), 0.0);
        Self {
            h: shape.h,
            w: shape.w,
            c: shape.c,
            dims: shape.dims,
            data,
        }
    }

    pub fn shape(&self) -> Shape {
        Shape {
            h: self.h,
            w: self.w,
            c: self.c,
            dims: self.dims,
        }
    }

    pub fn vector(data: Vec<f32>) -> Self {
        Self {
            h: 1,
            w: 1,
            c: data.len(),
            dims: 1,
            data,
        }
    }

    pub fn pixels(&self) -> usize {
        self.h * self.w
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn shape_str(&self) -> String {
        match self.dims {
            1 => format!("vector[{}]", self.c),
            _ => format!("{}x{}x{}", self.w, self.h, self.c),
        }
    }

    /// Converts from planar CHW (ncnn's and most tools' layout) to channels-last.
    pub fn from_chw(c: usize, h: usize, w: usize, chw: &[f32]) -> Self {
        assert_eq!(chw.len(), c * h * w);
        let mut data = vec![0.0; c * h * w];
        for ch in 0..c {
            for (p, v) in chw[ch * h * w..(ch + 1) * h * w].iter().enumerate() {
                data[p * c + ch] = *v;
            }
        }
        Self::from_vec(h, w, c, data)
    }

    /// Converts to planar CHW.
    pub fn to_chw(&self) -> Vec<f32> {
        let (c, n) = (self.c, self.pixels());
        let mut out = vec![0.0; self.len()];
        for p in 0..n {
            for ch in 0..c {
                out[ch * n + p] = self.data[p * c + ch];
            }
        }
        out
    }

    /// Copies the `h x w` window at (`y0`, `x0`); rows and columns outside are taken as zeros.
    pub fn window(&self, y0: isize, x0: isize, h: usize, w: usize) -> Tensor {
        let c = self.c;
        let mut out = Tensor::zeros(h, w, c);
        for y in 0..h {
            let sy = y0 + y as isize;
            if sy < 0 || sy >= self.h as isize {
                continue;
            }
            let xs = x0.max(0);
            let xe = (x0 + w as isize).min(self.w as isize);
            if xs >= xe {
                continue;
            }
            let src = &self.data[(sy as usize * self.w + xs as usize) * c
                ..(sy as usize * self.w + xe as usize) * c];
            let dst_start = (y * w + (xs - x0) as usize) * c;
            out.data[dst_start..dst_start + src.len()].copy_from_slice(src);
        }
        out
    }

    /// Writes `src` into this tensor with its top-left corner at (`y0`, `x0`); both must fit.
    pub fn paste(&mut self, src: &Tensor, y0: usize, x0: usize) {
        assert!(y0 + src.h <= self.h && x0 + src.w <= self.w && src.c == self.c);
        let c = self.c;
        for y in 0..src.h {
            let d = ((y0 + y) * self.w + x0) * c;
            self.data[d..d + src.w * c]
                .copy_from_slice(&src.data[y * src.w * c..(y + 1) * src.w * c]);
        }
    }
}
