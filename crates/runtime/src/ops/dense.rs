//! A dense block's convolutions run in one buffer: ESRGAN's residual dense blocks (and models
//! like them) concatenate the block's input with every convolution's output so far and feed
//! that to the next convolution, `c_k = cat(x, y_1, ..., y_k)`, `y_{k+1} = conv(c_k)`. Each
//! `c_k` is a channel prefix of the last one, so all of them live in one buffer of the last
//! one's width: the input is copied in once, each convolution reads the prefix it needs and
//! writes its output straight after it. Run as written, the concatenations copied every
//! prefix again (realesrgan-x4plus: 276 copies, 96 to 192 channels each, about a sixth of
//! the frame even when the copies ran well).

use crate::kernels::Isa;
use crate::ops::copy_channels;
use crate::ops::winograd::Winograd;
use crate::tensor::Tensor;

/// The convolutions of one dense block, in order: convolution `k` reads channels
/// `0..in_c(k)` and writes `in_c(k)..in_c(k) + out_c(k)`, so `in_c(k+1) = in_c(k) + out_c(k)`.
#[derive(Debug)]
pub struct DenseBlock {
    convs: Vec<Winograd>,
    isa: Isa,
}

impl DenseBlock {
    /// Whether `convs` can run as a block: channels that chain up, sizes kept.
    pub fn fits(convs: &[&Winograd]) -> bool {
        let chained = convs
            .windows(2)
            .all(|p| p[0].in_channels() + p[0].out_channels() == p[1].in_channels());
        !convs.is_empty() && chained && convs.iter().all(|w| w.keeps_size())
    }

    /// # Panics
    /// Unless [`DenseBlock::fits`] holds.
    pub fn new(convs: Vec<Winograd>, isa: Isa) -> Self {
        assert!(
            Self::fits(&convs.iter().collect::<Vec<_>>()),
            "not a dense block"
        );
        DenseBlock { convs, isa }
    }

    /// The block input's channels.
    pub fn in_channels(&self) -> usize {
        self.convs[0].in_channels()
    }

    /// The last concatenation's channels.
    pub fn out_channels(&self) -> usize {
        let last = self.convs.last().expect("a block has convolutions");
        last.in_channels() + last.out_channels()
    }

    pub fn convs(&self) -> &[Winograd] {
        &self.convs
    }

    /// Writes `cat(input, y_1, ..., y_n)` into `out` (the input's size, [`Self::out_channels`]).
    pub fn run(&self, input: &Tensor, out: &mut Tensor, threads: usize) {
        let c0 = self.in_channels();
        assert!(
            input.c == c0
                && (out.h, out.w, out.c) == (input.h, input.w, self.out_channels())
                && input.data.len() == input.h * input.w * c0,
            "dense block buffers do not fit"
        );
        let isa = self.isa;
        let oc = out.c;
        let px_per_row = out.w;
        crate::ops::par_chunks(&mut out.data, px_per_row * oc, threads, |y, row| {
            crate::dispatch!(isa, {
                for (x, dst) in row.chunks_exact_mut(oc).enumerate() {
                    let p = y * px_per_row + x;
                    copy_channels(&input.data[p * c0..(p + 1) * c0], &mut dst[..c0]);
                }
            })
        });
        for conv in &self.convs {
            conv.run_within(out, conv.in_channels(), threads);
        }
    }
}
