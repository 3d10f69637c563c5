// expand_tile: the segment-major expand of expand_vec4.wgsl for a GPU of many multiprocessors
// (tiles 'discrete'): y[row_e, off_s + j] += scale(slot_e) * sum_k B[slot_e][s][j][k] * h[e, s, k].
// Same preconditions as expand_vec4.wgsl (every token at most one adapter, every slice width a
// multiple of 4) plus every used rank <= RMAX.
//
// What differs: the workgroup first stages its tile's h rows (EM*MT entries x rank) in workgroup
// memory, each value the sum of the KG partials of a split-K shrink added once, in a fixed order
// (partial 0, 1, ..., KG-1: the same bits on every run). The k loop then reads h from workgroup
// memory (one address per thread row: a broadcast) instead of re-adding KG partials from global
// memory per thread and k, which is what bounded the expand at small T on a big GPU.
//
// Tiling. Workgroup (tile = wg.x, column tile = wg.y, slice = wg.z) computes (EM*MT entries) x
// (4*NW*NQ columns) with EM*NW*KT threads; thread (em, nw, kt) keeps an MT x NQ register tile of
// column quads (quad = c0 + q*NW + nw: neighbouring threads read neighbouring B words and y quads)
// over the kt-th of KT contiguous ranges of k. With KT > 1 (decode: a thread's k loop is a chain
// of load latencies, and a short chain per thread is faster than a long one) threads kt > 0 hand
// their sums to thread kt = 0 through workgroup memory, which adds them in kt order: the same
// bits on every run for a given KT (not across KT values).

//@params (shaders/params.wgsl)

override EM: u32 = 4u;    // entry threads per workgroup
override NW: u32 = 32u;   // column-quad threads per workgroup
override MT: u32 = 4u;    // entries per thread (MT * NQ <= 64)
override NQ: u32 = 2u;    // column quads per thread
override KG: u32 = 1u;    // partials of h to add (split-K shrink over KG workgroups)
override RMAX: u32 = 64u; // h values staged per entry (>= every used rank)
override KU: u32 = 4u;    // rows of B loaded per step of the k loop (4, 8 or 16)
override KT: u32 = 1u;    // threads along k per column quad (contiguous ranges of the rank)
override PY: u32 = 1u;    // 1: y read before the k loop (see below); 0: read where it is written
const MAX_TILE: u32 = 64u;
const MAX_KU: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read_write> h: array<f32>;      // [KG * N * S * rankStride]
// B: [maxAdapters * maxRank * bStride] weights in the layer dtype, read 4 at a time (slice widths
// are multiples of 4, so bStride, bOffset and every load4 offset are too)
//@weightsB4
@group(0) @binding(3) var<storage, read> slots: array<vec2<u32>>;   // [maxAdapters] (rank, bitcast<u32>(scale))
@group(0) @binding(4) var<storage, read> callMeta: array<i32>;      // tiles [numTiles * 4] (slot, first entry, count, 0); rows [N]
@group(0) @binding(7) var<storage, read_write> y: array<vec4<f32>>; // [T * outFeatures / 4]

var<workgroup> hs: array<f32, EM * MT * RMAX>; // [entry of the tile][k]
// sums of the threads kt > 0: [kt - 1][em][entry i][quad q][nw] (one unused element when KT = 1)
var<workgroup> part: array<vec4<f32>, (KT - 1u) * EM * MT * NQ * NW + 1u>;

@compute @workgroup_size(EM * NW * KT)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wg.z;
  let nq = p.sliceWidth[s] / 4u; // column quads of the slice (n_s % 4 == 0)
  let c0 = wg.y * NW * NQ;       // first column quad of the workgroup
  if (c0 >= nq) { return; }      // the same for the whole workgroup
  let tb = p.tilesOffset + wg.x * 4u;
  let slot = u32(callMeta[tb]);
  let first = u32(callMeta[tb + 1u]);
  let count = u32(callMeta[tb + 2u]);
  let info = slots[slot];
  let rank = info.x;
  let scale = bitcast<f32>(info.y);

  // stage h: entries past the tile and k past the rank as zeros (never used for a stored value)
  let hStep = p.numSlices * p.rankStride;
  let h0 = (first * p.numSlices + s) * p.rankStride;
  for (var i = lid; i < EM * MT * RMAX; i += EM * NW * KT) {
    let e = i / RMAX;
    let k = i % RMAX;
    var v = 0.0;
    if (e < count && k < rank) {
      let a = h0 + e * hStep + k;
      v = h[a];
      for (var g = 1u; g < KG; g++) { v += h[a + g * p.hPart]; }
    }
    hs[i] = v;
  }
  workgroupBarrier();

  let nw = lid % NW;
  let em = (lid / NW) % EM;
  let kt = lid / (NW * EM);
  let e0 = em * MT;
  let live = e0 < count;
  // y of the outputs of this thread (kt = 0 writes them), read before the k loop (PY = 1): the
  // loads are in flight while B is read. Read at the end instead, each y += waits for its load in
  // turn (a store to y may alias the next load), a whole memory latency on a decode call.
  var ybs: array<u32, MAX_TILE>; // first quad of entry i's row in y
  var yv: array<vec4<f32>, MAX_TILE>;
  for (var i = 0u; i < MT; i++) {
    if (kt > 0u || !live || e0 + i >= count) { break; }
    ybs[i] = (u32(callMeta[p.rowsOffset + first + e0 + i]) * p.outFeatures + p.sliceOffset[s]) / 4u;
    if (PY == 0u) { continue; }
    for (var q = 0u; q < NQ; q++) {
      let j = c0 + q * NW + nw;
      if (j < nq) { yv[i * NQ + q] = y[ybs[i] + j]; }
    }
  }
  var acc: array<vec4<f32>, MAX_TILE>;
  // quads past n_s read values that are never stored (WebGPU clamps out-of-range reads)
  let b0 = (slot - p.slotBase) * p.maxRank * p.bStride + p.bOffset[s] + 4u * (c0 + nw);
  // this thread's range [kb, ke) of k
  let kc = (rank + KT - 1u) / KT;
  let kb = min(rank, kt * kc);
  let ke = min(rank, kb + kc);
  // KU rows of B per step, loaded before they are used: KU loads in flight per quad (a decode
  // call is latency-bound: each thread's k loop is all its work, one step per load latency), then
  // four, then one. Sums stay in k order whatever KU is: the same bits for every KU.
  var k = kb;
  if (!live) { k = ke; }
  for (; k + KU <= ke; k += KU) {
    let row = b0 + k * p.bStride;
    for (var q = 0u; q < NQ; q++) {
      let a = row + 4u * q * NW;
      var v: array<vec4<f32>, MAX_KU>;
      for (var u = 0u; u < KU; u++) { v[u] = loadB4(a + u * p.bStride); }
      for (var i = 0u; i < MT; i++) {
        let hk = (e0 + i) * RMAX + k;
        var t = acc[i * NQ + q];
        for (var u = 0u; u < KU; u++) { t += hs[hk + u] * v[u]; }
        acc[i * NQ + q] = t;
      }
    }
  }
  for (; k + 4u <= ke; k += 4u) {
    let row = b0 + k * p.bStride;
    for (var q = 0u; q < NQ; q++) {
      let a = row + 4u * q * NW;
      let v0 = loadB4(a);
      let v1 = loadB4(a + p.bStride);
      let v2 = loadB4(a + 2u * p.bStride);
      let v3 = loadB4(a + 3u * p.bStride);
      for (var i = 0u; i < MT; i++) {
        let hk = (e0 + i) * RMAX + k;
        var t = acc[i * NQ + q];
        t += hs[hk] * v0;
        t += hs[hk + 1u] * v1;
        t += hs[hk + 2u] * v2;
        t += hs[hk + 3u] * v3;
        acc[i * NQ + q] = t;
      }
    }
  }
  for (; k < ke; k++) {
    let row = b0 + k * p.bStride;
    for (var q = 0u; q < NQ; q++) {
      let b = loadB4(row + 4u * q * NW);
      for (var i = 0u; i < MT; i++) { acc[i * NQ + q] += hs[(e0 + i) * RMAX + k] * b; }
    }
  }
  if (KT > 1u) {
    if (kt > 0u && live) {
      for (var i = 0u; i < MT; i++) {
        for (var q = 0u; q < NQ; q++) { part[((((kt - 1u) * EM + em) * MT + i) * NQ + q) * NW + nw] = acc[i * NQ + q]; }
      }
    }
    workgroupBarrier();
    if (kt == 0u && live) {
      for (var g = 1u; g < KT; g++) {
        for (var i = 0u; i < MT; i++) {
          for (var q = 0u; q < NQ; q++) { acc[i * NQ + q] += part[((((g - 1u) * EM + em) * MT + i) * NQ + q) * NW + nw]; }
        }
      }
    }
  }
  if (kt > 0u || !live) { return; }
  for (var i = 0u; i < MT; i++) {
    if (e0 + i >= count) { break; }
    for (var q = 0u; q < NQ; q++) {
      let j = c0 + q * NW + nw;
      if (j < nq) {
        if (PY != 0u) { y[ybs[i] + j] = yv[i * NQ + q] + scale * acc[i * NQ + q]; } else { y[ybs[i] + j] += scale * acc[i * NQ + q]; }
      }
    }
  }
}
