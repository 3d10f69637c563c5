// The uniform parameters shared by shrink.wgsl, expand.wgsl, expand_vec4.wgsl and expand_multi.wgsl, packed by
// src/webgpu/params.ts. WGSL has no include: src/webgpu/shaders.ts puts this struct in place of
// each shader's `//@params` line.
struct Params {
  inFeatures: u32,   // inF: the width the shrink sums over
  inStride: u32,     // row stride of A in elements (inFeatures rounded up to even)
  outFeatures: u32,  // row stride of y
  rankStride: u32,   // row stride of h in elements (maxRank rounded up to even)
  maxRank: u32,      // rows of A per (slot, slice)
  numSlices: u32,    // S
  tilesOffset: u32,  // start of the tile list in callMeta
  rowsOffset: u32,   // start of the entry rows in callMeta
  tokensOffset: u32, // start of the token list in callMeta (expand_multi)
  adaptersPerToken: u32,
  numTokens: u32,    // tokens listed in callMeta (expand_multi)
  bStride: u32,      // row stride of B in elements: sum of the slice widths, each rounded up to even
  sliceWidth: vec4<u32>,  // n_s
  sliceOffset: vec4<u32>, // off_s: first column of slice s in y
  bOffset: vec4<u32>,     // first column of slice s in a row of B (even)
  slotBase: u32,     // first slot of the weight buffers bound to this dispatch (slot group)
  slotCount: u32,    // slots in those buffers
  hPart: u32,       // elements of one partial h (split-K over KG workgroups: h holds KG partials)
  _pad1: u32,
}
