// expand_multi: the expand for batches where a token has several adapters (adaptersPerToken > 1):
// y[t, off_s + j] += sum over the token's entries e of scale(slot_e) * B[slot_e][s][j] . h[e, s].
//
// Token-major, so the K adapters of a token are summed in registers and y[t] is written by one
// thread per column, once: no write races on y and no atomics (a segment-major expand would have
// several segments, one per adapter, writing the same row concurrently). The host lists only the
// tokens that have at least one adapter (tokens whose ids are all -1 cost nothing), ordered by
// their first entry in the plan, so neighbouring tokens mostly share slots and B stays in cache.
//
// Tiling. B is stored transposed ([slot][k][column], read as column pairs). Workgroup
// (token tile = wg.x, column tile = wg.y, slice = wg.z) has EM*NW threads; thread (em, nw)
// computes NT interleaved column pairs (pair = c0 + q*NW + nw) of one token, looping over the
// token's adapters and each adapter's own rank. Column tiles past n_s exit at once.

//@params (shaders/params.wgsl)

override EM: u32 = 1u;  // tokens per workgroup
override NW: u32 = 64u; // column-pair threads per workgroup
override NT: u32 = 2u;  // column pairs per thread (<= 8)
override KG: u32 = 1u;  // partials of h to add (split-K shrink over KG workgroups)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read_write> h: array<f32>;     // [N * S * rankStride]
// B: [maxAdapters * maxRank * bStride] weights in the layer dtype, as column pairs
//@weightsB
@group(0) @binding(3) var<storage, read> slots: array<vec2<u32>>;  // [maxAdapters] (rank, bitcast<u32>(scale))
@group(0) @binding(4) var<storage, read> callMeta: array<i32>;     // tokens [numTokens * (1 + 2K)] (row, then K x (entry, slot), -1 pads)
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
  let np = (n + 1u) / 2u;
  let c0 = wg.y * NW * NT;
  let nw = lid % NW;
  let tok = wg.x * EM + lid / NW;
  let K = p.adaptersPerToken;
  if (c0 >= np || tok >= p.numTokens) { return; }
  let tb = p.tokensOffset + tok * (1u + 2u * K);
  let yb = u32(callMeta[tb]) * p.outFeatures + p.sliceOffset[s];

  var acc: array<vec2<f32>, 8>;
  for (var a = 0u; a < K; a++) {
    let e = callMeta[tb + 1u + 2u * a];
    if (e < 0) { break; }
    let slot = u32(callMeta[tb + 2u + 2u * a]);
    if (slot < p.slotBase || slot >= p.slotBase + p.slotCount) { continue; } // another group's dispatch
    let info = slots[slot];
    let rank = info.x;
    let scale = bitcast<f32>(info.y);
    let hb = (u32(e) * p.numSlices + s) * p.rankStride;
    var bc: array<u32, 8>;
    let bSlot = (slot - p.slotBase) * p.maxRank * p.bStride + p.bOffset[s];
    for (var q = 0u; q < NT; q++) {
      bc[q] = bSlot + 2u * min(c0 + q * NW + nw, np - 1u);
    }
    var part: array<vec2<f32>, 8>;
    // explicit zeroing: the implicit zero-init of a var declared in a loop body was observed to be
    // skipped (Dawn/Tint + lavapipe 25.0), carrying the previous adapter's sums into this one
    for (var q = 0u; q < 8u; q++) { part[q] = vec2<f32>(0.0); }
    for (var k = 0u; k < rank; k++) {
      let hk = hsum(hb + k);
      let row = k * p.bStride;
      for (var q = 0u; q < NT; q++) { part[q] += hk * loadB2(bc[q] + row); }
    }
    for (var q = 0u; q < NT; q++) { acc[q] += scale * part[q]; }
  }
  for (var q = 0u; q < NT; q++) {
    let j = 2u * (c0 + q * NW + nw);
    if (j < n) { y[yb + j] += acc[q].x; }
    if (j + 1u < n) { y[yb + j + 1u] += acc[q].y; }
  }
}
