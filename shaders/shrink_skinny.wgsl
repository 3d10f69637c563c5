// shrink_skinny: the shrink of shrink_gemm.wgsl (h[e, s, r] = sum_k A[slot_e][s][r][k] * x[row_e][k])
// for prefill tiles at a low rank, without staging x in workgroup memory. Preconditions: those of
// shrink_gemm.wgsl, and every rank row of the workgroup's slices in one tile of RW <= 64 rows.
//
// Why: at rank 16 shrink_gemm's register blocks are small (the tile has 16 rank rows), so each
// multiply-add reads workgroup memory, and every k block waits at two barriers. Here lane e of a
// warp owns entry e of the tile and all RW rank rows of the workgroup (RW sums in registers): it
// reads its x quad straight from memory and, per rank row, the quad of A that every lane of the
// warp reads at the same address. No workgroup memory and no barrier in the k loop.
//
// Tiling. Workgroup (tile = wg.y, slice + S * kg = wg.z, or kg alone with the slices merged) has TM
// lanes (one entry each) x KW warps along k: warp kw takes the k quads kw, kw + KW, ... of the
// workgroup's kg-th chunk (the KW warps read neighbouring quads of a row together), KU of them per
// step, loaded before they are used. Slices merged (RS > 0): row i of the rank axis is rank row
// i % RS of slice i / RS. At the end the KW sums of each value are added through workgroup memory
// in kw order, RR rank rows per round: the same bits every run. The KG partials go to partial kg
// of h, as shrink_gemm's.

//@params (shaders/params.wgsl)

override TM: u32 = 32u;  // entries per tile (lanes)
override KW: u32 = 8u;   // threads along k
override RW: u32 = 16u;  // rank rows of the workgroup (the used rank rounded up, or S * RS)
override RS: u32 = 0u;   // > 0: slices merged, RS rows per slice (RW = S * RS)
override KG: u32 = 1u;   // k chunks over workgroups (split-K across wg.z)
override KU: u32 = 4u;   // k quads per step of a thread
const MAX_RW: u32 = 64u;
const MAX_KU: u32 = 8u;
const RR: u32 = 8u;      // rank rows per round of the final sum

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;   // [T * inFeatures / 4]
// A: [maxAdapters * S * maxRank * inStride] weights in the layer dtype, read 4 at a time
//@weights4
@group(0) @binding(3) var<storage, read> slots: array<vec2<u32>>; // [maxAdapters] (rank, bitcast<u32>(scale))
@group(0) @binding(4) var<storage, read> callMeta: array<i32>;    // tiles [numTiles * 4] (slot, first entry, count, 0); rows [N]
@group(0) @binding(5) var<storage, read_write> h: array<f32>;     // [KG * N * S * rankStride]

var<workgroup> part: array<f32, KW * TM * RR>; // [kw][entry][rank row of the round]
var<workgroup> wRank: u32;

// slice of row i of the rank axis (s: the workgroup's slice when not merged)
fn sliceOf(i: u32, s: u32) -> u32 {
  if (RS == 0u) { return s; }
  return i / max(RS, 1u);
}

// rank row of row i of the rank axis
fn rankRowOf(i: u32) -> u32 {
  if (RS == 0u) { return i; }
  return i % max(RS, 1u);
}

@compute @workgroup_size(TM * KW)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let merged = RS > 0u;
  let s = select(wg.z % p.numSlices, 0u, merged);
  let kg = select(wg.z / p.numSlices, wg.z, merged);
  let tb = p.tilesOffset + wg.y * 4u;
  let slot = u32(callMeta[tb]);
  let first = u32(callMeta[tb + 1u]);
  let count = u32(callMeta[tb + 2u]);
  if (lid == 0u) { wRank = slots[slot].x; }
  let rank = workgroupUniformLoad(&wRank);
  let q4 = p.inFeatures / 4u;
  let cq = (q4 + KG - 1u) / KG;
  let qb = min(q4, kg * cq);
  let qe = min(q4, qb + cq);
  let e = lid % TM;
  let kw = lid / TM;
  let live = e < count;
  let aSlot = (slot - p.slotBase) * p.numSlices;

  var acc: array<f32, MAX_RW>;
  if (live) {
    let xRow = u32(callMeta[p.rowsOffset + first + e]) * q4;
    for (var q = qb + kw; q < qe; q += KU * KW) {
      var xv: array<vec4<f32>, MAX_KU>;
      for (var u = 0u; u < KU; u++) {
        let qu = q + u * KW;
        xv[u] = vec4<f32>(0.0);
        if (qu < qe) { xv[u] = x[xRow + qu]; }
      }
      for (var i = 0u; i < RW; i++) {
        let r = rankRowOf(i);
        if (r >= rank) { continue; }
        let a0 = ((aSlot + sliceOf(i, s)) * p.maxRank + r) * p.inStride;
        var t = acc[i];
        for (var u = 0u; u < KU; u++) {
          // quads past the chunk add x = 0 (the A read is clamped by WebGPU when past the buffer)
          t += dot(xv[u], load4(a0 + 4u * min(q + u * KW, qe - 1u)));
        }
        acc[i] = t;
      }
    }
  }

  // the KW sums of each value added in kw order, RR rank rows at a time
  let hb = kg * p.hPart + (first + e) * p.numSlices * p.rankStride;
  for (var r0 = 0u; r0 < RW; r0 += RR) {
    for (var j = 0u; j < RR; j++) {
      if (r0 + j < RW) { part[(kw * TM + e) * RR + j] = acc[r0 + j]; }
    }
    workgroupBarrier();
    for (var j = kw; j < RR; j += KW) {
      let i = r0 + j;
      if (live && i < RW && rankRowOf(i) < rank) {
        var v = part[e * RR + j];
        for (var w = 1u; w < KW; w++) { v += part[(w * TM + e) * RR + j]; }
        h[hb + sliceOf(i, s) * p.rankStride + rankRowOf(i)] = v;
      }
    }
    workgroupBarrier();
  }
}
