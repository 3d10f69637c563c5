// expand: y[row_e, off_s + j] += scale(slot_e) * sum_k B[slot_e][s][j][k] * h[e, s, k], for every
// plan entry e, slice s and column j < n_s. Segment-major: used when every token has at most one
// adapter, so each row of y belongs to exactly one entry and no two threads write the same y
// element (no atomics, no races). Tokens with several adapters use expand_multi.wgsl; layers whose
// slice widths are all multiples of 4 use expand_vec4.wgsl (the same with vec4 y).
//
// Tiling. B is stored transposed, [slot][k][column] (see src/webgpu/weights.ts), and read as
// column pairs (one 32-bit word for 16-bit weights). Workgroup (tile = wg.x, column tile = wg.y,
// slice = wg.z) computes an (EM*MT entries of one slot) x (2*NW*NT columns) block with EM*NW
// threads. Thread (em, nw) keeps an MT x NT register tile of column pairs: each B pair loaded
// serves MT entries of the segment (the weight reuse segments exist for), each h value NT pairs.
// Pairs are interleaved (pair = c0 + q*NW + nw), so neighbouring threads read neighbouring B
// words and write neighbouring y elements. The k loop runs to the slot's own rank (read here),
// never to maxRank. Column tiles past n_s exit at once.

//@params (shaders/params.wgsl)

override EM: u32 = 1u;  // entry threads per workgroup
override NW: u32 = 64u; // column-pair threads per workgroup
override MT: u32 = 1u;  // entries per thread (<= 16)
override NT: u32 = 2u;  // column pairs per thread (<= 8; MT * NT <= 64)
override KG: u32 = 1u;  // partials of h to add (split-K shrink over KG workgroups)
const MAX_TILE: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read_write> h: array<f32>;     // [N * S * rankStride]
// B: [maxAdapters * maxRank * bStride] weights in the layer dtype, as column pairs
//@weightsB
@group(0) @binding(3) var<storage, read> slots: array<vec2<u32>>;  // [maxAdapters] (rank, bitcast<u32>(scale))
@group(0) @binding(4) var<storage, read> callMeta: array<i32>;     // tiles [numTiles * 4] (slot, first entry, count, 0); rows [N]
@group(0) @binding(7) var<storage, read_write> y: array<f32>;      // [T * outFeatures]

// h summed over the KG partials of a split-K shrink, in a fixed order
fn hsum(i: u32) -> f32 {
  var v = h[i];
  for (var g = 1u; g < KG; g++) { v += h[i + g * p.hPart]; }
  return v;
}

@compute @workgroup_size(EM * NW)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wg.z;
  let n = p.sliceWidth[s];
  let np = (n + 1u) / 2u;  // column pairs of the slice
  let c0 = wg.y * NW * NT; // first column pair of the workgroup
  let tb = p.tilesOffset + wg.x * 4u;
  let count = u32(callMeta[tb + 2u]);
  let nw = lid % NW;
  // a constant 0 with one thread row: the h addresses are then the same for every thread, which
  // the driver may see (lavapipe, interleaved A/B: 3-5% faster on prefill tiles)
  let e0 = select((lid / NW) * MT, 0u, EM == 1u);
  if (c0 >= np || e0 >= count) { return; }
  let slot = u32(callMeta[tb]);
  let first = u32(callMeta[tb + 1u]);
  let info = slots[slot];
  let rank = info.x;
  let scale = bitcast<f32>(info.y);

  var acc: array<vec2<f32>, MAX_TILE>;
  // h rows of consecutive entries and B column pairs at fixed strides: plain arithmetic, no
  // per-thread index arrays (measured faster on lavapipe). Entries past the tile and columns past
  // n_s read values that are never stored (WebGPU clamps out-of-range reads to the buffer).
  let hStep = p.numSlices * p.rankStride;
  let h0 = ((first + e0) * p.numSlices + s) * p.rankStride;
  let b0 = (slot - p.slotBase) * p.maxRank * p.bStride + p.bOffset[s] + 2u * (c0 + nw);
  for (var k = 0u; k < rank; k++) {
    var hv: array<f32, 16>;
    for (var i = 0u; i < MT; i++) { hv[i] = hsum(h0 + i * hStep + k); }
    let row = b0 + k * p.bStride;
    for (var q = 0u; q < NT; q++) {
      let b = loadB2(row + 2u * q * NW);
      for (var i = 0u; i < MT; i++) { acc[i * NT + q] += hv[i] * b; }
    }
  }
  for (var i = 0u; i < MT; i++) {
    if (e0 + i >= count) { break; }
    let yb = u32(callMeta[p.rowsOffset + first + e0 + i]) * p.outFeatures + p.sliceOffset[s];
    for (var q = 0u; q < NT; q++) {
      let j = 2u * (c0 + q * NW + nw);
      let v = scale * acc[i * NT + q];
      if (j < n) { y[yb + j] += v.x; }
      if (j + 1u < n) { y[yb + j + 1u] += v.y; }
    }
  }
}
