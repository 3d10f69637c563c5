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
  private disposed = false

  constructor(private readonly host: LayerHost, readonly spec: LayerSpec, backends: readonly Backend[]) {
    this.filled = new Array(spec.maxAdapters).fill(false)
    this.ranks = new Int32Array(spec.maxAdapters)
    this.mark = new Int32Array(spec.maxAdapters)
    try {
      for (const b of backends) this.onBackend.set(b.name, b.createLayer(spec))
    } catch (e) {
      for (const l of this.onBackend.values()) l.dispose()
      throw e
    }
  }

  setAdapter(slot: number, adapter: AdapterWeights): void {
    this.checkAlive()
    const prepared = prepareAdapter(this.spec, slot, adapter)
    try {
      for (const l of this.onBackend.values()) l.setAdapter(slot, prepared)
    } catch (e) {
      // a backend failed after validation (out of memory): leave the slot empty everywhere
      for (const l of this.onBackend.values()) l.clearAdapter(slot)
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
    for (const l of this.onBackend.values()) l.clearAdapter(slot)
    this.filled[slot] = false
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
    await layer.apply(x, y, plan)
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
