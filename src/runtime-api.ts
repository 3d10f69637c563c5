/** The public shape of a runtime: its options and the calls it offers (src/runtime.ts implements it). */
import type { Profile } from './dispatch/profile.js'
import type { Decision, ExplainRequest } from './dispatch/dispatch.js'
import type { AdapterInfo, AdapterSource, PoolStats, TokenAdapters } from './pool/pool.js'
import type { BaseWeight } from './peft/adapter.js'
import type { BackendChoice, BackendName, HostArray, KernelProfile, Layer, LayerOptions } from './types.js'
import type { WasmModuleOptions, WasmVariant } from './wasm/loader.js'
import type { ThreadsOption } from './wasm/threads/support.js'

/** Options of `createRuntime`. */
export interface RuntimeOptions {
  /** Default backend of every call: 'auto' (default) lets the dispatcher choose per call. */
  backend?: BackendChoice
  /** A WebGPU device to use instead of acquiring one. */
  gpu?: GPUDevice
  /**
   * The WebGPU kernels' tile family: 'software' (tuned for CPU adapters such as lavapipe) or
   * 'discrete' (GPUs: wider workgroups, split-K over workgroups). Default: chosen from the adapter.
   */
  gpuKernels?: KernelProfile
  /** Where the WebAssembly kernels come from (default: the package's build/ directory). */
  wasm?: WasmModuleOptions
  /** Bytes the loaded adapters' weights may occupy in the kernels' slots (default: unlimited). */
  memoryBudget?: number
  /** Adapters resident at once per module (slots of each PEFT module's layer; default 16). */
  adapterSlots?: number
  /**
   * Threads of the wasm backend: 1 (default), a count, or 'auto' (the machine's cores); each call
   * uses as many of them as its size gains from (threadsMinWork), so small calls run on one. Single-threaded where threads are unavailable (no SharedArrayBuffer, a
   * page that is not cross-origin isolated, Cloudflare Workers).
   */
  threads?: ThreadsOption
  /**
   * Multiply-adds per thread below which a call uses fewer threads than the pool has (calls too
   * small to gain run on one thread, whatever the pool size). Default: measured break-even figures
   * (4e5 with one adapter per token, 1e6 otherwise); 0 cuts every call over every thread.
   */
  threadsMinWork?: number
  /**
   * A calibration profile saved from `rt.calibrate()` (JSON-parsed is fine): used instead of the
   * short calibration that an 'auto' runtime otherwise runs at creation (<= 300 ms, once per process).
   */
  profile?: Profile
}

/** A set of backends and the layers created on them. */
export interface Runtime {
  /** Backends available here, e.g. ['wasm'] or ['wasm', 'webgpu']. */
  readonly backends: BackendName[]
  /** The default backend choice of calls. */
  readonly backend: BackendChoice
  /** Which WebAssembly build runs: 'relaxed-simd' where the runtime supports it, else 'simd'. */
  readonly wasmVariant: WasmVariant | null
  /** Why WebGPU is not among the backends, when it is not. */
  readonly webgpuUnavailableReason: string | null
  /** Threads the wasm backend runs on (1: single-threaded, also when threads are unavailable). */
  readonly threads: number
  /** Why more than one thread was asked for but the wasm backend runs on one, when it does. */
  readonly threadsUnavailableReason: string | null
  /**
   * The WebGPU device of the webgpu backend (null without one, or once lost): create x and y
   * GPUBuffers on it to run `layer.apply` on GPU-resident data.
   */
  readonly device: GPUDevice | null
  /** Create a LoRA-wrapped linear layer with `maxAdapters` slots on every backend. */
  createLayer(options: LayerOptions): Layer
  /**
   * `length` floats (zeroed) in the wasm kernels' memory, for x or y of `apply` without copies
   * (see HostArray for how long a view stays valid). Without a wasm backend, an ordinary array.
   */
  hostArray(length: number): HostArray
  /**
   * Load a PEFT adapter (adapter_config.json + adapter_model.safetensors) under `name`: from a
   * directory path (Node, Deno, Bun), a URL, or `{ config, weights }`. Atomic; an existing name
   * is replaced.
   */
  loadAdapter(name: string, source: AdapterSource): Promise<AdapterInfo>
  /** Remove an adapter (a running call that uses it finishes with it). */
  unloadAdapter(name: string): void
  /** The loaded adapters: name, modules, ranks, dtype, bytes, residency. */
  listAdapters(): AdapterInfo[]
  /**
   * Add the LoRA delta of PEFT module `module` (e.g. 'model.layers.0.self_attn.q_proj') to y:
   * `adapters[t]` names token t's adapter, `{ name, weight }` (its delta times weight), a
   * combination (an array of those), or none (null).
   * @param x [T * inFeatures]; for an embedding module (listAdapters' `embeddings`), Int32Array [T] token ids
   * @param y [T * outFeatures], updated in place
   */
  apply(
    module: string,
    x: Float32Array | Int32Array,
    y: Float32Array,
    adapters: readonly TokenAdapters[],
    options?: { backend?: BackendChoice },
  ): Promise<void>
  /**
   * The base-layer weights adapter `name`'s file holds (PEFT saves embed_tokens' and lm_head's
   * when embedding layers are targeted), by module path: not applied, here to be checked against
   * the caller's base model. `listAdapters()` names the modules that carry them.
   */
  baseWeights(name: string): Promise<Map<string, BaseWeight>>
  /** Keep an adapter resident (never evicted) until unpinned. */
  pin(name: string): Promise<void>
  unpin(name: string): void
  /** Pool counters: hits, misses, evictions, reloads, bytes resident. */
  stats(): PoolStats
  /**
   * The backend an 'auto' call of this shape would run on, every backend's predicted time (ms) and
   * the reason in one line. 'auto' calls use exactly this decision.
   */
  explain(call: ExplainRequest): Decision
  /** Measure every backend's rates (a few seconds, weights cold); the dispatcher uses them from now on. Save the result and pass it back as `createRuntime({ profile })`. */
  calibrate(options?: { budgetMs?: number }): Promise<Profile>
  /** The calibration profile the dispatcher uses (null: priors only, e.g. a forced backend). */
  readonly profile: Profile | null
  /**
   * After the WebGPU device was lost ('auto' calls then run on wasm, 'webgpu' calls fail with
   * DEVICE_LOST): acquire a new device (or use `device`), rebuild every layer's GPU storage and
   * make WebGPU available again. Resolves false when WebGPU was not lost.
   * @throws 'BACKEND_UNAVAILABLE' (no new device, or this runtime never had WebGPU)
   */
  recoverGpu(device?: GPUDevice): Promise<boolean>
  /** Free every layer and backend (ends the GPU device this runtime acquired). */
  dispose(): void
}
