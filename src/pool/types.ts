import type { Layer, LayerOptions } from '../types.js'

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
