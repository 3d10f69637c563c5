import type { CallFeatures } from './dispatch/cost.js'
import { LoraError } from './errors.js'
import type { SegmentPlan } from './metadata.js'
import type { BackendName, EncodeTarget, KernelProfile, LayerSpec, PreparedAdapter } from './types.js'

/** Output of an apply: a host array, or a GPU buffer (only on a backend with a device). */
export type CallData = Float32Array | GPUBuffer
/** Input of an apply: f32 rows, or an embedding layer's i32 token ids; a GPU buffer only on a backend with a device. */
export type CallInput = CallData | Int32Array

/** The longest segment every backend asks of a SegmentPlan. */
export const CHUNK_SIZE = 64

/**
 * What every compute backend implements, and all that the runtime, the layers and the dispatcher
 * know of one. The public API validates all input once and hands backends only valid data:
 * kernels trust their inputs.
 */
export interface Backend {
  readonly name: BackendName
  /** Longest segment this backend wants in a SegmentPlan. */
  readonly chunkSize: number
  /** A GPU adapter implemented on the CPU (lavapipe, SwiftShader); false for the wasm backends. */
  readonly isSoftware: boolean
  /** True once the backend can no longer run calls (e.g. a lost GPU device). */
  readonly lost: boolean
  /** The GPU device whose buffers this backend's layers accept as x and y; null on the CPU. */
  readonly device: GPUDevice | null
  /** Copies between GPU buffers of `device` and the host; null on a backend without a device. */
  readonly transfers: HostTransfers | null
  /** The tile family of the GPU kernels; null on the CPU. */
  readonly kernels: KernelProfile | null
  /** The wasm memory that host arrays (rt.hostArray) live in; null on a backend without one. */
  readonly hostMemory: HostMemory | null
  /** Threads a call may use (1: single-threaded). */
  readonly threads: number
  /**
   * Bytes of the largest buffer one call's host x or y can be copied into (a GPU's largest storage
   * binding); Infinity where there is no such limit. 'auto' leaves out a backend a call exceeds.
   */
  readonly maxCallBuffer: number
  /** Why more threads were asked for and are not used here; null when they are (or were not asked for). */
  readonly threadsUnavailableReason: string | null
  /**
   * Threads a call of `multiplyAdds` would run on; `fusedEntries`: its entries when it has one
   * adapter per token, else 0; `copies`: x and y are copied in and out (not host arrays). Always
   * 1 on a single-threaded backend.
   */
  partsFor(multiplyAdds: number, fusedEntries: number, copies?: boolean): number
  /**
   * Calibration: run every call on `parts` threads (at most `threads`) whatever its size; null:
   * back to the backend's own choice. No effect on a single-threaded backend.
   */
  forceParts(parts: number | null): void
  /** Resolves when the work submitted so far has finished (a timed call ends there). */
  settled(): Promise<void>
  /** Allocate the storage of one layer (weights for every slot, resident on this backend). */
  createLayer(spec: LayerSpec): BackendLayer
  /** Free everything this backend holds. Later calls are invalid. */
  dispose(): void
}

/** One layer's weights on one backend. */
export interface BackendLayer {
  /** Store an adapter in `slot` (replacing what was there). The adapter is already validated and rounded. */
  setAdapter(slot: number, adapter: PreparedAdapter): void
  /** Remove the adapter of `slot` and free its storage. */
  clearAdapter(slot: number): void
  /**
   * y[row] += delta for every entry of the plan.
   * @param x [T * inFeatures] f32, or [T] i32 token ids for an embedding layer; a GPUBuffer only on a backend with a device.
   * @param y [T * outFeatures] f32, updated in place; a host array is untouched if the call throws.
   *   A GPUBuffer is updated on the GPU, in queue order (the promise resolves once it is submitted).
   */
  apply(x: CallInput, y: CallData, plan: SegmentPlan): void | Promise<void>
  /**
   * Record the call into the caller's encoder, or its open compute pass (GPU-resident x and y; no
   * submit, no wait). Only on a backend with a device.
   */
  encode?(encoder: EncodeTarget, x: GPUBuffer, y: GPUBuffer, plan: SegmentPlan): void
  /** Free the layer's storage. */
  dispose(): void
}

/** Host copies of GPU-resident data, for a call that runs on the CPU. */
export interface HostTransfers {
  /** The first `floats` values of `src` (COPY_SRC usage), read in queue order; `name` names it in errors. */
  read(src: GPUBuffer, floats: number, name: string): Promise<Float32Array>
  /** Write `values` into `dst` (COPY_DST usage), in queue order. */
  write(dst: GPUBuffer, values: Float32Array): void
  /** Throws LoraError INVALID_ARGUMENT unless y can be read back and written again. */
  checkWritable(y: GPUBuffer): void
}

/**
 * A wasm backend's linear memory as its callers see it: host arrays, which calls take as x and y
 * in place, and the per-call work area that other arrays are copied into.
 */
export interface HostMemory {
  /** The memory's buffer now (a single-threaded memory replaces it when it grows). */
  readonly buffer: ArrayBufferLike
  /** A host array of `floats` values, zeroed; returns its byte address. */
  allocHost(floats: number): number
  /** Free a host array (any other address: nothing). */
  releaseHost(ptr: number): void
  /**
   * Where a call's x or y lies: the byte address of v[0] when v is inside one host array of this
   * memory (the kernels use it in place, no copy), -1 when v is elsewhere (copied in and out), -2
   * when v is a view of this memory outside every host array (refused: such a view may be weights
   * or scratch, and may be detached by the call's own allocation).
   */
  addressOf(v: Float32Array): number
  /** Bytes of the per-call work area so far (x and y in host arrays take none of it). */
  readonly scratchBytes: number
}

/**
 * The names of a runtime's backends that are not lost, and of those that can hold a call's host
 * data (an 'auto' call chooses among them). Each list is one array reused while it does not
 * change: the dispatcher's memo compares it by identity.
 */
export class UsableBackends {
  private names: BackendName[] = []
  private fit: BackendName[] = []

  constructor(private readonly all: readonly Backend[]) {}

  /** Names of the backends not lost. */
  usable(): BackendName[] {
    let n = 0
    for (const b of this.all) if (!b.lost) n++
    if (n !== this.names.length) this.names = this.all.filter((b) => !b.lost).map((b) => b.name)
    if (n === 0) throw new LoraError('BACKEND_UNAVAILABLE', 'no backend is usable (the GPU device was lost and wasm is not loaded)')
    return this.names
  }

  /** usable(), less the backends the call's host data cannot fit (fittingBackends). */
  fitting(call: CallFeatures): BackendName[] {
    const usable = this.usable()
    const names = fittingBackends(this.all, call, usable)
    if (names === usable) return usable
    if (names.length !== this.fit.length || names.some((n, i) => n !== this.fit[i])) this.fit = names
    return this.fit
  }
}

/**
 * The `usable` backends (names, in order) that can hold a call's host x and y, each copied into
 * one buffer of at most the backend's maxCallBuffer bytes: `usable` itself when all can, or when
 * none can (the chosen backend then says why); GPU-resident calls are not copied.
 */
export function fittingBackends(all: readonly Backend[], call: CallFeatures, usable: BackendName[]): BackendName[] {
  if (call.resident === 'gpu') return usable
  const bytes = 4 * call.tokens * Math.max(call.inFeatures, call.outFeatures)
  // (every 'auto' call asks: no allocation unless a backend is left out)
  let n = 0
  for (const b of all) if (bytes > b.maxCallBuffer) n++
  if (n === 0) return usable
  const fit = usable.filter((name) => bytes <= (all.find((b) => b.name === name)?.maxCallBuffer ?? Number.POSITIVE_INFINITY))
  return fit.length === 0 ? usable : fit
}
