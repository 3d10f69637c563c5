/**
 * The pool's slot table: one Layer per module path, which adapter sits in which slot, and the
 * bytes held against the memory budget. Residency is per adapter and all or nothing: an adapter
 * is put in a slot of every module it targets at once; eviction empties all of them.
 */
import { LoraError } from '../errors.js'
import type { ParsedAdapter } from '../peft/adapter.js'
import type { AdapterEntry } from './registry.js'
import type { Layer } from '../types.js'

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
