import { LoraError } from '../errors.js'
import type { LossWatch } from './device.js'
import { specialise, type ShaderName, type WeightStorage } from './shaders.js'

/** Everything baked into one pipeline: the shader, the substituted weight storage, the overrides. */
export interface PipelineSpec {
  shader: ShaderName
  storage: WeightStorage
  overrides: Record<string, number>
}

/** Cache key listing every substituted and overridden value. */
export function pipelineKey(spec: PipelineSpec): string {
  const o = Object.keys(spec.overrides).sort().map((k) => `${k}=${spec.overrides[k]}`).join(',')
  return `${spec.shader}|${spec.storage}|${o}`
}

/** Compute pipelines by key, created once, inside error scopes (failures -> LoraError 'GPU_ERROR'). */
export class PipelineCache {
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>()
  /** Pipelines already created, for calls that must not await (cached()). */
  private readonly ready = new Map<string, GPUComputePipeline>()
  private readonly modules = new Map<string, GPUShaderModule>()
  constructor(
    private readonly device: GPUDevice,
    private readonly sources: Record<ShaderName | 'params', string>,
    private readonly watch: LossWatch,
  ) {}

  get(spec: PipelineSpec): Promise<GPUComputePipeline> {
    const key = pipelineKey(spec)
    let p = this.pipelines.get(key)
    if (!p) {
      p = this.create(spec, key)
      p.catch(() => this.pipelines.delete(key)) // a failed creation is retried next time
      this.pipelines.set(key, p)
    }
    return p
  }

  /** The pipeline of `spec` if it already exists (no await: a call can then submit before it returns). */
  cached(spec: PipelineSpec): GPUComputePipeline | undefined {
    return this.ready.get(pipelineKey(spec))
  }

  /**
   * The pipeline of `spec`, created synchronously if it does not exist yet (a call whose GPU
   * inputs must be read by work submitted before it returns). Call inside the caller's error
   * scopes: a creation error surfaces there.
   */
  getNow(spec: PipelineSpec): GPUComputePipeline {
    const key = pipelineKey(spec)
    let pipeline = this.ready.get(key)
    if (pipeline) return pipeline
    this.watch.check()
    pipeline = this.device.createComputePipeline({ label: key, layout: 'auto', compute: { module: this.module(spec), entryPoint: 'main', constants: spec.overrides } })
    this.ready.set(key, pipeline)
    this.pipelines.set(key, Promise.resolve(pipeline))
    return pipeline
  }

  private module(spec: PipelineSpec): GPUShaderModule {
    const moduleKey = `${spec.shader}|${spec.storage}`
    let module = this.modules.get(moduleKey)
    if (!module) {
      module = this.device.createShaderModule({ label: moduleKey, code: specialise(this.sources[spec.shader], spec.storage, this.sources.params) })
      this.modules.set(moduleKey, module)
    }
    return module
  }

  private async create(spec: PipelineSpec, key: string): Promise<GPUComputePipeline> {
    this.watch.check()
    const device = this.device
    device.pushErrorScope('validation')
    device.pushErrorScope('internal')
    const moduleKey = `${spec.shader}|${spec.storage}`
    const module = this.module(spec)
    // pop right after the synchronous calls: no await between push and pop, so concurrent
    // calls never see each other's scopes (compile errors of the async creation reject its promise)
    const creating = device.createComputePipelineAsync({
      label: key,
      layout: 'auto',
      compute: { module, entryPoint: 'main', constants: spec.overrides },
    })
    const scopes = Promise.all([device.popErrorScope(), device.popErrorScope()])
    scopes.catch(() => {}) // handled below, after the creation settles
    let pipeline: GPUComputePipeline | undefined
    let failure: unknown
    try {
      pipeline = await this.watch.guard(creating, `pipeline creation (${key})`)
    } catch (cause) {
      failure = cause
    }
    const [internal, validation] = await this.watch.guard(scopes, 'popErrorScope')
    const error = validation ?? internal
    if (failure || error || !pipeline) {
      this.modules.delete(moduleKey)
      if (failure instanceof LoraError && failure.code === 'DEVICE_LOST') throw failure
      const info = await module.getCompilationInfo().catch(() => undefined)
      const compile = info?.messages.filter((m) => m.type === 'error').map((m) => `line ${m.lineNum}: ${m.message}`)
      const why = compile?.length ? compile.join('; ') : (error?.message ?? (failure as Error)?.message ?? String(failure))
      throw new LoraError('GPU_ERROR', `could not create pipeline ${key}: ${why}`, { cause: failure ?? error })
    }
    this.ready.set(key, pipeline)
    return pipeline
  }
}
