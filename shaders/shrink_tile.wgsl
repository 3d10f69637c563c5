// shrink_tile: the shrink of shrink.wgsl for a GPU of many multiprocessors (tiles 'discrete'):
// h[e, s, r] = sum_k A[slot_e][s][r][k] * x[row_e][k]. Preconditions: inFeatures % 4 == 0 (x is
// read as vec4: each row starts on a vec4), every used rank <= RT * (rank tiles).
//
// Tiling. Workgroup (rank tile = wg.x, tile = wg.y, slice + S * kg = wg.z) computes (TE*MT
// entries of one slot) x (RT rank rows) over the kg-th of KG contiguous k chunks, with TE*KS
// threads. Thread (te, ks) keeps MT x RT sums over the ks-th of KS interleaved vec4 strips of the
// chunk: consecutive threads read consecutive vec4s of an x row (coalesced), and each A value
// loaded serves MT entries. STAGE = 1 (prefill tiles): the workgroup copies each block of KB k of
// its RT rows of A into workgroup memory (decoded to f32 once, so 16-bit weights cost no more than
// f32 in the k loop); STAGE = 0 (decode tiles, 1-4 entries: no reuse to gain) reads A directly.
// The KS partial sums of each value are added as a tree in workgroup memory (RC rank rows per
// round), always in the same order, and written to partial kg of h (p.hPart elements apart); the
// expand adds the KG partials in a fixed order. No atomics: results are the same bits every run.
//
// Subgroups (SG > 0, the `subgroups` feature; see shaders.ts): the steps of the tree below SG run
// in registers, each lane adding the value of the lane st further down (subgroupShuffleDown), the
// same additions in the same order as in workgroup memory: the same bits with or without them. A
// workgroup whose subgroups are not SG lanes in the order of local_invocation_index uses workgroup
// memory for every step.
//@subgroups

//@params (shaders/params.wgsl)

override TE: u32 = 16u;   // entry threads per workgroup
override MT: u32 = 1u;    // entries per thread (MT * RT <= 64)
override KS: u32 = 8u;    // threads per entry along k (a power of two)
override RT: u32 = 16u;   // rank rows per workgroup (multiple of RC)
override RC: u32 = 16u;   // rank rows per reduction round
override KB: u32 = 128u;  // k per staged block of A (multiple of 4 * KS)
override STAGE: u32 = 1u; // 1: A blocks through workgroup memory; 0: A read directly
override KG: u32 = 1u;    // k chunks over workgroups (split-K across wg.z)
override SG: u32 = 0u;    // subgroup lanes of the tree's last steps (0: none)
const MAX_ACC: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;   // [T * inFeatures / 4]
// A: [maxAdapters * S * maxRank * inStride] weights in the layer dtype, read 4 at a time (inStride
// = inFeatures, a multiple of 4: every load4 offset is one too)
//@weights4
@group(0) @binding(3) var<storage, read> slots: array<vec2<u32>>; // [maxAdapters] (rank, bitcast<u32>(scale))
@group(0) @binding(4) var<storage, read> callMeta: array<i32>;    // tiles [numTiles * 4] (slot, first entry, count, 0); rows [N]
@group(0) @binding(5) var<storage, read_write> h: array<f32>;     // [KG * N * S * rankStride]

var<workgroup> As: array<vec4<f32>, RT * KB / 4u>;  // [rank row][k / 4] of the staged block
var<workgroup> red: array<f32, TE * MT * KS * RC>;   // [entry][ks][rank row of the round]

@compute @workgroup_size(TE * KS)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32/*@lanes*/) {
  let s = wg.z % p.numSlices;
  let kg = wg.z / p.numSlices;
  let r0 = wg.x * RT;
  let tb = p.tilesOffset + wg.y * 4u;
  let slot = u32(callMeta[tb]);
  let first = u32(callMeta[tb + 1u]);
  let count = u32(callMeta[tb + 2u]);
  let rank = slots[slot].x;
  let ks = lid % KS;
  let te = lid / KS;
  let e0 = te * MT;
  let q4 = p.inFeatures / 4u;
  // this workgroup's chunk [qb, qe) of vec4s of the k axis
  let cq = (q4 + KG - 1u) / KG;
  let qb = min(q4, kg * cq);
  let qe = min(q4, qb + cq);
  let aRow0 = (((slot - p.slotBase) * p.numSlices + s) * p.maxRank + r0) * p.inStride;

  var xb: array<u32, 16>; // x row of each entry, in vec4s (clamped to a valid entry)
  for (var i = 0u; i < MT; i++) {
    xb[i] = u32(callMeta[p.rowsOffset + first + min(e0 + i, count - 1u)]) * q4;
  }
  var acc: array<f32, MAX_ACC>; // [entry i][rank row j] at i * RT + j
  if (STAGE == 1u) {
    let QB = KB / 4u; // vec4s per block
    for (var b = qb; b < qe; b += QB) {
      // rows past the rank and k past the chunk as zeros
      for (var i = lid; i < RT * QB; i += TE * KS) {
        let j = i / QB;
        let q = b + i % QB;
        var v = vec4<f32>(0.0);
        if (r0 + j < rank && q < qe) { v = load4(aRow0 + j * p.inStride + 4u * q); }
        As[i] = v;
      }
      workgroupBarrier();
      for (var c = ks; c < QB; c += KS) {
        if (b + c < qe) {
          var xv: array<vec4<f32>, 16>;
          for (var i = 0u; i < MT; i++) { xv[i] = x[xb[i] + b + c]; }
          for (var j = 0u; j < RT; j++) {
            let a = As[j * QB + c];
            for (var i = 0u; i < MT; i++) { acc[i * RT + j] += dot(a, xv[i]); }
          }
        }
      }
      workgroupBarrier();
    }
  } else {
    // rows past the rank read values that are never stored (WebGPU clamps out-of-range reads)
    for (var q = qb + ks; q < qe; q += KS) {
      var xv: array<vec4<f32>, 16>;
      for (var i = 0u; i < MT; i++) { xv[i] = x[xb[i] + q]; }
      for (var j = 0u; j < RT; j++) {
        let a = load4(aRow0 + j * p.inStride + 4u * q);
        for (var i = 0u; i < MT; i++) { acc[i * RT + j] += dot(a, xv[i]); }
      }
    }
  }
  // add the KS partial sums as a tree (same order every run), RC rank rows per round: the steps
  // st >= low in workgroup memory, the steps below in registers (low = SG where the lanes are usable)
  let low = lanesLow(lid, sgLane, sgSize);
  let mem = KS > low;
  for (var c0 = 0u; c0 < RT; c0 += RC) {
    var v: array<f32, MAX_ACC>; // [entry i][rank row j of the round] at i * RC + j
    for (var i = 0u; i < MT; i++) {
      for (var j = 0u; j < RC; j++) { v[i * RC + j] = acc[i * RT + c0 + j]; }
    }
    if (mem) {
      for (var i = 0u; i < MT; i++) {
        for (var j = 0u; j < RC; j++) { red[((e0 + i) * KS + ks) * RC + j] = v[i * RC + j]; }
      }
      workgroupBarrier();
      for (var st = KS / 2u; st >= low; st /= 2u) {
        if (ks < st) {
          for (var i = 0u; i < MT; i++) {
            let at = ((e0 + i) * KS + ks) * RC;
            for (var j = 0u; j < RC; j++) { red[at + j] += red[at + st * RC + j]; }
          }
        }
        workgroupBarrier();
      }
      for (var i = 0u; i < MT; i++) {
        for (var j = 0u; j < RC; j++) { v[i * RC + j] = red[((e0 + i) * KS + ks) * RC + j]; }
      }
    }
    for (var st = min(KS, low) / 2u; st > 0u; st /= 2u) {
      for (var i = 0u; i < MT; i++) {
        for (var j = 0u; j < RC; j++) { v[i * RC + j] += down(v[i * RC + j], st); }
      }
    }
    if (ks == 0u) {
      for (var i = 0u; i < MT; i++) {
        let e = e0 + i;
        let hb = kg * p.hPart + ((first + e) * p.numSlices + s) * p.rankStride + r0 + c0;
        for (var j = 0u; j < RC; j++) {
          if (e < count && r0 + c0 + j < rank) { h[hb + j] = v[i * RC + j]; }
        }
      }
    }
    if (mem) { workgroupBarrier(); }
  }
}
