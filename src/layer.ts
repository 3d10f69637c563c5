import type { Backend, BackendLayer } from './backend.js'
import type { CallFeatures } from './cost.js'
import { LoraError } from './errors.js'
import { buildSegments } from './metadata.js'
import type { AdapterWeights, ApplyOptions, BackendChoice, BackendName, Layer, LayerSpec } from './types.js'
import { checkApply, checkBackend, checkIds, prepareAdapter } from './validate.js'

/** What a layer needs from its runtime: the backends and the per-call choice among them. */
export interface LayerHost {
  readonly defaultBackend: BackendChoice
  /** The backend that runs a call (validated choice; throws if a forced backend is unavailable). */
  pick(choice: BackendChoice, call: CallFeatures): Backend
  /** Throws LoraError DISPOSED once the runtime is disposed. */
  checkAlive(): void
}

/** A LoRA-wrapped linear layer whose slots live on every backend of the runtime. */
export class LoraLayer implements Layer {
  private readonly filled: boolean[]
  /** Rank of each slot (for the dispatcher's features). */
  private readonly ranks: Int32Array
  /** mark[slot] === stamp: slot already counted in this call. */
  private readonly mark: Int32Array
  private stamp = 0
  private readonly onBackend = new Map<BackendName, BackendLayer>()
  /**
   * An async backend (WebGPU, wasm threads) reads a slot's weights until its apply resolves. So a
   * write to a slot that running applies use waits for them (they finish with the old weights),
   * and applies started after the write wait for it: every call sees the slots as they were when
   * it was made. Per backend: slot -> running applies / the pending write.
   */
  private readonly running = new Map<BackendName, Map<number, Set<Promise<void>>>>()
  private readonly pendingWrites = new Map<BackendName, Map<number, Promise<void>>>()
  private disposed = false

  constructor(private readonly host: LayerHost, readonly spec: LayerSpec, backends: readonly Backend[]) {
    this.filled = new Array(spec.maxAdapters).fill(false)
    this.ranks = new Int32Array(spec.maxAdapters)
    this.mark = new Int32Array(spec.maxAdapters)
    try {
      for (const b of backends) {
        this.onBackend.set(b.name, b.createLayer(spec))
        this.running.set(b.name, new Map())
        this.pendingWrites.set(b.name, new Map())
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
  }

  clearAdapter(slot: number): void {
    this.checkAlive()
    if (typeof slot !== 'number' || !Number.isInteger(slot) || slot < 0 || slot >= this.spec.maxAdapters) {
      throw new LoraError('OUT_OF_RANGE', `slot must be an integer in 0..${this.spec.maxAdapters - 1}, got ${String(slot)}`)
    }
    for (const [name, l] of this.onBackend) this.write(name, slot, () => l.clearAdapter(slot))
    this.filled[slot] = false
  }

  /** Run `op` (a write to `slot` on backend `name`) now, or after the applies that use the slot. */
  private write(name: BackendName, slot: number, op: () => void): void {
    const users = this.running.get(name)?.get(slot)
    const pending = this.pendingWrites.get(name)
    const before = pending?.get(slot)
    if (!users?.size && !before) return op()
    const after = Promise.allSettled([...(users ?? []), before]).then(() => {
      if (pending!.get(slot) === after) pending!.delete(slot)
      // A deferred write can only fail on a dead backend (device lost), whose calls fail or move to
      // another backend anyway; the slot state of the other backends is already written.
      if (this.disposed) return
      try {
        op()
      } catch {
        // see above
      }
    })
    pending!.set(slot, after)
  }

  hasAdapter(slot: number): boolean {
    return this.filled[slot] === true
  }

  async apply(x: Float32Array, y: Float32Array, ids: Int32Array, options: ApplyOptions = {}): Promise<void> {
    this.checkAlive()
    if (typeof options !== 'object' || options === null) {
      throw new LoraError('INVALID_ARGUMENT', `options must be an object, got ${String(options)}`)
    }
    const choice = checkBackend('options.backend', options.backend ?? this.host.defaultBackend)
    const { T, K } = checkApply(this.spec, x, y, ids, options.adaptersPerToken)
    checkIds(ids, K, this.spec.maxAdapters, (s) => this.filled[s])
    let entries = 0, distinct = 0, rankSum = 0, rankEntries = 0
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
    const backend = this.host.pick(choice, {
      tokens: T, entries, distinct, rankSum, rankEntries, inFeatures: spec.inFeatures, outFeatures: spec.outFeatures,
      slices: spec.sliceWidths.length, weightDtype: spec.weightDtype, resident: x instanceof Float32Array ? 'host' : 'gpu',
    })
    const layer = this.onBackend.get(backend.name)!
    const plan = buildSegments(ids, K, this.spec.maxAdapters, backend.chunkSize ?? 64)
    const pending = this.pendingWrites.get(backend.name)!
    const waits = pending.size ? [...plan.slots].map((s) => pending.get(s)).filter((p) => p !== undefined) : []
    const run = waits.length ? Promise.all(waits).then(() => layer.apply(x, y, plan)) : layer.apply(x, y, plan)
    if (!(run instanceof Promise)) return // synchronous backend: done
    const users = this.running.get(backend.name)!
    for (const s of plan.slots) {
      let set = users.get(s)
      if (!set) users.set(s, (set = new Set()))
      set.add(run)
    }
    try {
      await run
    } finally {
      for (const s of plan.slots) {
        const set = users.get(s)!
        set.delete(run)
        if (set.size === 0) users.delete(s)
      }
    }
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
