import { type Backend, UsableBackends } from './backend.js'
import { shortCalibration, rememberProfile, machineOf, targetsOf } from './dispatch/calibrate-cache.js'
import { calibrate as runCalibration } from './dispatch/calibrate.js'
import type { CallFeatures } from './dispatch/cost.js'
import { checkProfile, type Profile } from './dispatch/profile.js'
import type { DecisionMemo } from './dispatch/memo.js'
import { type Decision, Dispatcher, type ExplainRequest, featuresOf } from './dispatch/dispatch.js'
import { describe, LoraError } from './errors.js'
import { LoraLayer, type LayerHost } from './layer.js'
import { AdapterPool, type AdapterInfo, type AdapterSource, type PoolStats, type TokenAdapters } from './pool/pool.js'
import type { BaseWeight } from './peft/adapter.js'
import type { Runtime, RuntimeOptions } from './runtime-api.js'
import type { BackendChoice, BackendName, HostArray, Layer, LayerOptions } from './types.js'
import { checkBackend, checkInt, checkLayerOptions } from './validate.js'
import { createWasmBackend } from './wasm/backend.js'
import { PlainHostArray, WasmHostArray } from './wasm/host-array.js'
import type { WasmVariant } from './wasm/loader.js'
import { checkThreads } from './wasm/threads/support.js'

export type { Runtime, RuntimeOptions } from './runtime-api.js'

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
    throw new LoraError(
      'INVALID_ARGUMENT',
      `memoryBudget must be a number of bytes >= 0 (Infinity: unlimited), got ${describe(memoryBudget)}`,
    )
  }
  if (adapterSlots !== undefined) checkInt('adapterSlots', adapterSlots, 1, 65536)
  if (options.gpuKernels !== undefined && options.gpuKernels !== 'software' && options.gpuKernels !== 'discrete') {
    throw new LoraError('INVALID_ARGUMENT', `gpuKernels must be 'software' or 'discrete', got ${describe(options.gpuKernels)}`)
  }
  if (wasmOptions !== undefined && (typeof wasmOptions !== 'object' || wasmOptions === null)) {
    throw new LoraError('INVALID_ARGUMENT', `wasm options must be an object, got ${describe(wasmOptions)}`)
  }
  const backends: Backend[] = []
  let wasmVariant: WasmVariant | null = null
  let gpuReason: string | null = null
  if (choice !== 'webgpu' || options.wasm) {
    const threads = checkThreads(options.threads ?? 1)
    const minWork = options.threadsMinWork === undefined ? null : checkInt('threadsMinWork', options.threadsMinWork, 0, 2 ** 40)
    const wasm =
      threads === 1
        ? await createWasmBackend(options.wasm)
        : await (await import('./wasm/threads/backend.js')).createThreadedWasmBackend(threads, options.wasm, minWork)
    wasmVariant = wasm.variant
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
  const traits = backends.map((b) => ({
    name: b.name,
    isSoftware: b.isSoftware,
    chunkSize: b.chunkSize,
    parts: (work: number, fusedEntries: number, copies: boolean) => b.partsFor(work, fusedEntries, copies),
  }))
  let profile: Profile | null = null
  if (options.profile !== undefined) profile = checkProfile(options.profile)
  else if (choice === 'auto' && backends.length > 0) profile = await shortCalibration(backends, wasmVariant)
  return new LoraRuntime(choice, backends, wasmVariant, gpuReason, options, new Dispatcher(traits, profile))
}

/** The backends of a runtime made by {@link createRuntime} (for the benches and tests; not public API). */
export function backendsOf(rt: Runtime): readonly Backend[] {
  if (!(rt instanceof LoraRuntime)) throw new LoraError('INVALID_ARGUMENT', 'not a runtime made by createRuntime')
  return rt.all
}

/** The backend the last call of a runtime made by {@link createRuntime} ran on (for the benches; not public API). */
export const lastBackendOf = (rt: Runtime): BackendName | null => (rt instanceof LoraRuntime ? rt.dispatcher.previous : null)

class LoraRuntime implements Runtime, LayerHost {
  private readonly layers = new Set<LoraLayer>()
  private readonly pool: AdapterPool
  private disposed = false

  constructor(
    readonly backend: BackendChoice,
    readonly all: Backend[],
    readonly wasmVariant: WasmVariant | null,
    readonly webgpuUnavailableReason: string | null,
    options: RuntimeOptions,
    readonly dispatcher: Dispatcher,
  ) {
    this.usable = new UsableBackends(all)
    this.pool = new AdapterPool({
      createLayer: (o) => this.createLayer(o),
      memoryBudget: options.memoryBudget,
      maxAdapters: options.adapterSlots,
    })
  }

  get threads(): number {
    return this.all.find((b) => b.name === 'wasm')?.threads ?? 1
  }

  get threadsUnavailableReason(): string | null {
    return this.all.find((b) => b.name === 'wasm')?.threadsUnavailableReason ?? null
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

  async apply(
    module: string,
    x: Float32Array | Int32Array,
    y: Float32Array,
    adapters: readonly TokenAdapters[],
    options?: { backend?: BackendChoice },
  ): Promise<void> {
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
    if (typeof options !== 'object' || options === null)
      throw new LoraError('INVALID_ARGUMENT', `calibrate options must be an object, got ${describe(options)}`)
    if (options.budgetMs !== undefined && (typeof options.budgetMs !== 'number' || !(options.budgetMs > 0))) {
      throw new LoraError(
        'INVALID_ARGUMENT',
        `options.budgetMs must be a positive number of milliseconds, got ${describe(options.budgetMs)}`,
      )
    }
    const profile = await runCalibration(targetsOf(this.all), machineOf(this.all, this.wasmVariant), {
      kind: 'full',
      budgetMs: options.budgetMs,
    })
    this.dispatcher.setProfile(profile)
    rememberProfile(this.all, this.wasmVariant, profile)
    return profile
  }

  get profile(): Profile | null {
    return this.dispatcher.currentProfile
  }

  private decide(call: CallFeatures): Decision {
    return this.dispatcher.decide(call, this.usable.fitting(call))
  }

  private readonly usable: UsableBackends

  get device(): GPUDevice | null {
    const gpu = this.all.find((b) => b.name === 'webgpu')
    return gpu && !gpu.lost ? gpu.device : null
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
    const memory = this.all.find((b) => b.hostMemory)?.hostMemory
    return memory ? new WasmHostArray(memory, length) : new PlainHostArray(length)
  }

  pick(choice: BackendChoice, call: CallFeatures, memo?: DecisionMemo): Backend {
    if (choice === 'auto') {
      const name = this.dispatcher.choose(call, this.usable.fitting(call), memo)
      this.dispatcher.ran(name)
      for (const b of this.all) if (b.name === name) return b
    }
    const b = this.all.find((x) => x.name === choice)
    if (!b)
      throw new LoraError(
        'BACKEND_UNAVAILABLE',
        `backend '${choice}' is not available in this runtime (available: ${this.backends.join(', ') || 'none'})`,
      )
    if (b.lost) throw new LoraError('DEVICE_LOST', `backend '${choice}' lost its device`)
    this.dispatcher.ran(b.name)
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
    if (i < 0)
      throw new LoraError(
        'BACKEND_UNAVAILABLE',
        "this runtime has no WebGPU backend to recover (create it with backend 'auto' or 'webgpu')",
      )
    if (!this.all[i].lost) return false
    const { createWebGpuBackend } = await import('./webgpu/index.js')
    const fresh = await createWebGpuBackend({ device, kernels: this.all[i].kernels ?? undefined })
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
