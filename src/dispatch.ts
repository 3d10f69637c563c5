import type { Backend } from './backend.js'
import type { LayerSpec } from './types.js'

/** The features of one call that the choice of backend depends on. */
export interface CallFeatures {
  tokens: number
  entries: number
  distinct: number
  spec: LayerSpec
}

/**
 * Pick a backend for an 'auto' call among the usable ones. Interim rule until the calibrated
 * cost model lands: the GPU only for large batches on a hardware adapter; wasm otherwise.
 */
export function chooseBackend(usable: readonly Backend[], call: CallFeatures): Backend {
  const gpu = usable.find((b) => b.name === 'webgpu') as (Backend & { isSoftware?: boolean }) | undefined
  const wasm = usable.find((b) => b.name === 'wasm')
  if (gpu && (!wasm || (!gpu.isSoftware && call.entries >= 64))) return gpu
  return wasm ?? usable[0]
}
