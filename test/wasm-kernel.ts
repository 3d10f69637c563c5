/** Direct access to the wasm kernel exports for the per-kernel tests. */
import { encodeHalf } from '../src/dtype.js'
import type { WeightDtype } from '../src/types.js'
import { createWasmBackend, type WasmBackend } from '../src/wasm/backend.js'
import { packPanels, packShrinkA } from '../src/wasm/layout.js'

export const DTYPE_CODE: Record<WeightDtype, number> = { f32: 0, bf16: 1, f16: 2 }

export async function kernelBackend(): Promise<WasmBackend> {
  return createWasmBackend()
}

/** Copy values into freshly allocated wasm memory as `dtype`; returns the pointer. */
export function put(b: WasmBackend, values: Float32Array | Int32Array, dtype: WeightDtype | 'i32' = 'f32'): number {
  const bytes = dtype === 'f32' || dtype === 'i32' ? 4 : 2
  const p = b.memory.alloc(Math.max(1, values.length) * bytes)
  if (dtype === 'i32') b.memory.i32.set(values as Int32Array, p >> 2)
  else if (dtype === 'f32') b.memory.f32.set(values as Float32Array, p >> 2)
  else b.memory.u16.set(encodeHalf(values as Float32Array, dtype), p >> 1)
  return p
}

/** The reference's rounding (test/reference.ts), not the library's: encodeHalf above must agree with it. */
export { roundWeights as roundToDtype } from './reference.js'
export { packPanels, packShrinkA }
