import type { SegmentPlan } from './metadata.js'
import type { BackendName, LayerSpec, PreparedAdapter } from './types.js'

/**
 * What every compute backend implements. The public API validates all input once and hands
 * backends only valid data: kernels trust their inputs.
 */
export interface Backend {
  readonly name: BackendName
  /** Longest segment this backend wants in a SegmentPlan (default 64). */
  readonly chunkSize?: number
  /** True once the backend can no longer run calls (e.g. a lost GPU device). */
  readonly lost?: boolean
  /** Allocate the storage of one layer (weights for every slot, resident on this backend). */
  createLayer(spec: LayerSpec): BackendLayer
  /** Free everything this backend holds. Later calls are invalid. */
  dispose(): void
}

/** One layer's weights on one backend. */
export interface BackendLayer {
  /** Store an adapter in `slot` (replacing what was there). The adapter is already validated and rounded. */
  setAdapter(slot: number, adapter: PreparedAdapter): void
  /** Remove the adapter of `slot` and free its storage. */
  clearAdapter(slot: number): void
  /**
   * y[row] += delta for every entry of the plan.
   * @param x [T * inFeatures]
   * @param y [T * outFeatures], updated in place; untouched if the call throws.
   */
  apply(x: Float32Array, y: Float32Array, plan: SegmentPlan): void | Promise<void>
  /** Free the layer's storage. */
  dispose(): void
}
