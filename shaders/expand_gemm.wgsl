// expand_gemm: the segment-major expand of expand_vec4.wgsl as a register-blocked GEMM for prefill
// tiles on a GPU of many multiprocessors (tiles 'discrete'):
// y[row_e, off_s + j] += scale(slot_e) * sum_k h[e, s, k] * B[slot_e][s][j][k], an
// (entries x columns) = (entries x rank) . (rank x columns) product per tile of one slot. Same
// preconditions as expand_vec4.wgsl: every token at most one adapter, every slice width a multiple
// of 4 (y and B are read as vec4).
//
// Tiling. Workgroup (tile = wg.x, column tile = wg.y, slice = wg.z) computes (TM entries) x
// (4 * NW * BQ columns) with (TM / BM) x NW threads. The rank axis runs in rounds of KC: the
// workgroup stages the tile's h values of the round in workgroup memory, [k][entry], each the sum
// of the KG partials of a split-K shrink added once in a fixed order (partial 0, 1, ..., KG-1).
// Thread (te, nw) keeps BM entries (te * BM ...: one vec4 read of workgroup memory per 4 entries)
// x BQ column quads (nw, nw + NW, ...: neighbouring threads read neighbouring B words and y
// quads) in registers: BM / 4 + BQ vec4 reads per BM * BQ vec4 multiply-adds. B is transposed
// ([slot][k][column], src/webgpu/weights.ts), read as vec4 (16-bit weights as u32 pairs). y is read
// and written once per element, as vec4 (read before the k loop). Sums run over k in order: the same bits every run.

//@params (shaders/params.wgsl)

override TM: u32 = 64u; // entries per workgroup (the tile, tileM)
override BM: u32 = 8u;  // entries per thread (a multiple of 4, <= 16, TM % BM == 0)
override NW: u32 = 16u; // column-quad threads
override BQ: u32 = 2u;  // column quads per thread (BM * BQ <= 16)
override KC: u32 = 16u; // rank values staged per round
override KG: u32 = 1u;  // partials of h to add (split-K shrink over KG workgroups)
override PY: u32 = 1u;  // 1: y read before the k loop (see main); 0: read where it is written
const MAX_ACC: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read_write> h: array<f32>;      // [KG * N * S * rankStride]
// B: [maxAdapters * maxRank * bStride] weights in the layer dtype, read 4 at a time
//@weightsB4
@group(0) @binding(3) var<storage, read> slots: array<vec2<u32>>;   // [maxAdapters] (rank, bitcast<u32>(scale))
@group(0) @binding(4) var<storage, read> callMeta: array<i32>;      // tiles [numTiles * 4] (slot, first entry, count, 0); rows [N]
@group(0) @binding(7) var<storage, read_write> y: array<vec4<f32>>; // [T * outFeatures / 4]

var<workgroup> hs: array<vec4<f32>, KC * TM / 4u>; // [k of the round][entry / 4]
var<workgroup> wRank: u32;

// k of the round: acc[u][q] += h[entry u][k] * B[k][quad q], B row k of the slot starting at `row`
fn step(acc: ptr<function, array<vec4<f32>, MAX_ACC>>, k: u32, row: u32, te: u32) {
  var hv: array<vec4<f32>, 4>;
  for (var u4 = 0u; u4 < BM / 4u; u4++) { hv[u4] = hs[k * (TM / 4u) + te * (BM / 4u) + u4]; }
  for (var q = 0u; q < BQ; q++) {
    let b = loadB4(row + 4u * q * NW);
    for (var u = 0u; u < BM; u++) { (*acc)[u * BQ + q] += hv[u / 4u][u % 4u] * b; }
  }
}

@compute @workgroup_size((TM / BM) * NW)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wg.z;
  let nq = p.sliceWidth[s] / 4u; // column quads of the slice (n_s % 4 == 0)
  let c0 = wg.y * NW * BQ;       // first column quad of the workgroup
  if (c0 >= nq) { return; }      // the same for the whole workgroup
  let tb = p.tilesOffset + wg.x * 4u;
  let slot = u32(callMeta[tb]);
  let first = u32(callMeta[tb + 1u]);
  let count = u32(callMeta[tb + 2u]);
  let info = slots[slot];
  let scale = bitcast<f32>(info.y);
  if (lid == 0u) { wRank = info.x; }
  let rank = workgroupUniformLoad(&wRank);

  let nw = lid % NW;
  let te = lid / NW;
  let hStep = p.numSlices * p.rankStride;
  let h0 = (first * p.numSlices + s) * p.rankStride;
  // quads past n_s read values that are never stored (WebGPU clamps out-of-range reads)
  let b0 = (slot - p.slotBase) * p.maxRank * p.bStride + p.bOffset[s] + 4u * (c0 + nw);
  let busy = te * BM < count; // thread rows past the tile only help to stage
  // y of this thread's outputs, read before the k loop (PY = 1): the loads are in flight while h
  // is staged and the products summed. Read at the end instead, each y += waits for its load in
  // turn (a store to y may alias the next load, so they cannot be issued together).
  var ybs: array<u32, 16>; // first quad of entry u's row in y
  var yv: array<vec4<f32>, MAX_ACC>;
  for (var u = 0u; u < BM; u++) {
    let e = te * BM + u;
    if (!busy || e >= count) { break; }
    ybs[u] = (u32(callMeta[p.rowsOffset + first + e]) * p.outFeatures + p.sliceOffset[s]) / 4u;
    if (PY == 0u) { continue; }
    for (var q = 0u; q < BQ; q++) {
      let j = c0 + q * NW + nw;
      if (j < nq) { yv[u * BQ + q] = y[ybs[u] + j]; }
    }
  }
  var acc: array<vec4<f32>, MAX_ACC>; // [entry u][quad q] at u * BQ + q
  for (var kc = 0u; kc < rank; kc += KC) {
    // stage h: consecutive threads take consecutive entries (conflict-free stores); entries past
    // the tile and k past the rank as zeros
    for (var i = lid; i < KC * TM; i += (TM / BM) * NW) {
      let e = i % TM;
      let k = i / TM;
      var v = 0.0;
      if (e < count && kc + k < rank) {
        let a = h0 + e * hStep + kc + k;
        v = h[a];
        for (var g = 1u; g < KG; g++) { v += h[a + g * p.hPart]; }
      }
      hs[k * (TM / 4u) + e / 4u][e % 4u] = v;
    }
    workgroupBarrier();
    if (busy) {
      // a whole round: a loop of constant length (unrolled: the B loads of the round issued together)
      if (kc + KC <= rank) {
        for (var k = 0u; k < KC; k++) { step(&acc, k, b0 + (kc + k) * p.bStride, te); }
      } else {
        for (var k = 0u; k < rank - kc; k++) { step(&acc, k, b0 + (kc + k) * p.bStride, te); }
      }
    }
    workgroupBarrier();
  }
  if (!busy) { return; }
  for (var u = 0u; u < BM; u++) {
    if (te * BM + u >= count) { break; }
    for (var q = 0u; q < BQ; q++) {
      let j = c0 + q * NW + nw;
      if (j < nq) {
        if (PY != 0u) { y[ybs[u] + j] = yv[u * BQ + q] + scale * acc[u * BQ + q]; } else { y[ybs[u] + j] += scale * acc[u * BQ + q]; }
      }
    }
  }
}
