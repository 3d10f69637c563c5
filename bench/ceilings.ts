/** Ceilings of this machine measured by micro kernels in the kernels' own module (assembly/peak.ts). */
import type { WasmBackend } from '../src/wasm/backend.js'

export interface Ceilings {
  /** f32x4 multiply-add throughput of one core, from registers (GFLOP/s). */
  peakGflops: number
  /** Sequential read bandwidth of one core from memory, 256 MiB buffer (GB/s). */
  readGBs: number
}

/** assembly/peak.ts's multiplier and addend: c = c * mul + add stays finite and normal (-> 0.1). */
export const PEAK_MUL = 0.999999
export const PEAK_ADD = 1e-7

export function measureCeilings(wasm: WasmBackend): Ceilings {
  const ex = wasm.exports
  // V8 runs a wasm function's first calls in its baseline tier (Liftoff) until the optimizing tier
  // has compiled it: call both loops for a while first, or the ceilings come out low
  const w0 = performance.now()
  const small = wasm.memory.alloc(1 << 20)
  while (performance.now() - w0 < 150) {
    ex.peakFlops(20_000, PEAK_MUL, PEAK_ADD)
    ex.readBytes(small, 1 << 20, 1)
  }
  wasm.memory.release(small)
  let best = 0
  const iters = 2_000_000
  for (let r = 0; r < 7; r++) {
    const t0 = performance.now()
    ex.peakFlops(iters, PEAK_MUL, PEAK_ADD)
    const ms = performance.now() - t0
    best = Math.max(best, (iters * 12 * 8) / ms / 1e6)
  }
  const bytes = 256 << 20
  const p = wasm.memory.alloc(bytes)
  wasm.memory.u8.fill(1, p, p + bytes)
  let bestBw = 0
  for (let r = 0; r < 7; r++) {
    const t0 = performance.now()
    ex.readBytes(p, bytes, 1)
    const ms = performance.now() - t0
    bestBw = Math.max(bestBw, bytes / ms / 1e6)
  }
  wasm.memory.release(p)
  return { peakGflops: best, readGBs: bestBw }
}
