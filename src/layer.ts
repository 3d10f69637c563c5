import type { Backend, BackendLayer } from './backend.js'
import { LoraError } from './errors.js'
import { buildSegments } from './metadata.js'
import type { AdapterWeights, ApplyOptions, BackendChoice, BackendName, Layer, LayerSpec } from './types.js'
import { checkApply, checkBackend, checkIds, prepareAdapter } from './validate.js'

/** What a layer needs from its runtime: the backends and the per-call choice among them. */
export interface LayerHost {
  readonly defaultBackend: BackendChoice
  /** The backend that runs a call (validated choice; throws if a forced backend is unavailable). */
  pick(choice: BackendChoice, call: { tokens: number; entries: number; distinct: number; spec: LayerSpec }): Backend
  /** Throws LoraError DISPOSED once the runtime is disposed. */
  checkAlive(): void
}

/** A LoRA-wrapped linear layer whose slots live on every backend of the runtime. */
export class LoraLayer implements Layer {
  private readonly filled: boolean[]
  private readonly onBackend = new Map<BackendName, BackendLayer>()
  private disposed = false

  constructor(private readonly host: LayerHost, readonly spec: LayerSpec, backends: readonly Backend[]) {
    this.filled = new Array(spec.maxAdapters).fill(false)
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
    let entries = 0
    const seen = new Set<number>()
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] >= 0) {
        entries++
        seen.add(ids[i])
      }
    }
    if (entries === 0) return
    const backend = this.host.pick(choice, { tokens: T, entries, distinct: seen.size, spec: this.spec })
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
