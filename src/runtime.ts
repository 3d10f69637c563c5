import type { Backend } from './backend.js'
import { shortCalibration, rememberProfile, machineOf, targetsOf } from './dispatch/calibrate-cache.js'
import { calibrate as runCalibration } from './dispatch/calibrate.js'
import type { CallFeatures } from './dispatch/cost.js'
import { checkProfile, type Profile } from './dispatch/profile.js'
import { type Decision, Dispatcher, type ExplainRequest, featuresOf } from './dispatch/dispatch.js'
import { describe, LoraError } from './errors.js'
import { LoraLayer, type LayerHost } from './layer.js'
import { AdapterPool, type AdapterInfo, type AdapterSource, type PoolStats, type TokenAdapters } from './pool/pool.js'
import type { BaseWeight } from './peft/adapter.js'
import type { BackendChoice, BackendName, HostArray, Layer, LayerOptions } from './types.js'
import { checkBackend, checkInt, checkLayerOptions } from './validate.js'
import { createWasmBackend, type WasmBackend } from './wasm/backend.js'
import { PlainHostArray, WasmHostArray } from './wasm/host-array.js'
import type { WasmModuleOptions, WasmVariant } from './wasm/loader.js'
import { checkThreads, type ThreadsOption } from './wasm/threads/support.js'

/** Options of {@link createRuntime}. */
export interface RuntimeOptions {
  /** Default backend of every call: 'auto' (default) lets the dispatcher choose per call. */
  backend?: BackendChoice
  /** A WebGPU device to use instead of acquiring one. */
  gpu?: GPUDevice
  /**
   * The WebGPU kernels' tile family: 'software' (tuned for CPU adapters such as lavapipe) or
   * 'discrete' (GPUs: wider workgroups, split-K over workgroups). Default: chosen from the adapter.
   */
  gpuKernels?: 'software' | 'discrete'
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
  apply(module: string, x: Float32Array | Int32Array, y: Float32Array, adapters: readonly TokenAdapters[], options?: { backend?: BackendChoice }): Promise<void>
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

/**
 * Create a runtime. 'wasm' loads only the WebAssembly kernels; 'webgpu' requires a WebGPU device
 * (LoraError BACKEND_UNAVAILABLE otherwise); 'auto' loads both where possible.
 */
export async function createRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  if (typeof options !== 'object' || options === null) {
    throw new LoraError('INVALID_ARGUMENT', `createRuntime options must be an object, got ${describe(options)}`)
  }
  const choice = checkBackend('backend', options.backend ?? 'auto')
  // Every option is checked before any backend (or GPU device) is acquired.
  const { memoryBudget, adapterSlots, wasm: wasmOptions } = options
  if (memoryBudget !== undefined && (typeof memoryBudget !== 'number' || !(memoryBudget >= 0))) {
    throw new LoraError('INVALID_ARGUMENT', `memoryBudget must be a number of bytes >= 0 (Infinity: unlimited), got ${describe(memoryBudget)}`)
  }
  if (adapterSlots !== undefined) checkInt('adapterSlots', adapterSlots, 1, 65536)
  if (options.gpuKernels !== undefined && options.gpuKernels !== 'software' && options.gpuKernels !== 'discrete') {
    throw new LoraError('INVALID_ARGUMENT', `gpuKernels must be 'software' or 'discrete', got ${describe(options.gpuKernels)}`)
  }
  if (wasmOptions !== undefined && (typeof wasmOptions !== 'object' || wasmOptions === null)) {
    throw new LoraError('INVALID_ARGUMENT', `wasm options must be an object, got ${describe(wasmOptions)}`)
  }
  const backends: Backend[] = []
  let wasm: WasmBackend | null = null
  let gpuReason: string | null = null
  if (choice !== 'webgpu' || options.wasm) {
    const minWork = options.threadsMinWork === undefined ? null : checkInt('threadsMinWork', options.threadsMinWork, 0, 2 ** 40)
    wasm = await createWasmBackend(options.wasm, checkThreads(options.threads ?? 1), minWork)
    backends.push(wasm)
  }
  if (choice !== 'wasm') {
    try {
      const { createWebGpuBackend } = await import('./webgpu/index.js')
      backends.push(await createWebGpuBackend({ device: options.gpu, kernels: options.gpuKernels }))
    } catch (e) {
      gpuReason = e instanceof Error ? e.message : String(e)
      if (choice === 'webgpu') {
        throw e instanceof LoraError ? e : new LoraError('BACKEND_UNAVAILABLE', `WebGPU is not available: ${gpuReason}`, { cause: e })
      }
    }
  }
  const traits = backends.map((b) => {
    const parts = (b as { partsFor?(work: number, fusedEntries: number): number }).partsFor
    return { name: b.name, isSoftware: (b as { isSoftware?: boolean }).isSoftware === true, chunkSize: b.chunkSize, parts: parts?.bind(b) }
  })
  let profile: Profile | null = null
  if (options.profile !== undefined) profile = checkProfile(options.profile)
  else if (choice === 'auto' && backends.length > 0) profile = await shortCalibration(backends, wasm?.variant ?? null)
  return new LoraRuntime(choice, backends, wasm?.variant ?? null, gpuReason, options, new Dispatcher(traits, profile))
}

class LoraRuntime implements Runtime, LayerHost {
  private readonly layers = new Set<LoraLayer>()
  private readonly pool: AdapterPool
  private disposed = false

  constructor(
    readonly backend: BackendChoice,
    private readonly all: Backend[],
    readonly wasmVariant: WasmVariant | null,
    readonly webgpuUnavailableReason: string | null,
    options: RuntimeOptions,
    private readonly dispatcher: Dispatcher,
  ) {
    this.pool = new AdapterPool({ createLayer: (o) => this.createLayer(o), memoryBudget: options.memoryBudget, maxAdapters: options.adapterSlots })
  }

  get threads(): number {
    return (this.all.find((b) => b.name === 'wasm') as { threads?: number } | undefined)?.threads ?? 1
  }

  get threadsUnavailableReason(): string | null {
    return (this.all.find((b) => b.name === 'wasm') as { threadsUnavailableReason?: string | null } | undefined)?.threadsUnavailableReason ?? null
  }

  async loadAdapter(name: string, source: AdapterSource): Promise<AdapterInfo> {
    this.checkAlive()
    return this.pool.loadAdapter(name, source)
  }

  unloadAdapter(name: string): void {
    this.checkAlive()
    this.pool.unloadAdapter(name)
  }

  listAdapters(): AdapterInfo[] {
    this.checkAlive()
    return this.pool.listAdapters()
  }

  async apply(module: string, x: Float32Array | Int32Array, y: Float32Array, adapters: readonly TokenAdapters[], options?: { backend?: BackendChoice }): Promise<void> {
    this.checkAlive()
    return this.pool.apply(module, x, y, adapters, options)
  }

  async baseWeights(name: string): Promise<Map<string, BaseWeight>> {
    this.checkAlive()
    return this.pool.baseWeights(name)
  }

  async pin(name: string): Promise<void> {
    this.checkAlive()
    return this.pool.pin(name)
  }

  unpin(name: string): void {
    this.checkAlive()
    this.pool.unpin(name)
  }

  stats(): PoolStats {
    return this.pool.stats()
  }

  explain(call: ExplainRequest): Decision {
    this.checkAlive()
    return this.decide(featuresOf(call))
  }

  async calibrate(options: { budgetMs?: number } = {}): Promise<Profile> {
    this.checkAlive()
    if (typeof options !== 'object' || options === null) throw new LoraError('INVALID_ARGUMENT', `calibrate options must be an object, got ${describe(options)}`)
    if (options.budgetMs !== undefined && (typeof options.budgetMs !== 'number' || !(options.budgetMs > 0))) {
      throw new LoraError('INVALID_ARGUMENT', `options.budgetMs must be a positive number of milliseconds, got ${describe(options.budgetMs)}`)
    }
    const profile = await runCalibration(targetsOf(this.all), machineOf(this.all, this.wasmVariant), { kind: 'full', budgetMs: options.budgetMs })
    this.dispatcher.setProfile(profile)
    rememberProfile(this.all, this.wasmVariant, profile)
    return profile
  }

  get profile(): Profile | null {
    return this.dispatcher.currentProfile
  }

  private decide(call: CallFeatures): Decision {
    return this.dispatcher.decide(call, this.usable())
  }

  private usableNames: BackendName[] = []

  /** Names of the backends not lost (the array is reused while that does not change). */
  private usable(): BackendName[] {
    let n = 0
    for (const b of this.all) if (!b.lost) n++
    if (n !== this.usableNames.length) this.usableNames = this.all.filter((b) => !b.lost).map((b) => b.name)
    if (n === 0) throw new LoraError('BACKEND_UNAVAILABLE', 'no backend is usable (the GPU device was lost and wasm is not loaded)')
    return this.usableNames
  }

  get device(): GPUDevice | null {
    const gpu = this.all.find((b) => b.name === 'webgpu') as { device?: GPUDevice; lost?: boolean } | undefined
    return gpu && !gpu.lost ? gpu.device ?? null : null
  }

  get backends(): BackendName[] {
    return this.all.filter((b) => !b.lost).map((b) => b.name)
  }

  get defaultBackend(): BackendChoice {
    return this.backend
  }

  createLayer(options: LayerOptions): Layer {
    this.checkAlive()
    const layer = new LoraLayer(this, checkLayerOptions(options), this.all)
    this.layers.add(layer)
    return layer
  }

  hostArray(length: number): HostArray {
    this.checkAlive()
    checkInt('length', length, 0, 2 ** 30)
    const wasm = this.all.find((b) => b.name === 'wasm') as WasmBackend | undefined
    return wasm ? new WasmHostArray(wasm, length) : new PlainHostArray(length)
  }

  pick(choice: BackendChoice, call: CallFeatures): Backend {
    if (choice === 'auto') {
      const name = this.dispatcher.choose(call, this.usable())
      return this.all.find((b) => b.name === name)!
    }
    const b = this.all.find((x) => x.name === choice)
    if (!b) throw new LoraError('BACKEND_UNAVAILABLE', `backend '${choice}' is not available in this runtime (available: ${this.backends.join(', ') || 'none'})`)
    if (b.lost) throw new LoraError('DEVICE_LOST', `backend '${choice}' lost its device`)
    return b
  }

  checkAlive(): void {
    if (this.disposed) throw new LoraError('DISPOSED', 'this runtime was disposed')
  }

  /** Layers keep host copies of their weights when there is a GPU device that may be lost. */
  get keepHostCopies(): boolean {
    return this.all.some((b) => b.name === 'webgpu')
  }

  async recoverGpu(device?: GPUDevice): Promise<boolean> {
    this.checkAlive()
    const i = this.all.findIndex((b) => b.name === 'webgpu')
    if (i < 0) throw new LoraError('BACKEND_UNAVAILABLE', 'this runtime has no WebGPU backend to recover (create it with backend \'auto\' or \'webgpu\')')
    if (!this.all[i].lost) return false
    const { createWebGpuBackend } = await import('./webgpu/index.js')
    const fresh = await createWebGpuBackend({ device, kernels: (this.all[i] as { kernels?: 'software' | 'discrete' }).kernels })
    try {
      this.checkAlive()
      for (const l of this.layers) l.replaceBackend(fresh)
    } catch (e) {
      fresh.dispose()
      throw e
    }
    const old = this.all[i]
    this.all[i] = fresh
    try {
      old.dispose()
    } catch {
      // the lost device holds nothing any more
    }
    return true
  }

  dispose(): void {
    if (this.disposed) return
    this.pool.dispose()
    for (const l of this.layers) l.dispose()
    this.layers.clear()
    for (const b of this.all) b.dispose()
    this.disposed = true
  }
}
