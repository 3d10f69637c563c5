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
  /** An embedding module: its layer takes token ids (LayerOptions.embedding). */
  embedding: boolean
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
  /** Embedding modules (lora_embedding_A / _B): `rt.apply` takes their token ids as x. */
  embeddings: string[]
  /**
   * Modules whose base-layer weight the file also holds (PEFT saves embed_tokens' and lm_head's
   * when embedding layers are targeted): not applied; `rt.baseWeights(name)` returns them.
   */
  baseWeights: string[]
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
  readonly baseWeights: readonly string[]
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
    modules.set(path, {
      rank: m.rank,
      scale: m.scale,
      inFeatures: m.inFeatures,
      outFeatures: m.outFeatures,
      bytes: (m.A.length + m.B.length) * 4,
      embedding: m.embedding === true,
    })
  }
  return {
    name: parsed.name,
    source,
    kind,
    origin,
    modules,
    dtype: parsed.dtype,
    bytes: parsed.bytes,
    ignored: parsed.ignored,
    baseWeights: [...parsed.baseWeights.keys()],
    host: kind === 'memory' ? parsed : null,
    slots: new Map(),
    pinned: false,
    refs: 0,
    lastUsed: 0,
    retired: false,
    reading: null,
  }
}

/** Read and parse an adapter from its source. */
export async function readAndParse(
  name: string,
  source: AdapterSource,
): Promise<{ parsed: ParsedAdapter; kind: AdapterEntry['kind']; origin: string }> {
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
      throw new LoraError(
        code,
        `adapter "${entry.name}" was evicted and cannot be reloaded from ${entry.origin}: ${(e as Error).message}`,
        { cause: e },
      )
    }
    for (const [path, want] of entry.modules) {
      const got = parsed.modules.get(path)
      if (
        !got ||
        got.rank !== want.rank ||
        got.inFeatures !== want.inFeatures ||
        got.outFeatures !== want.outFeatures ||
        parsed.modules.size !== entry.modules.size
      ) {
        throw new LoraError(
          'INVALID_FILE',
          `adapter "${entry.name}" changed at ${entry.origin} since it was loaded (module "${path}"); load it again`,
        )
      }
    }
    onReload()
    return parsed
  })()
  entry.reading = reading
  reading.then(
    () => (entry.reading = null),
    () => (entry.reading = null),
  )
  return reading
}

/** The listAdapters row of an entry. */
export function entryInfo(e: AdapterEntry): AdapterInfo {
  const ranks = [...new Set([...e.modules.values()].map((m) => m.rank))].sort((a, b) => a - b)
  return {
    name: e.name,
    modules: [...e.modules.keys()],
    ranks,
    dtype: e.dtype,
    bytes: e.bytes,
    resident: e.slots.size === e.modules.size,
    pinned: e.pinned,
    source: e.kind,
    ignored: [...e.ignored],
    embeddings: [...e.modules].filter(([, m]) => m.embedding).map(([p]) => p),
    baseWeights: [...e.baseWeights],
  }
}

/** An adapter with a weight for one token: its delta is multiplied by `weight` (a finite number). */
export interface WeightedAdapter {
  name: string
  weight: number
}

/** A token's adapters: null (none), one name, a `{ name, weight }`, or several of these summed. */
export type TokenAdapters = string | WeightedAdapter | readonly (string | WeightedAdapter)[] | null | undefined

/** One adapter of one token after resolution: its entry and weight (1 for a plain name). */
export interface TokenEntry {
  entry: AdapterEntry
  weight: number
}

/**
 * Resolve the per-token adapter names of a batch to entries and weights.
 * @throws LoraError 'INVALID_ARGUMENT' (not an array / bad names or weights), 'NOT_FOUND' (unknown
 *   adapter), 'DUPLICATE_ADAPTER' (one token names an adapter twice)
 */
export function resolveTokens(adapters: readonly TokenAdapters[], lookup: (name: string) => AdapterEntry | undefined): TokenEntry[][] {
  if (!Array.isArray(adapters))
    throw new LoraError('INVALID_ARGUMENT', `adapters must be an array with one entry per token, got ${typeof adapters}`)
  return adapters.map((a, t) => {
    if (a === null || a === undefined) return []
    const items: unknown[] = Array.isArray(a) ? a : [a]
    const out = items.map((item, k) => {
      const where = Array.isArray(a) ? `adapters[${t}][${k}]` : `adapters[${t}]`
      const named = typeof item === 'object' && item !== null && !Array.isArray(item)
      const name = named ? (item as WeightedAdapter).name : item
      const weight = named ? (item as WeightedAdapter).weight : 1
      if (typeof name !== 'string') {
        throw new LoraError('INVALID_ARGUMENT', `${where} must be null, a name, { name, weight } or an array of those`)
      }
      if (typeof weight !== 'number' || !Number.isFinite(weight)) {
        throw new LoraError('INVALID_ARGUMENT', `${where}.weight must be a finite number, got ${String(weight)}`)
      }
      const entry = lookup(name)
      if (!entry) throw new LoraError('NOT_FOUND', `${where}: adapter "${name}" is not loaded`)
      return { entry, weight }
    })
    if (new Set(out.map((e) => e.entry)).size !== out.length) {
      throw new LoraError('DUPLICATE_ADAPTER', `adapters[${t}] names the same adapter twice: ${JSON.stringify(a)}`)
    }
    return out
  })
}

/**
 * The slot ids of a resolved batch on `module` ([T * K], -1 pads; K: the most adapters of one
 * token that target it) and their weights ([T * K], or undefined when every weight is 1). Every
 * adapter that targets the module must be resident in it.
 */
export function batchIds(
  tokens: readonly TokenEntry[][],
  module: string,
): { ids: Int32Array; K: number; weights: Float32Array | undefined } {
  const T = tokens.length
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
  return { ids, K, weights }
}
