//! What a graph is made of and how far it sees: the layer census and the receptive field,
//! for `vsr models inspect` and for the tile context the upscaler adds around each tile.

use crate::graph::{Graph, Op};

/// Layers of each `.param` type, most frequent first (ties in the order they first appear).
pub fn census(graph: &Graph) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for node in &graph.nodes {
        match counts.iter_mut().find(|(kind, _)| *kind == node.kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((node.kind.clone(), 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
}

/// Receptive-field radius of the network output, in input pixels, and whether any layer pools
/// globally. Walks the graph tracking each blob's stride and radius relative to the input.
pub fn receptive_field(graph: &Graph) -> (usize, bool) {
    let n = graph.blob_names.len();
    let mut stride = vec![1.0f64; n];
    let mut radius = vec![0.0f64; n];
    let mut global = false;
    for node in &graph.nodes {
        let (mut s, mut r) = (1.0f64, 0.0f64);
        for &i in &node.inputs {
            s = stride[i];
            r = r.max(radius[i]);
        }
        match &node.op {
            Op::Convolution(c) => {
                r += ((c.kh.max(c.kw) - 1) * c.dil_h.max(c.dil_w)) as f64 / 2.0 * s;
                s *= c.stride_h.max(c.stride_w) as f64;
            }
            Op::Deconvolution(c) => {
                s /= c.stride_h.max(c.stride_w) as f64;
                r += ((c.kh.max(c.kw) - 1) * c.dil_h.max(c.dil_w)) as f64 / 2.0 * s;
            }
            Op::PixelShuffle { factor, .. } => s /= *factor as f64,
            Op::Interp { scale_h, .. } => {
                s /= *scale_h as f64;
                r += 2.0 * s.max(1.0);
            }
            Op::GlobalPool { .. } => global = true,
            _ => {}
        }
        for &o in &node.outputs {
            stride[o] = s;
            radius[o] = r;
        }
    }
    (radius[graph.output].ceil() as usize, global)
}
