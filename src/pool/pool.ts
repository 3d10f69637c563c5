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
  resolveTokens,
  type AdapterEntry,
  type AdapterInfo,
  type TokenAdapters,
} from './registry.js'
import type { BaseWeight, ParsedAdapter } from '../peft/adapter.js'
import type { AdapterSource } from '../peft/source.js'
import { SlotTable } from './slots.js'
import type { BackendChoice, Layer, LayerOptions } from '../types.js'
import { checkBackend } from '../validate.js'

export type { AdapterInfo, TokenAdapters, WeightedAdapter } from './registry.js'
export type { AdapterSource } from '../peft/source.js'

/** Options of {@link AdapterPool}. */
export interface AdapterPoolOptions {
  /** Makes a layer (the runtime's createLayer). Called once per module, again when it grows. */
  createLayer: (options: LayerOptions) => Layer
  /** Bytes all layers' slots may hold together (f32 weights of resident adapters). Default: unlimited. */
  memoryBudget?: number
  /** Slots per layer (adapters resident at once per module). Default 16. */
  maxAdapters?: number
  /**
   * Smallest maxRank a layer is created with. Default 16. A layer is created with the next power
   * of two >= the first adapter's rank (at least this); an adapter of larger rank recreates the
   * layer with the larger power of two (adapters in the old layer then reload on next use).
   */
  maxRank?: number
}

/** Counters of {@link AdapterPool.stats}. */
export interface PoolStats {
  /** (apply, adapter) pairs whose adapter was already in the module's layer. */
  hits: number
  /** (apply, adapter) pairs that had to upload the adapter first. */
  misses: number
  /** Adapters evicted from the slots to make room. */
  evictions: number
  /** Re-reads of evicted path/URL adapters from their source. */
  reloads: number
  /** Layers recreated with a larger maxRank. */
  layerRebuilds: number
  /** f32 bytes held in the layers' slots. */
  bytesResident: number
  /** Bytes of decoded host copies kept (in-memory sources). */
  bytesHost: number
  memoryBudget: number
  adapters: number
  residentAdapters: number
  layers: number
}

const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(n))

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
    const created = new Map<string, { layer: Layer; maxRank: number }>()
    try {
      for (const [path, m] of parsed.modules) {
        const mod = this.table.modules.get(path)
        if (mod && (mod.layer.spec.embedding ?? false) !== (m.embedding ?? false)) {
          throw new LoraError(
            'SHAPE_MISMATCH',
            `adapter "${name}" module "${path}" is ${m.embedding ? 'an embedding' : 'a linear'} module but loaded adapters have it as ${m.embedding ? 'a linear' : 'an embedding'} one`,
          )
        }
        if (mod && (mod.inFeatures !== m.inFeatures || mod.outFeatures !== m.outFeatures)) {
          throw new LoraError(
            'SHAPE_MISMATCH',
            `adapter "${name}" module "${path}" is [in ${m.inFeatures}, out ${m.outFeatures}] but loaded adapters have [in ${mod.inFeatures}, out ${mod.outFeatures}]`,
          )
        }
        if (!mod || m.rank > mod.maxRank) {
          const maxRank = Math.max(this.minRank, nextPow2(m.rank), mod ? mod.maxRank * 2 : 0)
          const layer = this.options.createLayer({
            inFeatures: m.inFeatures,
            outFeatures: m.outFeatures,
            maxAdapters: this.table.slotsPerLayer,
            maxRank,
            weightDtype: 'f32',
            ...(m.embedding ? { embedding: true } : {}),
          })
          created.set(path, { layer, maxRank })
        }
      }
    } catch (e) {
      for (const { layer } of created.values()) layer.dispose()
      throw e
    }
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
    if (!(x instanceof Float32Array || x instanceof Int32Array) || !(y instanceof Float32Array)) {
      throw new LoraError(
        'INVALID_ARGUMENT',
        `apply(${module}): x must be a Float32Array (an Int32Array of token ids for an embedding module) and y a Float32Array`,
      )
    }
    const batch = new Set(tokens.flat().map((e) => e.entry))
    for (const e of batch) {
      e.refs++
      e.lastUsed = ++this.clock
    }
    try {
      const mod0 = this.table.modules.get(module)
      if (!mod0) return
      const T = tokens.length
      const embedding = mod0.layer.spec.embedding === true
      if (embedding !== x instanceof Int32Array) {
        throw new LoraError(
          'INVALID_ARGUMENT',
          `apply(${module}): ${embedding ? 'an embedding module takes token ids, x must be an Int32Array' : 'x must be a Float32Array'}`,
        )
      }
      const xWidth = embedding ? 1 : mod0.inFeatures
      if (x.length !== T * xWidth || y.length !== T * mod0.outFeatures) {
        throw new LoraError(
          'SHAPE_MISMATCH',
          `apply(${module}): ${T} tokens need x [${T} * ${xWidth}] and y [${T} * ${mod0.outFeatures}], got x[${x.length}] and y[${y.length}]`,
        )
      }
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
      const perToken = tokens.map((list) => list.filter((e) => e.entry.modules.has(module)))
      let K = 1
      let weighted = false
      for (const l of perToken) {
        K = Math.max(K, l.length)
        for (const e of l) if (e.weight !== 1) weighted = true
      }
      const ids = new Int32Array(T * K).fill(-1)
      const weights = weighted ? new Float32Array(T * K) : undefined
      perToken.forEach((list, t) =>
        list.forEach(({ entry, weight }, k) => {
          ids[t * K + k] = entry.slots.get(module)!
          if (weights) weights[t * K + k] = weight
        }),
      )
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
