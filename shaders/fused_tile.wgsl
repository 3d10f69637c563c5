// fused_tile: the shrink and the expand of decode tiles in one dispatch, for a GPU of many
// multiprocessors (tiles 'discrete'):
//   y[row_e, off_s + j] += scale(slot_e) * sum_r B[slot_e][s][j][r] * (sum_k A[slot_e][s][r][k] * x[row_e][k]).
// Preconditions: tiles of at most MT (<= 4) entries, every token at most one adapter, inFeatures
// % 4 == 0, every slice width a multiple of 4, every used rank <= RMAX.
//
// Why: on a big GPU a decode call is two short dispatches, and the second one's launch, after a
// barrier on the first, costs about as much as its work. Here each workgroup computes the h it
// needs itself: every column block of a tile reads the tile's whole A from the GPU's cache again,
// which is cheap next to a dispatch while A is small (rank rows x inFeatures; programs/fused.ts
// says where it is used).
//
// Workgroup (tile = wg.x, column block = wg.y, slice = wg.z), WG threads:
// 1. Shrink. Thread (rg, ks) keeps MT x RR sums (entries x rank rows rg*RR ..) over the ks-th of
//    KS interleaved vec4 strips of k (consecutive threads read consecutive vec4s of a row:
//    coalesced). The KS partial sums of each value are added as a tree in workgroup memory, in
//    the same order every run; h[e, r] is then red[(e * RMAX + r) * KS].
// 2. Expand. Thread (kt, nw) sums column quad wg.y * NW + nw over the kt-th of KT contiguous
//    ranges of the rank, KU rows of B in flight per step; threads kt > 0 hand their sums to
//    kt = 0 through workgroup memory, added in kt order. y is read before the k loop.
// No atomics: the same bits every run for one tiling.
//
// Subgroups (SG > 0): the tree's steps below SG run in registers (subgroupShuffleDown), the same
// additions in the same order (the same bits), as in shrink_tile.wgsl.
//@subgroups

//@params (shaders/params.wgsl)

override MT: u32 = 1u;    // entries per tile (1, 2 or 4)
override RMAX: u32 = 16u; // rank rows computed (>= every used rank)
override KS: u32 = 32u;   // shrink threads along k (a power of two)
override RR: u32 = 2u;    // rank rows per shrink thread (RMAX / RR * KS = WG)
override NW: u32 = 64u;   // column quads per workgroup
override KT: u32 = 4u;    // expand threads along the rank per quad (NW * KT <= WG)
override KU: u32 = 4u;    // rows of B loaded per step of the expand's k loop (<= 16)
override WG: u32 = 256u;  // threads per workgroup
override QU: u32 = 4u;    // k strips per step of the shrink loop (QU * MT and QU * RR <= 16)
override SG: u32 = 0u;    // subgroup lanes of the tree's last steps (0: none)
const MAX_ACC: u32 = 64u;
const MAX_LOADS: u32 = 16u;
const MAX_KU: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;   // [T * inFeatures / 4]
// A: [maxAdapters * S * maxRank * inStride], read 4 at a time with load4
//@weights4
@group(0) @binding(3) var<storage, read> slots: array<vec2<u32>>; // [maxAdapters] (rank, bitcast<u32>(scale))
@group(0) @binding(4) var<storage, read> callMeta: array<i32>;    // tiles [numTiles * 4] (slot, first entry, count, 0); rows [N]
@group(0) @binding(7) var<storage, read_write> y: array<vec4<f32>>; // [T * outFeatures / 4]
// B: [maxAdapters * maxRank * bStride], read 4 at a time with loadB4
//@weightsB4

var<workgroup> red: array<f32, MT * RMAX * KS>;                  // [entry][rank row][ks]
var<workgroup> part: array<vec4<f32>, (KT - 1u) * MT * NW + 1u>; // [kt - 1][entry][nw]

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32/*@lanes*/) {
  let s = wg.z;
  let nq = p.sliceWidth[s] / 4u; // column quads of the slice
  if (wg.y * NW >= nq) { return; } // the same for the whole workgroup, before any barrier
  let tb = p.tilesOffset + wg.x * 4u;
  let slot = u32(callMeta[tb]);
  let first = u32(callMeta[tb + 1u]);
  let count = u32(callMeta[tb + 2u]);
  let info = slots[slot];
  let rank = info.x;
  let scale = bitcast<f32>(info.y);

  // 1. the tile's h for slice s. Rows past the rank are summed from rows that exist (maxRank
  // rows per slot and slice) and never read; entries past the tile repeat its last entry.
  let q4 = p.inFeatures / 4u;
  let ks = lid % KS;
  let j0 = (lid / KS) * RR;
  var xb: array<u32, 4>;
  for (var i = 0u; i < MT; i++) { xb[i] = u32(callMeta[p.rowsOffset + first + min(i, count - 1u)]) * q4; }
  let aRow0 = (((slot - p.slotBase) * p.numSlices + s) * p.maxRank + j0) * p.inStride;
  var acc: array<f32, MAX_ACC>; // [entry i][row j] at i * RR + j
  if (j0 < rank) {
    // QU strips per step, all loaded before they are used (a thread's loop is a chain of load
    // latencies otherwise); strips past k add x = 0. Sums stay in k order: the same bits for every QU.
    for (var q0 = ks; q0 < q4; q0 += KS * QU) {
      var xv: array<vec4<f32>, MAX_LOADS>;
      var av: array<vec4<f32>, MAX_LOADS>;
      for (var u = 0u; u < QU; u++) {
        let q = q0 + u * KS;
        let qc = min(q, q4 - 1u);
        for (var i = 0u; i < MT; i++) { xv[u * MT + i] = select(vec4<f32>(0.0), x[xb[i] + qc], q < q4); }
        for (var j = 0u; j < RR; j++) { av[u * RR + j] = load4(aRow0 + j * p.inStride + 4u * qc); }
      }
      for (var u = 0u; u < QU; u++) {
        for (var j = 0u; j < RR; j++) {
          for (var i = 0u; i < MT; i++) { acc[i * RR + j] += dot(av[u * RR + j], xv[u * MT + i]); }
        }
      }
    }
  }
  // the tree: steps st >= low in workgroup memory, the steps below in registers (low = SG where
  // the lanes are usable); h[e, r] ends in red[(e * RMAX + r) * KS]
  let low = lanesLow(lid, sgLane, sgSize);
  if (KS > low) {
    for (var i = 0u; i < MT; i++) {
      for (var j = 0u; j < RR; j++) { red[(i * RMAX + j0 + j) * KS + ks] = acc[i * RR + j]; }
    }
    workgroupBarrier();
    for (var st = KS / 2u; st >= low; st /= 2u) {
      if (ks < st) {
        for (var i = 0u; i < MT; i++) {
          for (var j = 0u; j < RR; j++) {
            let at = (i * RMAX + j0 + j) * KS + ks;
            red[at] += red[at + st];
          }
        }
      }
      workgroupBarrier();
    }
    if (low > 1u) {
      // (each thread reads only its own element, lane ks = 0 among them: no barrier before its write)
      for (var i = 0u; i < MT; i++) {
        for (var j = 0u; j < RR; j++) { acc[i * RR + j] = red[(i * RMAX + j0 + j) * KS + ks]; }
      }
    }
  }
  if (low > 1u) {
    for (var st = min(KS, low) / 2u; st > 0u; st /= 2u) {
      for (var i = 0u; i < MT; i++) {
        for (var j = 0u; j < RR; j++) { acc[i * RR + j] += down(acc[i * RR + j], st); }
      }
    }
    if (ks == 0u) {
      for (var i = 0u; i < MT; i++) {
        for (var j = 0u; j < RR; j++) { red[(i * RMAX + j0 + j) * KS] = acc[i * RR + j]; }
      }
    }
    workgroupBarrier();
  }

  // 2. the expand of NW column quads
  let nw = lid % NW;
  let kt = lid / NW;
  let jq = wg.y * NW + nw; // this thread's column quad
  let live = kt < KT;
  var ybs: array<u32, 4>;
  var yv: array<vec4<f32>, 4>;
  if (kt == 0u) {
    for (var i = 0u; i < MT; i++) {
      if (i >= count) { break; }
      ybs[i] = (u32(callMeta[p.rowsOffset + first + i]) * p.outFeatures + p.sliceOffset[s]) / 4u;
      if (jq < nq) { yv[i] = y[ybs[i] + jq]; }
    }
  }
  var sum: array<vec4<f32>, 4>;
  // quads past n_s read values that are never stored (WebGPU clamps out-of-range reads)
  let b0 = (slot - p.slotBase) * p.maxRank * p.bStride + p.bOffset[s] + 4u * jq;
  let kc = (rank + KT - 1u) / KT;
  let kb = min(rank, kt * kc);
  var ke = min(rank, kb + kc);
  if (!live) { ke = kb; }
  var k = kb;
  for (; k + KU <= ke; k += KU) {
    var v: array<vec4<f32>, MAX_KU>;
    for (var u = 0u; u < KU; u++) { v[u] = loadB4(b0 + (k + u) * p.bStride); }
    for (var i = 0u; i < MT; i++) {
      var t = sum[i];
      for (var u = 0u; u < KU; u++) { t += red[(i * RMAX + k + u) * KS] * v[u]; }
      sum[i] = t;
    }
  }
  for (; k < ke; k++) {
    let b = loadB4(b0 + k * p.bStride);
    for (var i = 0u; i < MT; i++) { sum[i] += red[(i * RMAX + k) * KS] * b; }
  }
  if (KT > 1u) {
    if (kt > 0u && live) {
      for (var i = 0u; i < MT; i++) { part[((kt - 1u) * MT + i) * NW + nw] = sum[i]; }
    }
    workgroupBarrier();
    if (kt == 0u) {
      for (var g = 1u; g < KT; g++) {
        for (var i = 0u; i < MT; i++) { sum[i] += part[((g - 1u) * MT + i) * NW + nw]; }
      }
    }
  }
  if (kt > 0u || jq >= nq) { return; }
  for (var i = 0u; i < MT; i++) {
    if (i >= count) { break; }
    y[ybs[i] + jq] = yv[i] + scale * sum[i];
  }
}
