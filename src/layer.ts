import type { Backend, BackendLayer, HostTransfers } from './backend.js'
import type { CallFeatures } from './dispatch/cost.js'
import { DecisionMemo } from './dispatch/memo.js'
import { LoraError } from './errors.js'
import { applyThroughHost, checkInPlace, readIds } from './resident.js'
import { SlotOrder } from './slot-order.js'
import { buildSegments, type SegmentPlan } from './metadata.js'
import type { AdapterWeights, ApplyOptions, BackendChoice, BackendName, EncodeTarget, Layer, LayerSpec, PreparedAdapter } from './types.js'
import { checkApply, checkBackend, checkEncode, checkIds, checkTokenWeights, isGpuBuffer, prepareAdapter } from './validate.js'

/** What a layer needs from its runtime: the backends and the per-call choice among them. */
export interface LayerHost {
  readonly defaultBackend: BackendChoice
  /**
   * The backend that runs a call (validated choice; throws if a forced backend is unavailable);
   * `memo`: the layer's last 'auto' decision, reused while it holds.
   */
  pick(choice: BackendChoice, call: CallFeatures, memo?: DecisionMemo): Backend
  /** Throws LoraError DISPOSED once the runtime is disposed. */
  checkAlive(): void
  /** Keep a host copy of every slot's weights (so a lost GPU device can be rebuilt from it). */
  readonly keepHostCopies?: boolean
}

/** One validated call, as `attempt` runs it (on the chosen backend, or again on another). */
interface Attempt {
  x: Float32Array | Int32Array | GPUBuffer
  y: Float32Array | GPUBuffer
  ids: Int32Array
  K: number
  /** [T * K] per-entry weights, or undefined (every weight 1). */
  weights: Float32Array | undefined
  features: CallFeatures
  /** The plan built for the first backend, with its chunk size. */
  first: SegmentPlan
  chunk: number
  /** Slot writes each backend must finish first (null: none pending). */
  before: Map<BackendName, Promise<void>[]> | null
}

/**
 * An 'auto' call on the GPU with host x of at most this many values keeps a copy of x to run again
 * elsewhere if the device is lost during the call (T <= 4 at 4096 inputs). A larger call does not:
 * on an H200 the copy (up to 64 MB on every call, against a rare loss) made 'auto' up to 2x slower
 * than forcing the GPU (T = 16 to 4096). It fails with DEVICE_LOST, y untouched, like a forced
 * call, and the next 'auto' call runs on a backend that works.
 */
export const RETRY_COPY_MAX = 1 << 14

/** Asynchronous calls of any layer under way (an 'auto' call is timed only when none is). */
let running = 0

/** A LoRA-wrapped linear layer whose slots live on every backend of the runtime. */
export class LoraLayer implements Layer {
  private readonly filled: boolean[]
  /** Rank of each slot (for the dispatcher's features). */
  private readonly ranks: Int32Array
  /** mark[slot] === stamp: slot already counted in this call. */
  private readonly mark: Int32Array
  private stamp = 0
  /** The last 'auto' decision (see DecisionMemo). */
  private readonly memo = new DecisionMemo()
  private readonly onBackend = new Map<BackendName, BackendLayer>()
  /** Slot writes after the applies that use the slot, applies after the writes made before them. */
  private readonly order = new SlotOrder()
  private readonly owners = new Map<BackendName, Backend>()
  /** The weights of each slot, kept when the host asks (see LayerHost.keepHostCopies). */
  private readonly copies: (PreparedAdapter | undefined)[] | null
  private disposed = false

  constructor(
    private readonly host: LayerHost,
    readonly spec: LayerSpec,
    backends: readonly Backend[],
  ) {
    this.filled = new Array(spec.maxAdapters).fill(false)
    this.copies = host.keepHostCopies ? new Array(spec.maxAdapters).fill(undefined) : null
    this.ranks = new Int32Array(spec.maxAdapters)
    this.mark = new Int32Array(spec.maxAdapters)
    try {
      for (const b of backends) {
        this.order.reset(b.name)
        this.owners.set(b.name, b)
        if (b.lost) continue // a lost GPU device: rebuilt by replaceBackend on recovery
        this.onBackend.set(b.name, b.createLayer(spec))
      }
    } catch (e) {
      for (const l of this.onBackend.values()) l.dispose()
      throw e
    }
  }

  setAdapter(slot: number, adapter: AdapterWeights): void {
    this.checkAlive()
    const prepared = prepareAdapter(this.spec, slot, adapter)
    try {
      for (const [name, l] of this.onBackend) this.write(name, slot, () => l.setAdapter(slot, prepared))
    } catch (e) {
      // a backend failed after validation (out of memory): leave the slot empty everywhere
      for (const [name, l] of this.onBackend) this.write(name, slot, () => l.clearAdapter(slot))
      this.filled[slot] = false
      throw e
    }
    this.filled[slot] = true
    this.ranks[slot] = prepared.rank
    if (this.copies) this.copies[slot] = prepared
  }

  clearAdapter(slot: number): void {
    this.checkAlive()
    if (typeof slot !== 'number' || !Number.isInteger(slot) || slot < 0 || slot >= this.spec.maxAdapters) {
      throw new LoraError('OUT_OF_RANGE', `slot must be an integer in 0..${this.spec.maxAdapters - 1}, got ${String(slot)}`)
    }
    for (const [name, l] of this.onBackend) this.write(name, slot, () => l.clearAdapter(slot))
    this.filled[slot] = false
    if (this.copies) this.copies[slot] = undefined
  }

  /**
   * Move this layer to a new backend of the same name (a recovered GPU device): its storage is
   * rebuilt from the host copies of the slots. Calls still running on the old one fail or finish.
   */
  replaceBackend(b: Backend): void {
    this.checkAlive()
    if (!this.copies) throw new LoraError('BACKEND_UNAVAILABLE', 'this layer keeps no host copies of its weights to rebuild a backend from')
    const fresh = b.createLayer(this.spec)
    try {
      this.copies.forEach((a, slot) => a && fresh.setAdapter(slot, a))
    } catch (e) {
      fresh.dispose()
      throw e
    }
    const old = this.onBackend.get(b.name)
    this.onBackend.set(b.name, fresh)
    this.owners.set(b.name, b)
    this.order.reset(b.name)
    try {
      old?.dispose()
    } catch {
      // the old device is gone: nothing left to free
    }
  }

  /** Run `op` (a write to `slot` on backend `name`) now, or after the applies that use the slot. */
  private write(name: BackendName, slot: number, op: () => void): void {
    if (this.owners.get(name)?.lost) return // a dead device holds nothing; recovery rebuilds from the copies
    this.order.write(name, slot, op, () => this.disposed)
  }

  hasAdapter(slot: number): boolean {
    return this.filled[slot] === true
  }

  async apply(
    x: Float32Array | Int32Array | GPUBuffer,
    y: Float32Array | GPUBuffer,
    idsIn: Int32Array | GPUBuffer,
    options: ApplyOptions = {},
  ): Promise<void> {
    this.checkAlive()
    if (typeof options !== 'object' || options === null) {
      throw new LoraError('INVALID_ARGUMENT', `options must be an object, got ${String(options)}`)
    }
    const choice = checkBackend('options.backend', options.backend ?? this.host.defaultBackend)
    // Host x, ids and weights are the caller's again once this returns its promise: whatever
    // reads them after an await reads a copy made before it.
    let ids: Int32Array, T: number, K: number, weights: Float32Array | undefined
    if (isGpuBuffer(idsIn)) {
      // checks everything but slots and copies the weights; the read is submitted before this returns
      const read = readIds(this.transfers(), this.spec, idsIn, options, x, y)
      if (!isGpuBuffer(x)) x = x.slice()
      ;({ ids, T, K, weights } = await read)
    } else {
      ids = idsIn
      ;({ T, K } = checkApply(this.spec, x, y, ids, options.adaptersPerToken, options.tokens))
    }
    checkIds(ids, K, this.spec.maxAdapters, this.filled)
    if (!isGpuBuffer(idsIn) && options.weights !== undefined) weights = checkTokenWeights(options.weights, ids.length)
    const memory = this.owners.get('wasm')?.hostMemory
    // x and y both in host arrays (rt.hostArray): the wasm backend copies nothing
    let inWasm = false
    if (memory) {
      const xAt = x instanceof Float32Array ? checkInPlace(memory, 'x', x) : -1
      const yAt = y instanceof Float32Array ? checkInPlace(memory, 'y', y) : -1
      inWasm = xAt >= 0 && yAt >= 0
    }
    let entries = 0,
      distinct = 0,
      rankSum = 0,
      rankEntries = 0
    const stamp = ++this.stamp
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]
      if (id < 0) continue
      const r = this.ranks[id]
      entries++
      rankEntries += r
      if (this.mark[id] !== stamp) {
        this.mark[id] = stamp
        distinct++
        rankSum += r
      }
    }
    if (entries === 0) return
    const { spec } = this
    const features: CallFeatures = {
      tokens: T,
      entries,
      distinct,
      rankSum,
      rankEntries,
      adaptersPerToken: K,
      inFeatures: spec.embedding ? 1 : spec.inFeatures,
      outFeatures: spec.outFeatures,
      slices: spec.sliceWidths.length,
      weightDtype: spec.weightDtype,
      resident: isGpuBuffer(x) || isGpuBuffer(y) ? 'gpu' : inWasm ? 'wasm' : 'host',
    }
    const backend = this.host.pick(choice, features, this.memo)
    const first = buildSegments(ids, K, this.spec.maxAdapters, backend.chunkSize, weights)
    const slots = first.slots
    // Writes pending now, per backend: this call must see them (later ones it must not).
    const before = this.order.pendingFor(slots)
    // (no closures on this path unless needed: each costs a little, more under tsx's keepNames)
    const call: Attempt = { x, y, ids, K, weights, features, first, chunk: backend.chunkSize, before }
    // an 'auto' call on host data is timed for the memo (DecisionMemo.observe), unless others run
    const timed = choice === 'auto' && features.resident !== 'gpu' && running === 0
    const t0 = timed ? performance.now() : 0
    let run = this.attempt(call, backend)
    if (!(run instanceof Promise)) {
      if (timed) this.memo.observe(features, backend.name, performance.now() - t0)
      return // synchronous backend: done
    }
    const xLength = T * (spec.embedding ? 1 : spec.inFeatures)
    if (choice === 'auto' && backend.name === 'webgpu' && !isGpuBuffer(x) && xLength <= RETRY_COPY_MAX) {
      // the retry below may run after the caller reused x and ids
      call.x = x.slice(0, xLength)
      call.ids = ids.slice(0, T * K)
      if (weights) call.weights = weights.slice(0, T * K)
      // A device lost during the call (y is untouched then): run it again on a backend that works.
      run = run.catch((e: unknown) => {
        if (!(e instanceof LoraError && e.code === 'DEVICE_LOST')) throw e
        this.checkAlive()
        return this.attempt(call, this.host.pick('auto', features))
      })
    }
    // An 'auto' call may end on any backend: it holds the slots' weights on all of them.
    running++
    try {
      await this.order.track(run, slots, choice === 'auto' ? null : backend.name)
    } finally {
      running--
    }
    if (timed) this.memo.observe(features, backend.name, performance.now() - t0)
  }

  encode(encoder: EncodeTarget, x: GPUBuffer, y: GPUBuffer, ids: Int32Array, options: ApplyOptions = {}): void {
    this.checkAlive()
    const { K, weights } = checkEncode(this.spec, encoder, x, y, ids, options, this.filled)
    const gpu = this.owners.get('webgpu')
    const layer = this.onBackend.get('webgpu')
    if (!gpu || gpu.lost || !layer?.encode)
      throw new LoraError('BACKEND_UNAVAILABLE', 'encode needs a working WebGPU backend in this runtime')
    layer.encode(encoder, x, y, buildSegments(ids, K, this.spec.maxAdapters, gpu.chunkSize, weights))
  }

  /** Run a validated call on backend `b`, after the slot writes it must see. */
  private attempt(c: Attempt, b: Backend): void | Promise<void> {
    const layer = this.onBackend.get(b.name)!
    const plan = b.chunkSize === c.chunk ? c.first : buildSegments(c.ids, c.K, this.spec.maxAdapters, b.chunkSize, c.weights)
    const waits = c.before?.get(b.name)
    if (!waits) return this.runPlan(b, layer, c, plan)
    const deferred = isGpuBuffer(c.x) ? c : { ...c, x: c.x.slice(0, plan.numTokens * (this.spec.embedding ? 1 : this.spec.inFeatures)) }
    return Promise.all(waits).then(() => this.runPlan(b, layer, deferred, plan))
  }

  private runPlan(b: Backend, layer: BackendLayer, c: Attempt, plan: SegmentPlan): void | Promise<void> {
    // GPU-resident data on a backend without a device goes through the host
    if (b.device === null && c.features.resident === 'gpu') return applyThroughHost(this.transfers(), this.spec, layer, c.x, c.y, plan)
    return layer.apply(c.x, c.y, plan)
  }

  /** Host copies on the runtime's working GPU device, or null without one. */
  private transfers(): HostTransfers | null {
    for (const b of this.owners.values()) if (b.transfers && !b.lost) return b.transfers
    return null
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    for (const l of this.onBackend.values()) l.dispose()
    this.onBackend.clear()
  }

  private checkAlive(): void {
    this.host.checkAlive()
    if (this.disposed) throw new LoraError('DISPOSED', 'this layer was disposed')
  }
}
