//! Large `f32` buffers for activations and kernel scratch, backed by huge pages where the
//! kernel allows.
//!
//! A frame's activations are tens of megabytes and every layer sweeps them and its scratch:
//! with 4 KiB pages that is thousands of TLB entries per layer, and in a virtual machine each
//! miss is a two-level page walk. (The packed weights, on small pages, were measured not to
//! matter.) Linux backs a region with 2 MiB pages when asked (`MADV_HUGEPAGE`; most distributions
//! set transparent huge pages to "madvise", so nothing happens unasked). Measured on the 2-core
//! development VM, realesr-animevideov3-x4 at 480x270: 2-3% a layer (docs/benchmarks.md).

/// Buffers from this size on are worth a huge page (one is 2 MiB).
const HUGE_PAGE_BYTES: usize = 2 << 20;

/// `len` zeroed floats. The zeroes come from fresh pages (calloc), so asking for huge pages
/// here, before the first write, decides how the buffer is backed.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    let buf = vec![0.0f32; len];
    if std::mem::size_of_val(buf.as_slice()) >= HUGE_PAGE_BYTES {
        advise_huge_pages(&buf);
    }
    buf
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(buf: &[f32]) {
    // madvise takes whole pages: the page-aligned part inside the buffer.
    const PAGE: usize = 4096;
    let start = (buf.as_ptr() as usize).next_multiple_of(PAGE);
    let end = (buf.as_ptr() as usize + std::mem::size_of_val(buf)) / PAGE * PAGE;
    if end > start {
        // SAFETY: the range lies inside `buf`'s allocation, and MADV_HUGEPAGE changes only
        // how its pages are backed, never their contents. Its result is ignored on purpose:
        // where huge pages are unavailable the buffer simply keeps small ones.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_: &[f32]) {}
