import type { LayerSpec } from '../types.js'

/** Byte size of the WGSL `Params` struct (shaders/params.wgsl): 12 u32 + 3 vec4<u32> + 4 u32. */
export const PARAMS_BYTES = 112

/** Per-layer row strides: even, so every weight pair (k, k+1) sits in one 32-bit word. */
export interface Strides {
  /** Row stride of A (inFeatures rounded up to even). */
  inStride: number
  /** Row stride of h (maxRank rounded up to even). */
  rankStride: number
  /** Row stride of B: the slice widths, each rounded up to even, so a column pair never straddles two slices. */
  bStride: number
  /** First column of each slice in a row of B (even). */
  bOffsets: number[]
}

export function stridesOf(spec: LayerSpec): Strides {
  const bOffsets: number[] = []
  let bStride = 0
  for (const n of spec.sliceWidths) {
    bOffsets.push(bStride)
    bStride += n + (n & 1)
  }
  return { inStride: spec.inFeatures + (spec.inFeatures & 1), rankStride: spec.maxRank + (spec.maxRank & 1), bStride, bOffsets }
}

/** Offsets of the per-call lists inside the callMeta buffer (in i32 units). */
export interface CallMetaOffsets {
  tilesOffset: number
  rowsOffset: number
  tokensOffset: number
  numTokens: number
  adaptersPerToken: number
}

/** The slots whose weights one dispatch binds (see LayerWeights: slot groups). */
export interface SlotRange {
  slotBase: number
  slotCount: number
}

/**
 * Pack the uniform params shared by the kernels of one call and slot group (field order of WGSL
 * `Params`) into `out` at word `at`. `hPart`: elements of one partial h (split-K over workgroups).
 */
export function packParams(
  out: Uint32Array,
  at: number,
  spec: LayerSpec,
  strides: Strides,
  callMeta: CallMetaOffsets,
  group: SlotRange,
  hPart: number,
): void {
  out[at] = spec.inFeatures
  out[at + 1] = strides.inStride
  out[at + 2] = spec.outFeatures
  out[at + 3] = strides.rankStride
  out[at + 4] = spec.maxRank
  out[at + 5] = spec.sliceWidths.length
  out[at + 6] = callMeta.tilesOffset
  out[at + 7] = callMeta.rowsOffset
  out[at + 8] = callMeta.tokensOffset
  out[at + 9] = callMeta.adaptersPerToken
  out[at + 10] = callMeta.numTokens
  out[at + 11] = strides.bStride
  for (let s = 0; s < 4; s++) {
    const used = s < spec.sliceWidths.length
    out[at + 12 + s] = used ? spec.sliceWidths[s] : 0
    out[at + 16 + s] = used ? spec.sliceOffsets[s] : 0
    out[at + 20 + s] = used ? strides.bOffsets[s] : 0
  }
  out[at + 24] = group.slotBase
  out[at + 25] = group.slotCount
  out[at + 26] = hPart
  out[at + 27] = 0
}
