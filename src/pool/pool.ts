/**
 * The adapter pool: named PEFT adapters spread over one `Layer` per module path, with a memory
 * budget and LRU eviction of the layers' slots. Built only on the public Layer API (types.ts).
 *
 * Residency is per adapter: making an adapter resident puts it in a slot of every module it
 * targets (all or nothing), eviction clears all of them. Adapters used by a running apply
 * (refs > 0) or pinned are never evicted. Evicted in-memory adapters keep their decoded host copy;
 * path/URL adapters drop it and are re-read from their source on next use.
 */
import { describe, LoraError } from '../errors.js'
import {
  createEntry,
  entryInfo,
  hostWeights,
  readAndParse,
  batchIds,
  resolveTokens,
  type AdapterEntry,
  type AdapterInfo,
  type TokenAdapters,
} from './registry.js'
import type { BaseWeight, ParsedAdapter } from '../peft/adapter.js'
import type { AdapterSource } from '../peft/source.js'
import { checkModuleArrays, layersFor, SlotTable } from './slots.js'
import type { BackendChoice, Layer } from '../types.js'
import type { AdapterPoolOptions, PoolStats } from './types.js'
import { checkBackend } from '../validate.js'

export type { AdapterInfo, TokenAdapters, WeightedAdapter } from './registry.js'
export type { AdapterSource } from '../peft/source.js'
export type { AdapterPoolOptions, PoolStats } from './types.js'

/** Loads, evicts and applies PEFT adapters; see the module comment for the residency rules. */
export class AdapterPool {
  private readonly entries = new Map<string, AdapterEntry>()
  /** Replaced or unloaded entries still used by a running apply. */
  private readonly retired = new Set<AdapterEntry>()
  /** Running applies per layer object; a replaced layer is disposed when its count reaches 0. */
  private readonly inflight = new Map<Layer, number>()
  private readonly oldLayers = new Set<Layer>()
  private readonly counters = { hits: 0, misses: 0, reloads: 0, layerRebuilds: 0 }
  private readonly table: SlotTable
  private readonly minRank: number
  private clock = 0

  constructor(private readonly options: AdapterPoolOptions) {
    if (typeof options?.createLayer !== 'function')
      throw new LoraError('INVALID_ARGUMENT', 'AdapterPool: options.createLayer must be a function')
    const { memoryBudget = Infinity, maxAdapters = 16, maxRank = 16 } = options
    if (!(memoryBudget >= 0)) throw new LoraError('INVALID_ARGUMENT', `memoryBudget must be >= 0 bytes, got ${memoryBudget}`)
    for (const [k, v] of [
      ['maxAdapters', maxAdapters],
      ['maxRank', maxRank],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new LoraError('INVALID_ARGUMENT', `${k} must be a positive integer, got ${v}`)
    }
    this.table = new SlotTable(memoryBudget, maxAdapters)
    this.minRank = maxRank
  }

  /**
   * Load (or atomically replace) adapter `name` from a directory, URL or { config, weights }.
   * Everything is read and validated before any state changes; a failure leaves the previous
   * adapter of that name in place. The new adapter is made resident at once if it fits without
   * evicting pinned or running adapters; otherwise on first use.
   * @throws LoraError from reading/parsing, 'SHAPE_MISMATCH' (a module's in/out features differ
   *   from the loaded layer), 'OUT_OF_MEMORY' (the adapter alone exceeds the memory budget)
   */
  async loadAdapter(name: string, source: AdapterSource): Promise<AdapterInfo> {
    if (typeof name !== 'string' || name.length === 0)
      throw new LoraError('INVALID_ARGUMENT', `adapter name must be a non-empty string, got ${describe(name)}`)
    const { parsed, kind, origin } = await readAndParse(name, source)
    if (parsed.bytes > this.table.budget) {
      throw new LoraError(
        'OUT_OF_MEMORY',
        `adapter "${name}" needs ${parsed.bytes} bytes, more than the memory budget of ${this.table.budget}`,
      )
    }
    // Validate against the existing layers and create every new or larger layer before committing.
    const created = layersFor(this.table, name, parsed, this.options.createLayer, this.minRank)
    // Commit (synchronous from here on).
    for (const [path, { layer, maxRank }] of created) {
      // A larger layer replaces the old one: its adapters lose that slot and re-upload on next use.
      const old = this.table.install(path, layer, maxRank, parsed.modules.get(path)!)
      if (old) {
        this.counters.layerRebuilds++
        this.oldLayers.add(old)
        this.disposeIdleOldLayers()
      }
    }
    const entry = createEntry(parsed, source, kind, origin)
    const previous = this.entries.get(name)
    if (previous) {
      entry.pinned = previous.pinned
      this.retire(previous)
    }
    this.entries.set(name, entry)
    entry.lastUsed = ++this.clock
    try {
      this.table.makeResident(entry, parsed, false, this.entries.values())
    } catch (e) {
      // Upload failed inside a layer: undo so that the old adapter (if any) is back in place.
      this.entries.delete(name)
      if (previous) {
        previous.retired = false
        this.retired.delete(previous)
        this.entries.set(name, previous)
      }
      throw e
    }
    return entryInfo(entry)
  }

  /** Remove adapter `name`; its slots are freed now, or when the applies using it finish. */
  unloadAdapter(name: string): void {
    const entry = this.get(name)
    this.entries.delete(name)
    this.retire(entry)
    this.collectModules()
  }

  /** One row per loaded adapter. */
  listAdapters(): AdapterInfo[] {
    return [...this.entries.values()].map(entryInfo)
  }

  /**
   * The base-layer weights adapter `name`'s file holds (module path -> shape and values), read
   * from its host copy or again from its source; `listAdapters()[i].baseWeights` names them.
   * @throws 'NOT_FOUND'
   */
  async baseWeights(name: string): Promise<Map<string, BaseWeight>> {
    const entry = this.get(name)
    return (await hostWeights(entry, () => this.counters.reloads++)).baseWeights
  }

  /**
   * Make `name` resident and keep it so: pinned adapters are never evicted.
   * @throws 'NOT_FOUND', 'OUT_OF_MEMORY' (no room without evicting pinned or running adapters)
   */
  async pin(name: string): Promise<void> {
    const entry = this.get(name)
    const host = await hostWeights(entry, () => this.counters.reloads++)
    if (this.entries.get(name) !== entry) throw new LoraError('NOT_FOUND', `adapter "${name}" was unloaded or replaced while being pinned`)
    this.table.makeResident(entry, host, true, this.entries.values())
    entry.pinned = true
  }

  /** Let `name` be evicted again. */
  unpin(name: string): void {
    this.get(name).pinned = false
  }

  stats(): PoolStats {
    let bytesHost = 0
    let residentAdapters = 0
    for (const e of this.entries.values()) {
      if (e.host) bytesHost += e.bytes
      if (e.slots.size > 0) residentAdapters++
    }
    return {
      ...this.counters,
      evictions: this.table.evictions,
      bytesResident: this.table.bytesResident,
      bytesHost,
      memoryBudget: this.table.budget,
      adapters: this.entries.size,
      residentAdapters,
      layers: this.table.modules.size,
    }
  }

  /**
   * y[t] += the sum of the deltas of token t's adapters on `module`. Adapters that do not target
   * the module add nothing (as in PEFT); a module no adapter targets is a no-op.
   * @param x [T * inFeatures] @param y [T * outFeatures], updated in place
   * @param adapters [T] per token: null, a name, `{ name, weight }` (the delta times weight), or an
   *   array of those whose deltas are summed
   * @throws 'NOT_FOUND' (unknown adapter, or an evicted adapter whose source is gone),
   *   'SHAPE_MISMATCH', 'DUPLICATE_ADAPTER', 'OUT_OF_MEMORY'
   */
  async apply(
    module: string,
    x: Float32Array | Int32Array,
    y: Float32Array,
    adapters: readonly TokenAdapters[],
    options: { backend?: BackendChoice } = {},
  ): Promise<void> {
    if (typeof module !== 'string')
      throw new LoraError('INVALID_ARGUMENT', `module must be a PEFT module path (string), got ${describe(module)}`)
    if (typeof options !== 'object' || options === null)
      throw new LoraError('INVALID_ARGUMENT', `options must be an object, got ${describe(options)}`)
    if (options.backend !== undefined) checkBackend('options.backend', options.backend)
    const tokens = resolveTokens(adapters, (n) => this.entries.get(n))
    const mod0 = this.table.modules.get(module)
    checkModuleArrays(module, x, y, tokens.length, mod0)
    const batch = new Set(tokens.flat().map((e) => e.entry))
    for (const e of batch) {
      e.refs++
      e.lastUsed = ++this.clock
    }
    try {
      if (!mod0) return
      const needed = [...batch].filter((e) => e.modules.has(module))
      for (const e of needed) this.counters[e.slots.has(module) ? 'hits' : 'misses']++
      // Fetch host copies of the adapters that must be uploaded (may await a re-read), until a
      // synchronous pass finds every one of them available.
      const hosts = new Map<AdapterEntry, ParsedAdapter>()
      let ownX = false
      for (;;) {
        const missing = needed.filter((e) => !e.slots.has(module) && !hosts.has(e))
        if (missing.length === 0) break
        if (!ownX) x = x.slice() // x is the caller's again once this returns its promise (adapters is read already)
        ownX = true
        const got = await Promise.all(missing.map((e) => hostWeights(e, () => this.counters.reloads++)))
        missing.forEach((e, i) => hosts.set(e, got[i]))
      }
      for (const e of needed) if (!e.slots.has(module)) this.table.makeResident(e, hosts.get(e)!, true, this.entries.values())
      const mod = this.table.modules.get(module)! // may be a larger layer than mod0 after the awaits
      const { ids, K, weights } = batchIds(tokens, module)
      if (!ids.some((id) => id >= 0)) return
      const layer = mod.layer
      this.inflight.set(layer, (this.inflight.get(layer) ?? 0) + 1)
      try {
        await layer.apply(x, y, ids, { backend: options.backend, adaptersPerToken: K, weights })
      } finally {
        this.inflight.set(layer, this.inflight.get(layer)! - 1)
        this.disposeIdleOldLayers()
      }
    } finally {
      this.release(batch)
    }
  }

  private release(entries: Iterable<AdapterEntry>): void {
    let freed = false
    for (const e of entries) {
      e.refs--
      if (e.retired && e.refs === 0) {
        this.freeSlots(e)
        freed = true
      }
    }
    if (freed) this.collectModules()
  }

  /** Dispose every layer; the pool is unusable afterwards. */
  dispose(): void {
    for (const m of this.table.modules.values()) m.layer.dispose()
    for (const l of this.oldLayers) l.dispose()
    this.table.modules.clear()
    this.oldLayers.clear()
    this.entries.clear()
    this.table.bytesResident = 0
  }

  private get(name: string): AdapterEntry {
    if (typeof name !== 'string') throw new LoraError('INVALID_ARGUMENT', `adapter name must be a string, got ${describe(name)}`)
    const e = this.entries.get(name)
    if (!e) throw new LoraError('NOT_FOUND', `adapter "${name}" is not loaded`)
    return e
  }

  private freeSlots(e: AdapterEntry): void {
    this.table.freeSlots(e)
    this.retired.delete(e)
  }

  private retire(e: AdapterEntry): void {
    e.retired = true
    if (e.kind !== 'memory') e.host = null
    if (e.refs === 0) this.freeSlots(e)
    else this.retired.add(e)
  }

  /** Dispose layers of modules that no adapter targets any more and nothing is running on. */
  private collectModules(): void {
    for (const [path, m] of this.table.modules) {
      if ((this.inflight.get(m.layer) ?? 0) > 0 || m.occupant.some((o) => o)) continue
      const used = (e: AdapterEntry): boolean => e.modules.has(path)
      if ([...this.entries.values()].some(used) || [...this.retired].some(used)) continue
      m.layer.dispose()
      this.inflight.delete(m.layer)
      this.table.modules.delete(path)
    }
  }

  private disposeIdleOldLayers(): void {
    for (const l of this.oldLayers) {
      if ((this.inflight.get(l) ?? 0) > 0) continue
      l.dispose()
      this.oldLayers.delete(l)
      this.inflight.delete(l)
    }
  }
}
