/**
 * The pool's slot table: one Layer per module path, which adapter sits in which slot, and the
 * bytes held against the memory budget. Residency is per adapter and all or nothing: an adapter
 * is put in a slot of every module it targets at once; eviction empties all of them.
 */
import { LoraError } from '../errors.js'
import type { ParsedAdapter } from '../peft/adapter.js'
import type { AdapterEntry } from './registry.js'
import type { Layer, LayerOptions } from '../types.js'

export interface ModuleState {
  path: string
  inFeatures: number
  outFeatures: number
  maxRank: number
  layer: Layer
  /** Adapter in each slot of `layer`. */
  occupant: (AdapterEntry | null)[]
}

export class SlotTable {
  readonly modules = new Map<string, ModuleState>()
  /** f32 bytes held in all slots. */
  bytesResident = 0
  evictions = 0

  constructor(
    readonly budget: number,
    readonly slotsPerLayer: number,
  ) {}

  /** Put `layer` in charge of `path`. Returns the layer it replaces (its occupants lose that slot). */
  install(path: string, layer: Layer, maxRank: number, shape: { inFeatures: number; outFeatures: number }): Layer | null {
    const old = this.modules.get(path)
    if (old) for (const e of old.occupant) if (e) this.dropSlot(e, path, old, false)
    const occupant = new Array<AdapterEntry | null>(this.slotsPerLayer).fill(null)
    this.modules.set(path, { path, inFeatures: shape.inFeatures, outFeatures: shape.outFeatures, maxRank, layer, occupant })
    return old ? old.layer : null
  }

  /**
   * Upload every module of `e` that is not yet in a slot, evicting least-recently-used adapters
   * among `candidates` that are neither pinned nor running. All or nothing: if even evicting every
   * candidate would not make room, evicts nothing and returns false (or throws 'OUT_OF_MEMORY'
   * when `strict`).
   */
  makeResident(e: AdapterEntry, host: ParsedAdapter, strict: boolean, all: Iterable<AdapterEntry>): boolean {
    const need = [...e.modules.keys()].filter((p) => !e.slots.has(p)).map((p) => this.modules.get(p)!)
    if (need.length === 0) return true
    const needBytes = need.reduce((s, m) => s + e.modules.get(m.path)!.bytes, 0)
    const candidates = [...all]
      .filter((c) => c !== e && !c.pinned && c.refs === 0 && c.slots.size > 0)
      .sort((a, b) => a.lastUsed - b.lastUsed)
    const hasFree = (m: ModuleState): boolean => m.occupant.includes(null)
    const evictable = candidates.reduce((s, c) => s + this.residentBytes(c), 0)
    const full = need.find((m) => !hasFree(m) && !candidates.some((c) => c.slots.has(m.path)))
    if (this.bytesResident - evictable + needBytes > this.budget || full) {
      if (!strict) return false
      throw new LoraError(
        'OUT_OF_MEMORY',
        `adapter "${e.name}" needs ${needBytes} bytes` +
          (full
            ? ` and a slot in "${full.path}", whose ${this.slotsPerLayer} slots hold pinned or running adapters`
            : `; the budget is ${this.budget}, ${this.bytesResident} resident, ${evictable} evictable`),
      )
    }
    for (const c of candidates) {
      const short = this.bytesResident + needBytes > this.budget
      if (!short && need.every(hasFree)) break
      // Evict only adapters that help: any while bytes are short, else those in a full layer.
      if (short || need.some((m) => !hasFree(m) && c.slots.has(m.path))) {
        this.freeSlots(c)
        this.evictions++
      }
    }
    const done: ModuleState[] = []
    try {
      for (const m of need) {
        const slot = m.occupant.indexOf(null)
        const w = host.modules.get(m.path)!
        m.layer.setAdapter(slot, { rank: w.rank, scale: w.scale, A: w.A, B: w.B })
        m.occupant[slot] = e
        e.slots.set(m.path, slot)
        this.bytesResident += e.modules.get(m.path)!.bytes
        done.push(m)
      }
    } catch (err) {
      for (const m of done) this.dropSlot(e, m.path, m, true)
      throw err
    }
    return true
  }

  /** Empty every slot `e` holds. */
  freeSlots(e: AdapterEntry): void {
    for (const path of [...e.slots.keys()]) this.dropSlot(e, path, this.modules.get(path)!, true)
  }

  private residentBytes(e: AdapterEntry): number {
    let s = 0
    for (const p of e.slots.keys()) s += e.modules.get(p)!.bytes
    return s
  }

  private dropSlot(e: AdapterEntry, path: string, m: ModuleState, clear: boolean): void {
    const slot = e.slots.get(path)!
    if (clear) m.layer.clearAdapter(slot)
    m.occupant[slot] = null
    e.slots.delete(path)
    this.bytesResident -= e.modules.get(path)!.bytes
  }
}

const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(n))

/**
 * The new or larger layers adapter `name` needs (module path -> layer and its maxRank), created
 * before anything is committed: a module's first layer, or one of the next power-of-two rank when
 * the adapter's rank exceeds the layer's. Nothing is created when one module disagrees.
 * @throws LoraError 'SHAPE_MISMATCH' (a module's kind or in/out features differ from the loaded layer)
 */
export function layersFor(
  table: SlotTable,
  name: string,
  parsed: ParsedAdapter,
  createLayer: (options: LayerOptions) => Layer,
  minRank: number,
): Map<string, { layer: Layer; maxRank: number }> {
  const created = new Map<string, { layer: Layer; maxRank: number }>()
  try {
    for (const [path, m] of parsed.modules) {
      const mod = table.modules.get(path)
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
        const maxRank = Math.max(minRank, nextPow2(m.rank), mod ? mod.maxRank * 2 : 0)
        const layer = createLayer({
          inFeatures: m.inFeatures,
          outFeatures: m.outFeatures,
          maxAdapters: table.slotsPerLayer,
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
  return created
}

/**
 * x and y of a pool apply: typed arrays, and when the module has a layer, of its kind (token ids
 * for an embedding module) and its shape for T tokens.
 * @throws LoraError 'INVALID_ARGUMENT', 'SHAPE_MISMATCH'
 */
export function checkModuleArrays(module: string, x: unknown, y: unknown, T: number, mod: ModuleState | undefined): void {
  if (!(x instanceof Float32Array || x instanceof Int32Array) || !(y instanceof Float32Array)) {
    throw new LoraError(
      'INVALID_ARGUMENT',
      `apply(${module}): x must be a Float32Array (an Int32Array of token ids for an embedding module) and y a Float32Array`,
    )
  }
  if (!mod) return
  const embedding = mod.layer.spec.embedding === true
  if (embedding !== x instanceof Int32Array) {
    throw new LoraError(
      'INVALID_ARGUMENT',
      `apply(${module}): ${embedding ? 'an embedding module takes token ids, x must be an Int32Array' : 'x must be a Float32Array'}`,
    )
  }
  const xWidth = embedding ? 1 : mod.inFeatures
  if (x.length !== T * xWidth || y.length !== T * mod.outFeatures) {
    throw new LoraError(
      'SHAPE_MISMATCH',
      `apply(${module}): ${T} tokens need x [${T} * ${xWidth}] and y [${T} * ${mod.outFeatures}], got x[${x.length}] and y[${y.length}]`,
    )
  }
}
