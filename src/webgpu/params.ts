import type { LayerSpec } from '../types.js'

/** Byte size of the WGSL `Params` struct (shaders/shrink.wgsl): 12 u32 + 3 vec4<u32> + 4 u32. */
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

/** Offsets of the per-call lists inside the meta buffer (in i32 units). */
export interface MetaOffsets {
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

/** Pack the uniform params shared by the kernels of one call and slot group (field order of WGSL `Params`). */
export function packParams(spec: LayerSpec, strides: Strides, meta: MetaOffsets, group: SlotRange): ArrayBuffer {
  const buf = new ArrayBuffer(PARAMS_BYTES)
  const u = new Uint32Array(buf)
  u.set([
    spec.inFeatures,
    strides.inStride,
    spec.outFeatures,
    strides.rankStride,
    spec.maxRank,
    spec.sliceWidths.length,
    meta.tilesOffset,
    meta.rowsOffset,
    meta.tokensOffset,
    meta.adaptersPerToken,
    meta.numTokens,
    strides.bStride,
  ])
  for (let s = 0; s < spec.sliceWidths.length; s++) {
    u[12 + s] = spec.sliceWidths[s]
    u[16 + s] = spec.sliceOffsets[s]
    u[20 + s] = strides.bOffsets[s]
  }
  u[24] = group.slotBase
  u[25] = group.slotCount
  return buf
}
