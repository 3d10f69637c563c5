/** Storage type of adapter weights inside the kernels. Math and accumulation are always f32. */
export type WeightDtype = 'f32' | 'bf16' | 'f16'

/**
 * Which family of tiles the WebGPU kernels use. 'software': the tiles tuned on lavapipe (a CPU runs a
 * workgroup as SIMD lanes on one core: few threads, big register tiles, no split over
 * workgroups). 'discrete': a GPU of many multiprocessors (64-128 threads per workgroup, small
 * register tiles, split-K over workgroups when rank x tiles give too few of them).
 */
export type KernelProfile = 'software' | 'discrete'

/** A backend name; 'auto' lets the dispatcher choose per call. */
export type BackendName = 'wasm' | 'webgpu'
export type BackendChoice = BackendName | 'auto'
/** Where `encode` records: the caller's command encoder, or an open compute pass of it. */
export type EncodeTarget = GPUCommandEncoder | GPUComputePassEncoder

/** Options of {@link createLayer}. */
export interface LayerOptions {
  /** Input width of the wrapped linear layer. */
  inFeatures: number
  /** Output width, or the widths of its slices (e.g. [4096, 1024, 1024] for a fused QKV). */
  outFeatures: number | readonly number[]
  /** Number of adapter slots (ids run from 0 to maxAdapters - 1). */
  maxAdapters: number
  /** Largest rank any slot may hold. */
  maxRank: number
  /** Storage type of the weights. Default 'f32'. */
  weightDtype?: WeightDtype
  /**
   * An embedding layer (PEFT's lora_embedding_A / _B): inFeatures is the vocabulary size, one
   * output slice, and `apply` takes token ids (Int32Array [T], or an i32 GPUBuffer) in place of
   * x: token t gets scale * B A[:, id_t] (a gather in place of the shrink). Default false.
   */
  embedding?: boolean
}

/** One adapter for one layer, as given to `layer.setAdapter`. */
export interface AdapterWeights {
  /** LoRA rank r (1 <= r <= maxRank). */
  rank: number
  /** Multiplier of the delta (PEFT: lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA). */
  scale: number
  /** Per slice, A as [rank * inFeatures] row-major; a bare array when the layer has one slice. */
  A: Float32Array | readonly Float32Array[]
  /** Per slice, B as [n_s * rank] row-major; a bare array when the layer has one slice. */
  B: Float32Array | readonly Float32Array[]
}

/** Options of `layer.apply`. */
export interface ApplyOptions {
  /** Backend for this call; default: the runtime's backend. */
  backend?: BackendChoice
  /** Number of slot ids per token (K): ids has T * K entries, -1 pads. Default 1. */
  adaptersPerToken?: number
  /**
   * T, the number of tokens: required when ids is a GPUBuffer (whose size may exceed T * K * 4
   * bytes); when ids is an Int32Array it must equal ids.length / K if given.
   */
  tokens?: number
  /**
   * Per-entry adapter weights, [T * K] like ids (finite values; entries whose id is -1 ignore
   * theirs): the entry's delta is multiplied by its weight, w * scale_a * B_a A_a x[t].
   * Default: every weight 1.
   */
  weights?: Float32Array
}

/**
 * An array of floats in the runtime's wasm memory (`rt.hostArray`). Passed to `apply` as x or y
 * (or any subarray of it), it is used in place: the call copies nothing in or out. A serving loop
 * writes x into one and reads y from another. The kernels then read x and write y during the
 * call: write x again, or read y, once the call has resolved.
 */
export interface HostArray {
  readonly length: number
  /**
   * The values, as a view of the wasm memory. The memory grows when the runtime allocates (a
   * setAdapter, loadAdapter, createLayer or hostArray, or an apply larger than any before), and a
   * single-threaded runtime's memory detaches its old views when it grows: read `array` again
   * after such calls rather than keeping it (a detached view has length 0 and apply refuses it).
   * A threaded runtime's memory is shared and never detaches its views.
   */
  readonly array: Float32Array
  /** Free the array (after the calls that use it have resolved). Reading `array` then throws. */
  release(): void
}

/** The validated shape of a layer, shared by every backend. */
export interface LayerSpec {
  inFeatures: number
  /** Width of each output slice. */
  sliceWidths: readonly number[]
  /** Column offset of each slice in y. */
  sliceOffsets: readonly number[]
  outFeatures: number
  maxAdapters: number
  maxRank: number
  weightDtype: WeightDtype
  /** An embedding layer: x holds token ids (see LayerOptions.embedding). */
  embedding?: boolean
}

/**
 * An adapter after validation: one Float32Array per slice, values already rounded to the layer's
 * weight dtype, so every backend stores exactly these numbers.
 */
export interface PreparedAdapter {
  rank: number
  scale: number
  /** Per slice: [rank * inFeatures], row-major. */
  A: Float32Array[]
  /** Per slice: [n_s * rank], row-major. */
  B: Float32Array[]
}

/** A LoRA-wrapped linear layer with `maxAdapters` slots (see `Runtime.createLayer`). */
export interface Layer {
  readonly spec: LayerSpec
  /** Store an adapter in `slot` (0..maxAdapters-1), replacing what was there. */
  setAdapter(slot: number, adapter: AdapterWeights): void
  /** Empty `slot`. Applying a batch that names it afterwards is an error. */
  clearAdapter(slot: number): void
  /** Whether `slot` holds an adapter. */
  hasAdapter(slot: number): boolean
  /**
   * y[t] += sum over the token's slots a of w * scale_a * B_a A_a x[t], for every token t
   * (w: the entry's `options.weights` value, default 1).
   * x and y may also be GPUBuffers on the runtime's device (`rt.device`, STORAGE usage): y is then
   * updated on the GPU, in queue order, with no readback. If the dispatcher runs such a call on
   * wasm, x and y are copied through the host (they need COPY_SRC, y also COPY_DST).
   * @param x [T * inFeatures]; an embedding layer's: Int32Array [T] token ids in 0..inFeatures-1
   * @param y [T * outFeatures], updated in place (untouched if the call throws)
   * @param ids [T * K] slot ids, -1 = none (K = options.adaptersPerToken, default 1). Also a
   *   GPUBuffer on `rt.device` (COPY_SRC usage, i32 values, `options.tokens` = T): its first
   *   T * K values are read back in queue order (the values left by the work submitted before the
   *   call), because the segment plan is built on the host. That small read waits for the queued
   *   GPU work, so pass ids as an Int32Array where the host has them (a scheduler usually does).
   */
  apply(
    x: Float32Array | Int32Array | GPUBuffer,
    y: Float32Array | GPUBuffer,
    ids: Int32Array | GPUBuffer,
    options?: ApplyOptions,
  ): Promise<void>
  /**
   * Record the same update into `encoder`, a GPUCommandEncoder of `rt.device` that the caller
   * owns and submits: no submit and no wait here, so a whole forward pass (every layer's LoRA
   * between the caller's own passes) goes to the GPU in one submit; passes recorded after it see
   * y updated. x and y are GPUBuffers (STORAGE usage), ids an Int32Array; the WebGPU kernels run
   * it whatever `options.backend` says. Validation and errors as `apply`. The slots' weights are
   * those in place at the submit; submit before recording more than about 8,000 calls.
   *
   * `encoder` may also be an open GPUComputePassEncoder of the caller's: the dispatches then go
   * into that pass (no pass begun and ended per call, which costs microseconds of CPU each through
   * Dawn), and later dispatches of the pass see y updated. The pass's pipeline and bind group 0 are
   * left changed: set yours again before your next dispatch.
   */
  encode(encoder: EncodeTarget, x: GPUBuffer, y: GPUBuffer, ids: Int32Array, options?: ApplyOptions): void
  /** Free the layer's storage on every backend. */
  dispose(): void
}
