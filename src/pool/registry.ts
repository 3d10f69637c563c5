/**
 * The pool's record of one loaded adapter: its shape (kept forever), its host copy (kept for
 * in-memory sources, dropped and re-read for path/URL sources), and where it sits in the layers'
 * slots. Pure bookkeeping: the pool decides residency and eviction.
 */
import { LoraError } from '../errors.js'
import { parseAdapter, type ParsedAdapter } from '../peft/adapter.js'
import type { SafetensorsDtype } from '../peft/safetensors.js'
import { readAdapterSource, type AdapterSource } from '../peft/source.js'

/** Shape of one targeted module; weights live in the host copy or the layer slots. */
export interface ModuleShape {
  rank: number
  scale: number
  inFeatures: number
  outFeatures: number
  /** f32 bytes this module occupies in one slot. */
  bytes: number
}

/** What `listAdapters` reports for one adapter. */
export interface AdapterInfo {
  name: string
  /** Module paths the adapter targets. */
  modules: string[]
  /** Distinct ranks over its modules, ascending. */
  ranks: number[]
  /** Widest stored dtype of the weight file(s). */
  dtype: SafetensorsDtype
  /** f32 bytes of all its modules (what it occupies in the slots when resident). */
  bytes: number
  /** Whether every module currently holds it in a slot. */
  resident: boolean
  pinned: boolean
  /** 'memory' sources stay in host memory; 'path'/'url' sources are re-read after eviction. */
  source: 'memory' | 'path' | 'url'
  /** Modules with weights in the file that the config does not target (ignored, as in PEFT). */
  ignored: string[]
}

export interface AdapterEntry {
  readonly name: string
  readonly source: AdapterSource
  readonly kind: 'memory' | 'path' | 'url'
  readonly origin: string
  readonly modules: ReadonlyMap<string, ModuleShape>
  readonly dtype: SafetensorsDtype
  readonly bytes: number
  readonly ignored: readonly string[]
  /** Decoded weights; always set for memory sources, null for path/URL sources between uses. */
  host: ParsedAdapter | null
  /** Module path -> slot index in that module's current layer. */
  readonly slots: Map<string, number>
  pinned: boolean
  /** Number of running apply calls using this adapter: while > 0 it is never evicted. */
  refs: number
  /** LRU clock value of the last apply that used it. */
  lastUsed: number
  /** Unloaded or replaced: its slots are freed once refs drops to 0. */
  retired: boolean
  /** A re-read in progress, shared by concurrent callers. */
  reading: Promise<ParsedAdapter> | null
}

/** A new entry for a freshly parsed adapter (host copy kept only for in-memory sources). */
export function createEntry(parsed: ParsedAdapter, source: AdapterSource, kind: AdapterEntry['kind'], origin: string): AdapterEntry {
  const modules = new Map<string, ModuleShape>()
  for (const [path, m] of parsed.modules) {
    modules.set(path, { rank: m.rank, scale: m.scale, inFeatures: m.inFeatures, outFeatures: m.outFeatures, bytes: (m.A.length + m.B.length) * 4 })
  }
  return {
    name: parsed.name, source, kind, origin, modules, dtype: parsed.dtype, bytes: parsed.bytes, ignored: parsed.ignored,
    host: kind === 'memory' ? parsed : null, slots: new Map(), pinned: false, refs: 0, lastUsed: 0, retired: false, reading: null,
  }
}

/** Read and parse an adapter from its source. */
export async function readAndParse(name: string, source: AdapterSource): Promise<{ parsed: ParsedAdapter; kind: AdapterEntry['kind']; origin: string }> {
  const files = await readAdapterSource(source)
  return { parsed: parseAdapter(files.config, files.weights, name, files.fileNames), kind: files.kind, origin: files.origin }
}

/**
 * The entry's decoded weights: its host copy, or a fresh read of its source (shared by
 * concurrent callers). A re-read adapter must have the same modules and shapes as when loaded.
 * @throws LoraError 'NOT_FOUND' naming the adapter and source when the source is gone.
 */
export function hostWeights(entry: AdapterEntry, onReload: () => void): Promise<ParsedAdapter> {
  if (entry.host) return Promise.resolve(entry.host)
  if (entry.reading) return entry.reading
  const reading = (async () => {
    let parsed: ParsedAdapter
    try {
      parsed = (await readAndParse(entry.name, entry.source)).parsed
    } catch (e) {
      const code = e instanceof LoraError ? e.code : 'NOT_FOUND'
      throw new LoraError(code, `adapter "${entry.name}" was evicted and cannot be reloaded from ${entry.origin}: ${(e as Error).message}`, { cause: e })
    }
    for (const [path, want] of entry.modules) {
      const got = parsed.modules.get(path)
      if (!got || got.rank !== want.rank || got.inFeatures !== want.inFeatures || got.outFeatures !== want.outFeatures || parsed.modules.size !== entry.modules.size) {
        throw new LoraError('INVALID_FILE', `adapter "${entry.name}" changed at ${entry.origin} since it was loaded (module "${path}"); load it again`)
      }
    }
    onReload()
    return parsed
  })()
  entry.reading = reading
  reading.then(() => (entry.reading = null), () => (entry.reading = null))
  return reading
}

/** The listAdapters row of an entry. */
export function entryInfo(e: AdapterEntry): AdapterInfo {
  const ranks = [...new Set([...e.modules.values()].map((m) => m.rank))].sort((a, b) => a - b)
  return {
    name: e.name, modules: [...e.modules.keys()], ranks, dtype: e.dtype, bytes: e.bytes,
    resident: e.slots.size === e.modules.size, pinned: e.pinned, source: e.kind, ignored: [...e.ignored],
  }
}

/** A token's adapters: null (none), one name, or several names summed. */
export type TokenAdapters = string | readonly string[] | null | undefined

/**
 * Resolve the per-token adapter names of a batch to entries.
 * @throws LoraError 'INVALID_ARGUMENT' (not an array / bad names), 'NOT_FOUND' (unknown adapter),
 *   'DUPLICATE_ADAPTER' (one token names an adapter twice)
 */
export function resolveTokens(adapters: readonly TokenAdapters[], lookup: (name: string) => AdapterEntry | undefined): AdapterEntry[][] {
  if (!Array.isArray(adapters)) throw new LoraError('INVALID_ARGUMENT', `adapters must be an array with one entry per token, got ${typeof adapters}`)
  return adapters.map((a, t) => {
    if (a === null || a === undefined) return []
    const names = typeof a === 'string' ? [a] : Array.isArray(a) ? a : null
    if (!names || !names.every((n) => typeof n === 'string')) {
      throw new LoraError('INVALID_ARGUMENT', `adapters[${t}] must be null, a name or an array of names`)
    }
    const out = names.map((n) => {
      const e = lookup(n)
      if (!e) throw new LoraError('NOT_FOUND', `adapters[${t}]: adapter "${n}" is not loaded`)
      return e
    })
    if (new Set(out).size !== out.length) throw new LoraError('DUPLICATE_ADAPTER', `adapters[${t}] names the same adapter twice: ${JSON.stringify(names)}`)
    return out
  })
}
