/**
 * The dispatcher's cost model: predicted time of one apply on one backend, from the call's
 * features and the backend's calibrated rates.
 *
 *   t = callMs + segments * segmentMs + max(W / min(weightGBs, coldReadGBs), F / gflops) + X / hostGBs [+ roundTripMs]
 *
 * W: bytes of the distinct adapters' weights read (sum of their ranks * (in * S + out) * bytes);
 * F: 2 * sum over entries of rank * (in * S + out) flops; X: bytes of activations moved between
 * the caller's memory and the backend's (copies into linear memory, GPU uploads and readbacks).
 * A multi-threaded backend divides the roofline term by its measured speed-up for the number of
 * threads the call gets (`parallel`).
 * roundTripMs: a GPU's wait for its results (submit to completion, readback mapped), paid by a
 * call whose data must come back to the host: host arrays on the GPU, GPU buffers run on the CPU.
 * A call on GPU buffers returns once submitted and does not pay it. Under Dawn it is tens of
 * microseconds; under wgpu (Deno) about 11 ms, as completion is polled on a timer.
 * The max is a roofline: one token per adapter is bound by the weight bytes, long segments by the
 * arithmetic. A call on another backend than the previous call's also pays that backend's
 * `switchMs` (the dispatcher adds it). Rates are measured per machine (src/dispatch/calibrate.ts),
 * never assumed.
 */
import { DTYPE_BYTES } from '../dtype.js'
import type { BackendName, WeightDtype } from '../types.js'

/**
 * Where x and y live: host arrays, host arrays in the wasm memory (rt.hostArray: the wasm backend
 * copies nothing, the GPU still uploads and reads back), or buffers on the GPU device.
 */
export type Residency = 'host' | 'wasm' | 'gpu'

/** Everything about one call that the choice of backend depends on. */
export interface CallFeatures {
  /** T: tokens (rows of x and y). */
  tokens: number
  /** (token, adapter) entries that are not -1 (T * K at most). */
  entries: number
  /** Distinct adapters in the batch. */
  distinct: number
  /** Sum of the ranks of the distinct adapters (weights read once per adapter). */
  rankSum: number
  /** Sum over entries of the entry's rank (the arithmetic). */
  rankEntries: number
  inFeatures: number
  outFeatures: number
  slices: number
  weightDtype: WeightDtype
  resident: Residency
  /** Longest segment a backend's plan cuts runs into (default 64). */
  chunkSize?: number
  /** K, slot ids per token (default 1). */
  adaptersPerToken?: number
}

/** Calibrated rates of one backend (all positive, finite). */
export interface BackendRates {
  /** Fixed cost of a call: validation, metadata, launch (ms). */
  callMs: number
  /**
   * A GPU's round trip: submit to completion and the readback mapped (ms), paid by calls whose
   * results come back to the host. Absent (older profiles): callMs holds it.
   */
  roundTripMs?: number
  /** Extra cost per segment (ms). */
  segmentMs: number
  /** Weight bytes read per second when bound by them, per storage dtype (GB/s). */
  weightGBs: Record<WeightDtype, number>
  /**
   * A CPU backend: bytes per second one core reads from memory that is not in any cache (a buffer
   * larger than the last-level cache, read once). Weights in serving are cold (every layer's
   * adapters pass through the cache between two calls of one layer), so no weight rate is
   * predicted above it. Absent: weightGBs alone.
   */
  coldReadGBs?: number
  /** Arithmetic rate on long segments, per storage dtype (GFLOP/s). */
  gflops: Record<WeightDtype, number>
  /** Activation bytes moved between the caller's memory and the backend (GB/s). */
  hostGBs: number
  /** A multi-threaded backend: how much faster its kernels run on all its threads. */
  parallel?: ParallelRates
  /**
   * Extra time of a call on this backend when the runtime's previous call ran on another one
   * (ms): that backend's work still draining (a software GPU's threads share the CPU), caches and
   * queues to warm again. Absent: 0.
   */
  switchMs?: number
}

/** Measured scaling of a multi-threaded backend (the wasm worker pool). */
export interface ParallelRates {
  /** Threads of a call that uses them all. */
  threads: number
  /** Kernel time on one thread / on `threads` threads, for a large call (1 = no gain). */
  speedup: number
}

/** The work of a call, in the units of {@link BackendRates}. */
export interface CallWork {
  weightBytes: number
  flops: number
  /** x + y in, y out, in bytes. */
  activationBytes: number
  segments: number
}

/** `chunk`: the backend's longest segment (default: f.chunkSize, else 64). */
export function workOf(f: CallFeatures, chunk = f.chunkSize ?? 64): CallWork {
  const perRank = f.inFeatures * f.slices + f.outFeatures
  const perAdapter = f.distinct > 0 ? f.entries / f.distinct : 0
  return {
    weightBytes: f.rankSum * perRank * DTYPE_BYTES[f.weightDtype],
    flops: 2 * f.rankEntries * perRank,
    activationBytes: f.tokens * (f.inFeatures + 2 * f.outFeatures) * 4,
    segments: f.distinct * Math.max(1, Math.ceil(perAdapter / chunk)),
  }
}

/** The parts of a prediction, in ms (for explain's reason). */
export interface Prediction {
  ms: number
  /** Which roofline term dominated. */
  bound: 'weights' | 'arithmetic'
  /** Time spent moving activations (ms): copies, uploads, readbacks and a GPU's round trip. */
  transferMs: number
}

/**
 * Predicted time of the call on one backend. `moves`: x and y must be copied to the backend and y
 * back (host arrays on the GPU; any data on the wasm backend, whose linear memory is separate).
 * `extraMs`: time to fetch them from elsewhere first (GPU buffers run on the CPU), computed by the
 * caller from the other backend's rates.
 */
export function predict(rates: BackendRates, f: CallFeatures, moves = true, extraMs = 0, parts = 1, chunk = f.chunkSize ?? 64): Prediction {
  const w = workOf(f, chunk)
  const speedup = parallelSpeedup(rates.parallel, parts)
  const weightMs = w.weightBytes / weightRate(rates, f.weightDtype) / 1e6 / speedup
  const flopMs = w.flops / rates.gflops[f.weightDtype] / 1e6 / speedup
  const transferMs = (moves ? w.activationBytes / rates.hostGBs / 1e6 + (rates.roundTripMs ?? 0) : 0) + extraMs
  return {
    ms: rates.callMs + w.segments * rates.segmentMs + Math.max(weightMs, flopMs) + transferMs,
    bound: weightMs >= flopMs ? 'weights' : 'arithmetic',
    transferMs,
  }
}

/** Weight bytes per second of a weight-bound call on cold weights (GB/s). */
export function weightRate(rates: BackendRates, dtype: WeightDtype): number {
  const w = rates.weightGBs[dtype]
  return rates.coldReadGBs !== undefined && rates.coldReadGBs < w ? rates.coldReadGBs : w
}

/**
 * Kernel speed-up of a call cut into `parts` (1..threads): the measured speed-up on every thread,
 * interpolated linearly for fewer; 1 without parallel rates.
 */
export function parallelSpeedup(p: ParallelRates | undefined, parts: number): number {
  if (!p || parts <= 1 || p.threads <= 1) return 1
  return 1 + ((p.speedup - 1) * (Math.min(parts, p.threads) - 1)) / (p.threads - 1)
}

/**
 * Rates used for a backend before (or instead of) measuring it: rough, deliberately modest. A
 * hardware GPU's hostGBs is what host arrays paid to an H200 and back through Dawn with mapped
 * staging uploads (5.9-6.3 GB/s effective at T >= 1024, bench/regret.ts), not the bus's rate.
 */
export function priorRates(name: BackendName, isSoftware: boolean): BackendRates {
  const all = (v: number): Record<WeightDtype, number> => ({ f32: v, bf16: v, f16: v })
  if (name === 'wasm') {
    return { callMs: 0.01, segmentMs: 0.001, weightGBs: all(12), gflops: { f32: 20, bf16: 18, f16: 10 }, hostGBs: 8, switchMs: 0.02 }
  }
  return isSoftware
    ? { callMs: 0.2, roundTripMs: 0.8, segmentMs: 0.02, weightGBs: all(3), gflops: all(1), hostGBs: 2, switchMs: 0.05 }
    : { callMs: 0.05, roundTripMs: 0.25, segmentMs: 0.002, weightGBs: all(200), gflops: all(2000), hostGBs: 6, switchMs: 0.02 }
}
