/**
 * Timing one calibration point on one backend: a layer of the point's shape filled with random
 * adapters (several copies when the weights must be cold), then the median of a few calls.
 */
import type { Backend } from '../backend.js'
import type { Residency } from './cost.js'
import { buildSegments, type SegmentPlan } from '../metadata.js'
import type { LayerSpec, PreparedAdapter, WeightDtype } from '../types.js'

/** One calibration measurement: a layer shape and a batch. */
export interface Point {
  inF: number
  out: number
  rank: number
  /** Distinct adapters per call; tokens are spread round-robin over them. */
  distinct: number
  tokens: number
  dtype: WeightDtype
  resident: Residency
  /** Successive calls rotate over copies of the adapters holding at least this many weight bytes. */
  coldBytes: number
  /** GPU buffers: time each call until it is submitted, not until the GPU is done (a launch cost). */
  noWait?: boolean
}

/** A backend under calibration. */
export interface Target {
  backend: Backend
}

const STORAGE_RW = 0x80 | 0x08 | 0x04 // STORAGE | COPY_DST | COPY_SRC

/** A cheap deterministic filler (no need for good randomness). */
function fill(n: number, seed: number): Float32Array {
  const a = new Float32Array(n)
  let s = seed | 0
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) | 0
    a[i] = (s >> 8) / 2 ** 26
  }
  return a
}

export function bytesPerAdapter(p: Point): number {
  return p.rank * (p.inF + p.out) * (p.dtype === 'f32' ? 4 : 2)
}

/**
 * Fastest ms of a call of point `p` on `t` over up to `reps` calls after one warm-up, stopping
 * early at `deadline` (performance.now() value); null with fewer than 3 calls timed. The minimum:
 * on a shared machine noise (preemption) only ever adds time, and a rate is a capability.
 */
export async function timePoint(t: Target, p: Point, reps: number, deadline: number): Promise<number | null> {
  const copies = Math.max(1, Math.ceil(p.coldBytes / (p.distinct * bytesPerAdapter(p))))
  const spec: LayerSpec = {
    inFeatures: p.inF,
    sliceWidths: [p.out],
    sliceOffsets: [0],
    outFeatures: p.out,
    maxAdapters: p.distinct * copies,
    maxRank: p.rank,
    weightDtype: p.dtype,
  }
  const layer = t.backend.createLayer(spec)
  const gpuBufs: GPUBuffer[] = []
  try {
    const adapter: PreparedAdapter = { rank: p.rank, scale: 0.5, A: [fill(p.rank * p.inF, 1)], B: [fill(p.out * p.rank, 2)] }
    for (let s = 0; s < spec.maxAdapters; s++) layer.setAdapter(s, adapter)
    const plans: SegmentPlan[] = []
    for (let c = 0; c < copies; c++) {
      const ids = Int32Array.from({ length: p.tokens }, (_, i) => c * p.distinct + (i % p.distinct))
      plans.push(buildSegments(ids, 1, spec.maxAdapters, t.backend.chunkSize))
    }
    let x: Float32Array | GPUBuffer = fill(p.tokens * p.inF, 3)
    let y: Float32Array | GPUBuffer = new Float32Array(p.tokens * p.out)
    const device = t.backend.device
    if (p.resident === 'gpu' && device) {
      gpuBufs.push((x = device.createBuffer({ size: Math.max(16, p.tokens * p.inF * 4), usage: STORAGE_RW })))
      gpuBufs.push((y = device.createBuffer({ size: Math.max(16, p.tokens * p.out * 4), usage: STORAGE_RW })))
    }
    const call = async (i: number): Promise<void> => {
      await layer.apply(x, y, plans[i % copies])
      if (gpuBufs.length && !p.noWait) await t.backend.settled()
    }
    // warm-up, untimed: a first GPU call compiles pipelines; V8 runs a wasm kernel's first calls
    // in its baseline tier (Liftoff), ~2x slower, until its optimized code is ready (measured
    // here: after ~3 ms of calls), so CPU points warm up for 6 ms or 60 calls. A GPU point warms up
    // for 3 ms or 16 calls (at least one): an idle GPU's first calls run at its idle clocks, and
    // a short calibration that timed 3 calls after one warm-up read a round trip of 0.40 ms on an
    // H200 host whose back-to-back host-array calls at T = 1 took 0.16-0.36 ms in all. Warm-up
    // calls each wait for the GPU (a launch-only point's would otherwise queue up and land in its
    // timed calls or the next point) and stop at the deadline after the first.
    const w0 = performance.now()
    const [most, least, ms] = device ? [16, 1, 3] : [60, 3, 6]
    for (let i = 0; i < most && (i < least || (performance.now() - w0 < ms && performance.now() < deadline)); i++) {
      await call(0)
      if (gpuBufs.length) await t.backend.settled()
    }
    const samples: number[] = []
    for (let i = 1; i <= reps; i++) {
      if (performance.now() > deadline) break
      const t0 = performance.now()
      await call(i)
      samples.push(performance.now() - t0)
    }
    if (gpuBufs.length) await t.backend.settled() // untimed: nothing left running into the next point
    return samples.length >= 3 ? Math.min(...samples) : null
  } finally {
    layer.dispose()
    for (const b of gpuBufs) b.destroy()
  }
}

/** A tiny call (T = 1, in = out = 64, rank 1) on a target's backend, host arrays. */
function tinyCall(t: Target): { call(): Promise<void>; dispose(): void } {
  const spec: LayerSpec = {
    inFeatures: 64,
    sliceWidths: [64],
    sliceOffsets: [0],
    outFeatures: 64,
    maxAdapters: 1,
    maxRank: 1,
    weightDtype: 'f32',
  }
  const layer = t.backend.createLayer(spec)
  layer.setAdapter(0, { rank: 1, scale: 0.5, A: [fill(64, 1)], B: [fill(64, 2)] })
  const plan = buildSegments(Int32Array.of(0), 1, 1, t.backend.chunkSize)
  const x = fill(64, 3)
  const y = new Float32Array(64)
  return { call: async () => void (await layer.apply(x, y, plan)), dispose: () => layer.dispose() }
}

/**
 * The cost of switching to backend `a` from `b` (ms): a tiny call on `a` right after one on `b`,
 * against right after one on `a`; the median over pairs of the difference, at least 0. Up to
 * `reps` pairs, none started past `deadline`; null with fewer than 3.
 */
export async function timeSwitch(a: Target, b: Target, reps: number, deadline: number): Promise<number | null> {
  const ca = tinyCall(a)
  const cb = tinyCall(b)
  try {
    await ca.call()
    await cb.call()
    const diffs: number[] = []
    for (let i = 0; i < reps && performance.now() < deadline; i++) {
      await ca.call()
      let t0 = performance.now()
      await ca.call()
      const stay = performance.now() - t0
      await cb.call()
      t0 = performance.now()
      await ca.call()
      diffs.push(performance.now() - t0 - stay)
    }
    if (diffs.length < 3) return null
    diffs.sort((p, q) => p - q)
    return Math.max(0, diffs[(diffs.length - 1) >> 1])
  } finally {
    ca.dispose()
    cb.dispose()
  }
}
