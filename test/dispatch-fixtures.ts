/**
 * What the dispatcher tests share: calibrated rates of a CPU and of a slow and a fast GPU, a
 * profile of them, the two backends' traits, and a `Backend` (src/backend.ts) that computes
 * nothing: its layers run `apply` (the caller's: record the call, take some time) and hold no
 * weights.
 */
import type { Backend, BackendLayer } from '../src/backend.js'
import type { BackendRates } from '../src/dispatch/cost.js'
import type { Profile } from '../src/dispatch/profile.js'
import type { BackendName, WeightDtype } from '../src/types.js'

export const all = (v: number): Record<WeightDtype, number> => ({ f32: v, bf16: v, f16: v })
export const CPU: BackendRates = { callMs: 0.01, segmentMs: 0.001, weightGBs: all(15), gflops: all(25), hostGBs: 10 }
export const SLOW_GPU: BackendRates = { callMs: 0.5, segmentMs: 0.004, weightGBs: all(2.5), gflops: all(3), hostGBs: 4.7 }
export const FAST_GPU: BackendRates = { callMs: 0.3, segmentMs: 0.002, weightGBs: all(500), gflops: all(5000), hostGBs: 10 }

/** A full profile: wasm at CPU's rates, webgpu at `gpu`'s. */
export function profileOf(gpu: BackendRates): Profile {
  return {
    version: 1,
    kind: 'full',
    createdAt: '',
    calibrationMs: 0,
    machine: { wasmVariant: 'simd', gpu: { description: 'test', isSoftware: false } },
    backends: { wasm: { ...CPU, measured: [] }, webgpu: { ...gpu, measured: [] } },
  }
}
export const BOTH: BackendName[] = ['wasm', 'webgpu']
export const traits = [
  { name: 'wasm' as const, isSoftware: false },
  { name: 'webgpu' as const, isSoftware: false },
]

export function fakeBackend(name: BackendName, apply: BackendLayer['apply']): Backend {
  const layer: BackendLayer = { setAdapter() {}, clearAdapter() {}, dispose() {}, apply }
  return {
    name,
    chunkSize: 64,
    isSoftware: false,
    lost: false,
    maxCallBuffer: Number.POSITIVE_INFINITY,
    device: null,
    transfers: null,
    kernels: null,
    hostMemory: null,
    threads: 1,
    threadsUnavailableReason: null,
    partsFor: () => 1,
    forceParts() {},
    settled: () => Promise.resolve(),
    createLayer: () => layer,
    dispose() {},
  }
}
