import { LoraError } from '../errors.js'
import type { SegmentPlan } from '../metadata.js'
import type { EncodeTarget, LayerSpec, PreparedAdapter } from '../types.js'
import { gpuBufferInfo, isComputePass } from '../validate.js'
import { type BufferPool, type StagingPool, USAGE, writeChunked } from './buffers.js'
import { bindCall, type CallContext, encodeCall, ensurePipelines, planCall, recordCall, recordDispatches } from './call.js'
import type { LossWatch } from './device.js'
import { stridesOf } from './params.js'
import type { PipelineCache } from './pipelines.js'
import type { KernelProfile } from './programs/program.js'
import type { WeightStorage } from './shaders.js'
import type { SharedCallState } from './shared.js'
import type { GpuData, WebGpuLayer } from './types.js'
import { LayerWeights } from './weights.js'

const STORAGE = 0x80 // GPUBufferUsage.STORAGE

/** Shared by every layer of one backend. */
export interface LayerEnv {
  device: GPUDevice
  watch: LossWatch
  pipelines: PipelineCache
  pool: BufferPool
  /** Mapped upload buffers for host arrays (discrete adapters), or null: writeBuffer (see StagingPool). */
  staging: StagingPool | null
  shared: SharedCallState
  profile: KernelProfile
  /** Subgroup lanes the tree kernels use (DeviceContext.subgroupSize; 0: none). */
  subgroupSize: number
  storageOf(spec: LayerSpec): WeightStorage
  maxBinding: number
  onDispose(layer: GpuLayer): void
}

function isBuffer(x: unknown): x is GPUBuffer {
  return !(x instanceof Float32Array || x instanceof Int32Array)
}

function checkGpuBuffer(b: GPUBuffer, bytes: number, name: string): void {
  const { size, usage } = gpuBufferInfo(b) // looked up after the first call (validate.ts)
  if (!(usage & STORAGE)) throw new LoraError('INVALID_ARGUMENT', `${name}: GPUBuffer needs STORAGE usage (usage ${usage})`)
  if (size < bytes) throw new LoraError('SHAPE_MISMATCH', `${name}: GPUBuffer of ${size} bytes, need ${bytes}`)
}

/** One layer on the WebGPU backend: resident weights + apply on host arrays or GPU buffers. */
export class GpuLayer implements WebGpuLayer {
  readonly ctx: CallContext
  private disposed = false

  constructor(
    private readonly env: LayerEnv,
    readonly spec: LayerSpec,
  ) {
    env.watch.check()
    const strides = stridesOf(spec)
    this.ctx = {
      device: env.device,
      spec,
      strides,
      storage: env.storageOf(spec),
      weights: new LayerWeights(env.device, spec, strides, env.maxBinding),
      ranks: new Int32Array(spec.maxAdapters),
      pipelines: env.pipelines,
      shared: env.shared,
      profile: env.profile,
      subgroupSize: env.subgroupSize,
      bindGroups: new Map(),
      weighGroups: new Map(),
      kernels: new Map(),
    }
  }

  private alive(): void {
    if (this.disposed) throw new LoraError('DISPOSED', 'this WebGPU layer was disposed')
    this.env.watch.check()
  }

  setAdapter(slot: number, adapter: PreparedAdapter): void {
    this.alive()
    this.ctx.weights.set(slot, adapter)
    this.ctx.ranks[slot] = adapter.rank
    this.ctx.last = undefined // the ranks choose the kernels
  }

  clearAdapter(slot: number): void {
    this.alive()
    this.ctx.weights.clear(slot)
    this.ctx.ranks[slot] = 0
    this.ctx.last = undefined
  }

  async apply(x: GpuData, y: GpuData, plan: SegmentPlan): Promise<void> {
    this.alive()
    const { spec } = this.ctx
    const { device, watch, pool } = this.env
    const T = plan.numTokens
    const xWidth = spec.embedding ? 1 : spec.inFeatures // an embedding layer's x: one i32 token id per row
    const xBytes = T * xWidth * 4
    const yBytes = T * spec.outFeatures * 4
    if (isBuffer(x)) checkGpuBuffer(x, xBytes, 'x')
    if (!(y instanceof Float32Array)) checkGpuBuffer(y, yBytes, 'y')
    if (plan.rows.length === 0) return // nothing to add (T = 0, or every id -1)
    if (isBuffer(x) && !(y instanceof Float32Array)) {
      // GPU-resident: record and submit, no wait and no error scopes (awaiting them waits on the
      // queue: tens of microseconds a call, 10 ms where completion is polled on a timer); every
      // argument was checked above, and a buffer destroyed by the caller shows as the device's
      // uncaptured validation error, as with encode. Missing pipelines are created synchronously.
      const encoder = device.createCommandEncoder({ label: 'lora apply' })
      encodeCall(encoder, recordCall(this.ctx, plan, x, y))
      device.queue.submit([encoder.finish()])
      return
    }

    // x is the caller's again once this returns its promise: it is read (uploaded, or read by
    // submitted work) before then. Host x: when the pipelines must be awaited, a copy waits instead.
    // GPU x: missing pipelines are created synchronously (bindCall).
    const cp = planCall(this.ctx, plan)
    let xNow = x
    if (!cp.pipelines && !isBuffer(x)) {
      xNow = x.slice(0, T * xWidth)
      await ensurePipelines(this.ctx, cp)
      this.alive()
    }

    // uploads, dispatches and submit inside one set of error scopes, with no await in between
    device.pushErrorScope('out-of-memory')
    device.pushErrorScope('validation')
    device.pushErrorScope('internal')
    const owned: GPUBuffer[] = []
    let staging: GPUBuffer | undefined
    let upload: GPUBuffer | undefined
    let thrown: unknown
    try {
      let xBuf = xNow as GPUBuffer
      let yBuf = y as GPUBuffer
      const xHost = isBuffer(xNow) ? null : (xNow as Float32Array | Int32Array)
      const yHost = y instanceof Float32Array ? y : null
      if (xHost) owned.push((xBuf = pool.acquire(xBytes, USAGE.storage, 'x')))
      if (yHost) owned.push((yBuf = pool.acquire(yBytes, USAGE.storageRw, 'y')))
      const encoder = device.createCommandEncoder({ label: 'lora apply' })
      const upBytes = (xHost ? xBytes : 0) + (yHost ? yBytes : 0)
      if (this.env.staging && upBytes > 0) {
        // one mapped buffer holds x then y; copies on the queue put them in place before the kernels
        upload = this.env.staging.acquire(upBytes)
        const range = upload.getMappedRange(0, align8(upBytes))
        if (xHost) new (xHost instanceof Int32Array ? Int32Array : Float32Array)(range, 0, T * xWidth).set(xHost.subarray(0, T * xWidth))
        if (yHost) new Float32Array(range, xHost ? xBytes : 0, T * spec.outFeatures).set(yHost.subarray(0, T * spec.outFeatures))
        upload.unmap()
        if (xHost) encoder.copyBufferToBuffer(upload, 0, xBuf, 0, xBytes)
        if (yHost) encoder.copyBufferToBuffer(upload, xHost ? xBytes : 0, yBuf, 0, yBytes)
      } else {
        if (xHost) writeChunked(device.queue, xBuf, unshared(xHost, T * xWidth), T * xWidth)
        if (yHost) writeChunked(device.queue, yBuf, unshared(yHost, T * spec.outFeatures), T * spec.outFeatures)
      }
      encodeCall(encoder, bindCall(this.ctx, cp, xBuf, yBuf))
      if (y instanceof Float32Array) {
        staging = pool.acquire(yBytes, USAGE.readback, 'y readback')
        encoder.copyBufferToBuffer(yBuf, 0, staging, 0, yBytes)
      }
      device.queue.submit([encoder.finish()])
    } catch (e) {
      thrown = e
    }
    // pooled buffers go back now: later writes to them are queued after this submit
    for (const b of owned) pool.release(b)
    if (upload) this.env.staging!.release(upload)
    const scopes = Promise.all([0, 1, 2].map(() => watch.track(device.popErrorScope())))
    const mapped = staging && !thrown ? staging.mapAsync(GPUMapMode.READ) : undefined
    try {
      const [errors] = await Promise.all([watch.guard(scopes, 'apply'), mapped && watch.guard(mapped, 'readback of y')])
      const error = errors.find((e) => e)
      if (error) throw new LoraError('GPU_ERROR', `apply failed on the GPU: ${error.message}`, { cause: thrown })
      if (thrown) throw thrown
      if (staging && y instanceof Float32Array) y.set(new Float32Array(staging.getMappedRange(0, yBytes)))
    } finally {
      if (staging?.mapState === 'mapped') staging.unmap()
      if (staging) pool.release(staging)
    }
  }

  /**
   * Record the call into `encoder` (no submit, no wait): y is updated when the caller submits it,
   * with the weights and metadata as they are at that submit. x and y are GPUBuffers. `encoder`
   * may be an open compute pass of the caller's: the dispatches go into it (no pass of their own).
   */
  encode(encoder: EncodeTarget, x: GPUBuffer, y: GPUBuffer, plan: SegmentPlan): void {
    this.alive()
    const { spec } = this.ctx
    const T = plan.numTokens
    checkGpuBuffer(x, T * (spec.embedding ? 1 : spec.inFeatures) * 4, 'x')
    checkGpuBuffer(y, T * spec.outFeatures * 4, 'y')
    if (plan.rows.length === 0) return
    const call = recordCall(this.ctx, plan, x, y)
    if (isComputePass(encoder)) recordDispatches(encoder, call)
    else encodeCall(encoder, call)
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    this.ctx.weights.destroy()
    this.env.onDispose(this)
  }
}

/** getMappedRange sizes: a multiple of 8 bytes (the buffer, a bucket of at least 256 bytes, holds it). */
const align8 = (n: number): number => Math.ceil(n / 8) * 8

/**
 * The first n values of v in an ArrayBuffer: Dawn's writeBuffer crashes the process (SIGSEGV) on
 * a SharedArrayBuffer view, such as a host array of a threaded runtime (its wasm memory is shared).
 */
function unshared<A extends Float32Array | Int32Array>(v: A, n: number): A {
  return (v.buffer instanceof ArrayBuffer ? v : v.slice(0, n)) as A
}
