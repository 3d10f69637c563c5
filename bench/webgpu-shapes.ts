/**
 * The WebGPU benches' layer shapes (bench/webgpu.ts, bench/webgpu-tiles.ts): a 4096-wide square or
 * qkv stack, T tokens spread over `adapters` of 8 slots, with the data the grid makes for it.
 */
import type { WeightDtype } from '../src/types.js'
import { materialise, sliceWidthsFor } from '../test/grid.js'

export interface Shape {
  T: number
  layer: 'square' | 'qkv'
  rank: number
  adapters: number
  dtype: WeightDtype
}

/** The shape's layer spec, adapters (seed 42), x, y and ids (token t on adapter t % adapters). */
export function shapeCase(s: Shape): ReturnType<typeof materialise> {
  const d = materialise({
    name: '',
    seed: 42,
    inFeatures: 4096,
    sliceWidths: s.layer === 'square' ? sliceWidthsFor(4096, 1) : [4096, 1024, 1024],
    rank: s.rank,
    tokens: s.T,
    slots: 8,
    pattern: 'distinct',
    dtype: s.dtype,
    adaptersPerToken: 1,
  })
  d.ids.forEach((_, t) => (d.ids[t] = t % s.adapters))
  return d
}
