#!/usr/bin/env python3
"""Why the CPU path has no bf16 mode: the rounding error of one 64 -> 64 3x3 convolution layer
when its matrix products take bf16 operands (8 significant bits) with f32-or-better sums, for
each Winograd variant and for direct convolution, relative to the layer's output spread.

Winograd's transforms have large coefficients (F(6x6,3x3): up to 5.25 in B, 32 in A) whose
terms cancel: a rounding error of 2^-9 of a transformed value becomes a much larger error of
the small output. The script checks each transform exactly (in f64) first, then rounds the
transformed kernels U and inputs V (or, for direct convolution, the kernels and inputs) to
bf16 as `vcvtneps2bf16` does (nearest, ties to even).

The second table is why the fp32 path stays at F(6x6,3x3): F(8x8,3x3) (12% fewer
multiply-adds), built exactly from its interpolation points (Cook-Toom), with every step in
f32 as the kernels run it, for the point sets that keep its coefficients smallest.

Usage: python3 tools/winograd_bf16_error.py   (needs numpy; the reference venv has it)
"""
from fractions import Fraction

import numpy as np

CHANNELS, TILES = 64, 48


def bf16(x):
    """x rounded to the nearest bf16 (ties to even), back as float64."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


# (B^T, G, A^T, outputs per side). F(6x6,3x3) as crates/runtime/src/ops/winograd.rs has it
# (points 0, +-1, +-2, +-1/2, the +-1/2 rows scaled by 32 as in ncnn's winograd63).
VARIANTS = {
    "F(6x6,3x3)": (
        [[1, 0, -5.25, 0, 5.25, 0, -1, 0], [0, 1, 1, -4.25, -4.25, 1, 1, 0],
         [0, -1, 1, 4.25, -4.25, -1, 1, 0], [0, .5, .25, -2.5, -1.25, 2, 1, 0],
         [0, -.5, .25, 2.5, -1.25, -2, 1, 0], [0, 2, 4, -2.5, -5, .5, 1, 0],
         [0, -2, 4, 2.5, -5, -.5, 1, 0], [0, -1, 0, 5.25, 0, -5.25, 0, 1]],
        [[1, 0, 0], [-2 / 9, -2 / 9, -2 / 9], [-2 / 9, 2 / 9, -2 / 9],
         [1 / 90, 1 / 45, 2 / 45], [1 / 90, -1 / 45, 2 / 45], [1 / 45, 1 / 90, 1 / 180],
         [1 / 45, -1 / 90, 1 / 180], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 32, 32, 0], [0, 1, -1, 2, -2, 16, -16, 0], [0, 1, 1, 4, 4, 8, 8, 0],
         [0, 1, -1, 8, -8, 4, -4, 0], [0, 1, 1, 16, 16, 2, 2, 0], [0, 1, -1, 32, -32, 1, -1, 1]],
        6,
    ),
    "F(4x4,3x3)": (
        [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
        4,
    ),
    "F(2x2,3x3)": (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
        2,
    ),
}


def cook_toom(points, m, r=3):
    """(B^T, G, A^T, m) of F(m x m, r x r) for the finite interpolation `points` and infinity,
    exactly (fractions) before the conversion to floats."""
    p = [Fraction(x) for x in points]
    n = m + r - 1
    assert len(p) == n - 1, "F(m, r) needs m + r - 2 finite points"

    def product(roots):
        """Coefficients (lowest power first) of the product of (x - root)."""
        c = [Fraction(1)]
        for root in roots:
            c = [(c[k - 1] if k else 0) - root * (c[k] if k < len(c) else 0)
                 for k in range(len(c) + 1)]
        return c

    at = [[q ** i for q in p] + [Fraction(int(i == m - 1))] for i in range(m)]
    g = []
    for j, q in enumerate(p):
        scale = Fraction(1)
        for other in p[:j] + p[j + 1:]:
            scale *= q - other
        g.append([q ** k / scale for k in range(r)])
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    bt = [product(p[:j] + p[j + 1:]) + [Fraction(0)] for j in range(n - 1)] + [product(p)]
    return [[[float(x) for x in row] for row in mat] for mat in (bt, g, at)] + [m]


# F(8x8,3x3): F(6x6)'s points and one more pair, each of the choices tried.
F8_POINTS = {
    f"F(8x8,3x3) 0,±1,±2,±1/2,±{q}": [0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2), q, -q]
    for q in (4, Fraction(1, 4), 3, Fraction(3, 2))
}


def layer(rng, m):
    """Input patches (ReLU-like activations) and He-scaled kernels for m x m output tiles."""
    d = rng.standard_normal((TILES, CHANNELS, m + 2, m + 2))
    d = np.maximum(d, 0) + 0.1 * d
    w = rng.standard_normal((CHANNELS, CHANNELS, 3, 3)) * np.sqrt(2 / (9 * CHANNELS))
    return d, w


def direct(d, w, m):
    out = np.zeros((TILES, CHANNELS, m, m))
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("tiyx,oi->toyx", d[:, :, ky:ky + m, kx:kx + m], w[:, :, ky, kx])
    return out


def winograd_f32(d, w, variant):
    """The layer with every transform, product and sum in f32, as the CPU kernels run it."""
    bt, g, at = (np.array(x, dtype=np.float32) for x in variant[:3])
    d, w = d.astype(np.float32), w.astype(np.float32)
    u = np.einsum("rk,oikl,cl->oirc", g, w, g, dtype=np.float32)
    v = np.einsum("rk,tikl,cl->tirc", bt, d, bt, dtype=np.float32)
    m = np.einsum("tirc,oirc->torc", v, u, dtype=np.float32)
    return np.einsum("ir,torc,jc->toij", at, m, at, dtype=np.float32).astype(np.float64)


def winograd(d, w, variant, rounded):
    bt, g, at, _ = (np.array(x, dtype=float) if i < 3 else x for i, x in enumerate(variant))
    u = np.einsum("rk,oikl,cl->oirc", g, w, g)
    v = np.einsum("rk,tikl,cl->tirc", bt, d, bt)
    if rounded:
        u, v = bf16(u), bf16(v)
    return np.einsum("ir,torc,jc->toij", at, np.einsum("tirc,oirc->torc", v, u), at)


def checked(rng, name, variant):
    """A layer for `variant`'s tiles and its direct convolution, once the variant's transforms
    are checked exact (in f64) against it."""
    d, w = layer(rng, variant[3])
    want = direct(d, w, variant[3])
    exact = winograd(d, w, variant, rounded=False)
    assert np.abs(exact - want).max() < 1e-9 * np.abs(want).max(), f"{name} transforms"
    return d, w, want


def report(name, got, want):
    e = got - want
    print(f"{name:30} rms {np.sqrt((e ** 2).mean()) / want.std():.2e}  "
          f"worst {np.abs(e).max() / want.std():.2e}  (of the output's standard deviation)")


def main():
    rng = np.random.default_rng(1)
    print(f"one {CHANNELS} -> {CHANNELS} 3x3 layer, bf16 operands:")
    for name, variant in VARIANTS.items():
        d, w, want = checked(rng, name, variant)
        report(name, winograd(d, w, variant, rounded=True), want)
    d, w = layer(rng, 6)
    report("direct", direct(bf16(d), bf16(w), 6), direct(d, w, 6))
    print(f"\none {CHANNELS} -> {CHANNELS} 3x3 layer, f32 throughout:")
    variants = {"F(6x6,3x3)": VARIANTS["F(6x6,3x3)"]}
    variants.update((name, cook_toom(points, 8)) for name, points in F8_POINTS.items())
    for name, variant in variants.items():
        d, w, want = checked(rng, name, variant)
        report(name, winograd_f32(d, w, variant), want)


if __name__ == "__main__":
    main()
