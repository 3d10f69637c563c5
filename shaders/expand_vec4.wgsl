// expand_vec4: the segment-major expand of expand.wgsl (same math, same summation order, so the
// same bits) for layers whose slice widths are all multiples of 4: y is read and written as vec4
// (every slice then starts and ends on a vec4 boundary of each y row), and each thread owns column
// quads instead of pairs. Used when every token has at most one adapter, like expand.wgsl.
//
// Why: at small rank the expand does only `rank` multiply-adds per y element, so the y
// read-modify-write is a large share of the work (lavapipe, rank 16: 30% of the kernel's time).
// A software driver runs the threads of a subgroup as SIMD lanes and moves each lane's value of a
// per-thread address on its own; one vec4 per lane is one 16-byte access instead of four 4-byte
// ones (lavapipe, interleaved A/B, bit-identical output: 1.15-1.45x faster than expand.wgsl).
//
// Tiling. Workgroup (tile = wg.x, column tile = wg.y, slice = wg.z) computes (EM*MT entries of one
// slot) x (4*NW*NQ columns) with EM*NW threads; thread (em, nw) keeps an MT x NQ register tile of
// column quads (quad = c0 + q*NW + nw, interleaved so neighbouring threads touch neighbouring
// words), loading each B quad (two column pairs, see src/webgpu/weights.ts) once for MT entries.

//@params (shaders/params.wgsl)

override EM: u32 = 1u;  // entry threads per workgroup
override NW: u32 = 8u;  // column-quad threads per workgroup
override MT: u32 = 16u; // entries per thread (<= 16)
override NQ: u32 = 4u;  // column quads per thread (MT * NQ <= 64)
override KG: u32 = 1u;  // partials of h to add (split-K shrink over KG workgroups)
const MAX_TILE: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read_write> h: array<f32>;     // [N * S * rankStride]
// B: [maxAdapters * maxRank * bStride] weights in the layer dtype, as column pairs
//@weightsB
@group(0) @binding(3) var<storage, read> slots: array<vec2<u32>>;  // [maxAdapters] (rank, bitcast<u32>(scale))
@group(0) @binding(4) var<storage, read> callMeta: array<i32>;     // tiles [numTiles * 4] (slot, first entry, count, 0); rows [N]
@group(0) @binding(7) var<storage, read_write> y: array<vec4<f32>>; // [T * outFeatures / 4]

// h summed over the KG partials of a split-K shrink, in a fixed order
fn hsum(i: u32) -> f32 {
  var v = h[i];
  for (var g = 1u; g < KG; g++) { v += h[i + g * p.hPart]; }
  return v;
}

@compute @workgroup_size(EM * NW)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wg.z;
  let nq = p.sliceWidth[s] / 4u; // column quads of the slice (n_s % 4 == 0)
  let c0 = wg.y * NW * NQ;       // first column quad of the workgroup
  let tb = p.tilesOffset + wg.x * 4u;
  let count = u32(callMeta[tb + 2u]);
  let nw = lid % NW;
  // a constant 0 with one thread row: the h addresses are the same for every thread (see expand.wgsl)
  let e0 = select((lid / NW) * MT, 0u, EM == 1u);
  if (c0 >= nq || e0 >= count) { return; }
  let slot = u32(callMeta[tb]);
  let first = u32(callMeta[tb + 1u]);
  let info = slots[slot];
  let rank = info.x;
  let scale = bitcast<f32>(info.y);

  var acc: array<vec4<f32>, MAX_TILE>;
  // entries past the tile and quads past n_s read values that are never stored (WebGPU clamps
  // out-of-range reads to the buffer)
  let hStep = p.numSlices * p.rankStride;
  let h0 = ((first + e0) * p.numSlices + s) * p.rankStride;
  let b0 = (slot - p.slotBase) * p.maxRank * p.bStride + p.bOffset[s] + 4u * (c0 + nw);
  for (var k = 0u; k < rank; k++) {
    var hv: array<f32, 16>;
    for (var i = 0u; i < MT; i++) { hv[i] = hsum(h0 + i * hStep + k); }
    let row = b0 + k * p.bStride;
    for (var q = 0u; q < NQ; q++) {
      let a = row + 4u * q * NW;
      let b = vec4<f32>(loadB2(a), loadB2(a + 2u));
      for (var i = 0u; i < MT; i++) { acc[i * NQ + q] += hv[i] * b; }
    }
  }
  for (var i = 0u; i < MT; i++) {
    if (e0 + i >= count) { break; }
    let yb = (u32(callMeta[p.rowsOffset + first + e0 + i]) * p.outFeatures + p.sliceOffset[s]) / 4u;
    for (var q = 0u; q < NQ; q++) {
      let j = c0 + q * NW + nw;
      if (j < nq) { y[yb + j] += scale * acc[i * NQ + q]; }
    }
  }
}
