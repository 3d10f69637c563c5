// expand: y[row_e, off_s + j] += scale(slot_e) * sum_r B[slot_e][off_s + j][r] * h[e, s, r], for
// every plan entry e, slice s and column j < n_s. Segment-major: used when every token has at
// most one adapter, so each row of y belongs to exactly one entry and no two threads write the
// same y element (no atomics, no races). Tokens with several adapters use expand_multi.wgsl.
//
// Tiling. Workgroup (tile = wg.x, column tile = wg.y, slice = wg.z) computes an
// (EM*MT entries of one slot) x (NW*NT columns) block with EM*NW threads. Thread (em, nw) keeps
// an MT x NT register tile: each B pair loaded serves MT entries of the segment (the weight reuse
// that segments exist for), each h pair NT columns. Columns are interleaved (j = c0 + q*NW + nw)
// so consecutive threads write consecutive y elements. The k loop runs to the slot's own rank
// (read here), never to maxRank. Column tiles past n_s exit at once.

struct Params {
  inFeatures: u32,   // K of the shrink
  inStride: u32,     // row stride of A in elements (inFeatures rounded up to even)
  outFeatures: u32,  // row stride of y
  rankStride: u32,   // row stride of h and B in elements (maxRank rounded up to even)
  maxRank: u32,      // rows of A per (slot, slice)
  numSlices: u32,    // S
  tilesOffset: u32,  // start of the tile list in calls
  rowsOffset: u32,   // start of the entry rows in meta
  tokensOffset: u32, // start of the token list in calls (expand_multi)
  adaptersPerToken: u32,
  numTokens: u32,    // tokens listed in calls (expand_multi)
  _pad1: u32,
  sliceWidth: vec4<u32>,  // n_s
  sliceOffset: vec4<u32>, // off_s
}

override EM: u32 = 1u;  // entry threads per workgroup
override NW: u32 = 64u; // column threads per workgroup
override MT: u32 = 1u;  // entries per thread (<= 8)
override NT: u32 = 4u;  // columns per thread (<= 8; MT * NT <= 32)
const MAX_TILE: u32 = 32u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h: array<f32>;           // [N * S * rankStride]
// B: [maxAdapters * outFeatures * rankStride] weights in the layer dtype, as pairs
//@weights
@group(0) @binding(3) var<storage, read> slots: array<vec2<u32>>;  // [maxAdapters] (rank, bitcast<u32>(scale))
@group(0) @binding(4) var<storage, read> calls: array<i32>;         // tiles [numTiles * 4] (slot, first entry, count, 0); rows [N]
@group(0) @binding(5) var<storage, read_write> y: array<f32>;      // [T * outFeatures]

@compute @workgroup_size(EM * NW)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wg.z;
  let n = p.sliceWidth[s];
  let c0 = wg.y * NW * NT;
  let tb = p.tilesOffset + wg.x * 4u;
  let count = u32(calls[tb + 2u]);
  let nw = lid % NW;
  let e0 = (lid / NW) * MT;
  if (c0 >= n || e0 >= count) { return; }
  let slot = u32(calls[tb]);
  let first = u32(calls[tb + 1u]);
  let info = slots[slot];
  let rank = info.x;
  let scale = bitcast<f32>(info.y);

  var hb: array<u32, 8>;  // h row base of each entry (clamped to a valid entry)
  for (var i = 0u; i < MT; i++) {
    hb[i] = ((first + min(e0 + i, count - 1u)) * p.numSlices + s) * p.rankStride;
  }
  var bb: array<u32, 8>;  // B row base of each column (clamped to a valid column)
  let bSlice = slot * p.outFeatures + p.sliceOffset[s];
  for (var q = 0u; q < NT; q++) {
    bb[q] = (bSlice + min(c0 + q * NW + nw, n - 1u)) * p.rankStride;
  }
  var acc: array<f32, MAX_TILE>;
  var k = 0u;
  for (; k + 1u < rank; k += 2u) {
    var hv: array<vec2<f32>, 8>;
    for (var i = 0u; i < MT; i++) { hv[i] = vec2<f32>(h[hb[i] + k], h[hb[i] + k + 1u]); }
    for (var q = 0u; q < NT; q++) {
      let b = load2(bb[q] + k);
      for (var i = 0u; i < MT; i++) { acc[i * NT + q] += dot(b, hv[i]); }
    }
  }
  if (k < rank) { // odd rank
    for (var q = 0u; q < NT; q++) {
      let b = load2(bb[q] + k).x;
      for (var i = 0u; i < MT; i++) { acc[i * NT + q] += b * h[hb[i] + k]; }
    }
  }
  for (var i = 0u; i < MT; i++) {
    if (e0 + i >= count) { break; }
    let yb = u32(calls[p.rowsOffset + first + e0 + i]) * p.outFeatures + p.sliceOffset[s];
    for (var q = 0u; q < NT; q++) {
      let j = c0 + q * NW + nw;
      if (j < n) { y[yb + j] += scale * acc[i * NT + q]; }
    }
  }
}
