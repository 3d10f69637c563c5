// gather: the shrink of an embedding layer, h[e, 0, k] = A[slot_e][0][k][tok[row_e]] for every
// plan entry e and k < rank(slot_e). Its input is one token id per row, and A times the one-hot
// vector of token t is column t of A: a gather, no dot product. Unscaled, like shrink.wgsl's
// output (the expand applies the slot's scale). One output slice.
//
// Tiling. Workgroup (rank tile = wg.x, tile = wg.y) covers WG rank rows of the tile's entries
// (callMeta "tiles", as for the shrink); thread k reads row k of A at each entry's token column.

//@params (shaders/params.wgsl)

override WG: u32 = 64u; // rank rows per workgroup

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<i32>;      // [T] token ids
// A: [maxAdapters * maxRank * inStride] weights in the layer dtype, as pairs
//@weights
@group(0) @binding(3) var<storage, read> slots: array<vec2<u32>>;  // [maxAdapters] (rank, bitcast<u32>(scale))
@group(0) @binding(4) var<storage, read> callMeta: array<i32>;     // tiles [numTiles * 4] (slot, first entry, count, 0); rows [N]
@group(0) @binding(5) var<storage, read_write> h: array<f32>;      // [N * rankStride]

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k = wg.x * WG + lid;
  let tb = p.tilesOffset + wg.y * 4u;
  let slot = u32(callMeta[tb]);
  let first = u32(callMeta[tb + 1u]);
  let count = u32(callMeta[tb + 2u]);
  if (k >= slots[slot].x) { return; }
  let row = ((slot - p.slotBase) * p.maxRank + k) * p.inStride;
  for (var i = 0u; i < count; i++) {
    let e = first + i;
    let j = row + u32(tokens[callMeta[p.rowsOffset + e]]);
    let v = load2(j & ~1u);
    h[e * p.rankStride + k] = select(v.x, v.y, (j & 1u) == 1u);
  }
}
