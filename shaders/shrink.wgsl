// shrink: h[e, s, r] = sum_k A[slot_e][s][r][k] * x[row_e][k], for every plan entry e, every
// slice s and every r < rank(slot_e).
//
// Tiling. The host cuts the plan's segments into tiles of at most EM*MT entries of one slot
// (callMeta "tiles"). Workgroup (rank tile = wg.x, tile = wg.y, slice = wg.z) computes an
// (EM*MT entries) x (RW*RV rank rows) block of h with EM*RW*KS threads. Thread (em, rw, ks)
// keeps an MT x RV register tile (each A pair loaded serves MT entries, each x pair RV rank
// rows) over the ks-th of KS interleaved strips of the k axis; consecutive threads take
// consecutive k pairs, so a subgroup reads contiguous memory. KS > 1 is split-K: with a decode
// batch (1..4 entries per slot) the rank x in dot products alone give too few threads, so KS
// threads share each dot product and add their partial sums in workgroup memory at the end.
// Rank tiles at or past the slot's rank do no work (per-slot rank read here: no work on padding).
// Weights are read in pairs of k (row strides are even), decoded by load2() to f32; math is f32.
// KG > 1 is split-K over workgroups (wg.z = slice + S * kg): workgroup kg covers the kg-th of KG
// contiguous k chunks and writes its partial sums to partial kg of h (p.hPart elements apart);
// the expand adds the KG partials in a fixed order (so results stay deterministic). A big GPU
// needs this at small T, where rank x tiles alone give too few workgroups to fill it.

//@params (shaders/params.wgsl)

override EM: u32 = 1u;  // entry threads per workgroup
override RW: u32 = 4u;  // rank threads per workgroup
override KS: u32 = 16u; // k-split threads per workgroup
override MT: u32 = 1u;  // entries per thread (<= 16)
override RV: u32 = 1u;  // rank rows per thread (MT * RV <= 64)
override KG: u32 = 1u;  // k chunks over workgroups (split-K across wg.z)
const MAX_TILE: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // [T * inFeatures]
// A: [maxAdapters * S * maxRank * inStride] weights in the layer dtype, as pairs
//@weights
@group(0) @binding(3) var<storage, read> slots: array<vec2<u32>>;  // [maxAdapters] (rank, bitcast<u32>(scale))
@group(0) @binding(4) var<storage, read> callMeta: array<i32>;     // tiles [numTiles * 4] (slot, first entry, count, 0); rows [N]
@group(0) @binding(5) var<storage, read_write> h: array<f32>;      // [N * S * rankStride]

var<workgroup> partial: array<f32, EM * RW * KS * MT * RV>;

@compute @workgroup_size(EM * RW * KS)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  // rank tiles vary fastest: workgroups run one after another on the same entries reuse their
  // x rows from cache (lavapipe, interleaved A/B: 1.05-1.25x on prefill with several rank tiles)
  let rt = wg.x;
  let s = wg.z % p.numSlices;
  let kg = wg.z / p.numSlices;
  let tb = p.tilesOffset + wg.y * 4u;
  let slot = u32(callMeta[tb]);
  let first = u32(callMeta[tb + 1u]);
  let count = u32(callMeta[tb + 2u]);
  let rank = slots[slot].x;
  let ks = lid % KS;
  let rw = (lid / KS) % RW;
  let em = lid / (KS * RW);
  let r0 = rt * RW * RV + rw * RV;
  let e0 = em * MT;
  let inF = p.inFeatures;
  // this workgroup's k chunk [kb, ke): even length, so pairs never straddle two chunks
  let kc = ((inF + 2u * KG - 1u) / (2u * KG)) * 2u;
  let kb = min(inF, kg * kc);
  let ke = min(inF, kb + kc);
  let aSlice = ((slot - p.slotBase) * p.numSlices + s) * p.maxRank;

  var acc: array<f32, MAX_TILE>;
  if (rt * RW * RV < rank && e0 < count) {
    var xb: array<u32, 16>; // x row base of each entry (clamped to a valid entry)
    for (var i = 0u; i < MT; i++) {
      xb[i] = u32(callMeta[p.rowsOffset + first + min(e0 + i, count - 1u)]) * inF;
    }
    // A rows at a fixed stride (plain arithmetic, no index array): rows past the slot's rank
    // read values that are never stored (WebGPU clamps out-of-range reads to the buffer)
    let a0 = (aSlice + r0) * p.inStride;
    var k = kb + ks * 2u;
    for (; k + 1u < ke; k += 2u * KS) {
      var xv: array<vec2<f32>, 16>;
      for (var i = 0u; i < MT; i++) { xv[i] = vec2<f32>(x[xb[i] + k], x[xb[i] + k + 1u]); }
      for (var j = 0u; j < RV; j++) {
        let a = load2(a0 + j * p.inStride + k);
        for (var i = 0u; i < MT; i++) { acc[i * RV + j] += dot(a, xv[i]); }
      }
    }
    if (k + 1u == ke && ke == inF) { // odd inFeatures: this thread owns the last element
      for (var j = 0u; j < RV; j++) {
        let a = load2(a0 + j * p.inStride + k).x;
        for (var i = 0u; i < MT; i++) { acc[i * RV + j] += a * x[xb[i] + k]; }
      }
    }
  }
  if (KS > 1u) {
    for (var q = 0u; q < MT * RV; q++) { partial[lid * MT * RV + q] = acc[q]; }
    workgroupBarrier();
    if (ks == 0u) {
      for (var o = 1u; o < KS; o++) {
        for (var q = 0u; q < MT * RV; q++) { acc[q] += partial[(lid + o) * MT * RV + q]; }
      }
    }
  }
  if (ks != 0u || rt * RW * RV >= rank) { return; }
  for (var i = 0u; i < MT; i++) {
    let e = e0 + i;
    if (e >= count) { break; }
    let hb = kg * p.hPart + ((first + e) * p.numSlices + s) * p.rankStride;
    for (var j = 0u; j < RV; j++) {
      let r = r0 + j;
      if (r < rank) { h[hb + r] = acc[i * RV + j]; }
    }
  }
}
