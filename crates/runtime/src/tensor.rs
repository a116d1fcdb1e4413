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

    /// Copies the `h x w` region of `src` at `from` (row, column) into this tensor at `to`;
    /// both regions must lie inside their tensors.
    pub fn copy_region(
        &mut self,
        to: (usize, usize),
        src: &Tensor,
        from: (usize, usize),
        h: usize,
        w: usize,
    ) {
        assert!(
            to.0 + h <= self.h
                && to.1 + w <= self.w
                && from.0 + h <= src.h
                && from.1 + w <= src.w
                && src.c == self.c,
            "region outside a tensor"
        );
        let c = self.c;
        for y in 0..h {
            let d = ((to.0 + y) * self.w + to.1) * c;
            let s = ((from.0 + y) * src.w + from.1) * c;
            self.data[d..d + w * c].copy_from_slice(&src.data[s..s + w * c]);
        }
    }
}
