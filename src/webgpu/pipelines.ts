import { LoraError } from '../errors.js'
import type { LossWatch } from './device.js'
import { specialise, type ShaderName, type WeightStorage } from './shaders.js'
import { overrideValues, unrollLoops } from './unroll.js'

/** Everything baked into one pipeline: the shader, the substituted weight storage, the overrides. */
export interface PipelineSpec {
  shader: ShaderName
  storage: WeightStorage
  overrides: Record<string, number>
  /** Compiled with the `subgroups` extension (shaders.ts specialise; the kernel's SG override > 0). */
  subgroups?: boolean
}

/** The shader and its substitutions: one shader module each (unless loops are unrolled per pipeline). */
function moduleName(spec: PipelineSpec): string {
  return `${spec.shader}|${spec.storage}${spec.subgroups ? '|sg' : ''}`
}

/** Cache key listing every substituted and overridden value. */
export function pipelineKey(spec: PipelineSpec): string {
  const o = Object.keys(spec.overrides)
    .sort()
    .map((k) => `${k}=${spec.overrides[k]}`)
    .join(',')
  return `${moduleName(spec)}|${o}`
}

/** Compute pipelines by key, created once, inside error scopes (failures -> LoraError 'GPU_ERROR'). */
export class PipelineCache {
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>()
  /** The pipelines created so far, by spec object and by key (specs are cached by their users). */
  private readonly done = new Map<string, GPUComputePipeline>()
  private readonly bySpec = new WeakMap<PipelineSpec, GPUComputePipeline>()
  private readonly modules = new Map<string, GPUShaderModule>()
  constructor(
    private readonly device: GPUDevice,
    private readonly sources: Record<ShaderName | 'params', string>,
    private readonly watch: LossWatch,
    private readonly layout: GPUPipelineLayout,
    /** Unroll the small loops in the WGSL of each pipeline (unroll.ts): one module per pipeline. */
    private readonly unroll = false,
    /** Kernels with layouts of their own (shared.ts: weighLayout); default 'auto'. */
    private readonly layouts: Partial<Record<ShaderName, GPUPipelineLayout>> = {},
  ) {}

  get(spec: PipelineSpec): Promise<GPUComputePipeline> {
    const key = pipelineKey(spec)
    let p = this.pipelines.get(key)
    if (!p) {
      p = this.create(spec, key)
      p.then(
        (made) => this.done.set(key, made),
        () => this.pipelines.delete(key),
      ) // a failed creation is retried next time
      this.pipelines.set(key, p)
    }
    return p
  }

  /** The pipeline if it was created already (no wait), else undefined. */
  ready(spec: PipelineSpec): GPUComputePipeline | undefined {
    const hit = this.bySpec.get(spec)
    if (hit) return hit
    const made = this.done.get(pipelineKey(spec))
    if (made) this.bySpec.set(spec, made)
    return made
  }

  /**
   * The pipeline now: created synchronously when missing (for `encode`, which cannot wait; a
   * compile error then surfaces as an uncaptured GPU error, as for any synchronous creation).
   */
  now(spec: PipelineSpec): GPUComputePipeline {
    const ready = this.ready(spec)
    if (ready) return ready
    this.watch.check()
    const key = pipelineKey(spec)
    const made = this.device.createComputePipeline({
      label: key,
      layout: this.layoutOf(spec),
      compute: { module: this.module(spec), entryPoint: 'main', constants: spec.overrides },
    })
    this.done.set(key, made)
    this.pipelines.set(key, Promise.resolve(made))
    return made
  }

  /** The shared layout of the LoRA kernels; weigh.wgsl has bindings of its own. */
  private layoutOf(spec: PipelineSpec): GPUPipelineLayout | 'auto' {
    if (spec.shader === 'weigh') return this.layouts[spec.shader] ?? 'auto'
    return this.layout
  }

  private moduleKey(spec: PipelineSpec): string {
    return this.unroll ? pipelineKey(spec) : moduleName(spec)
  }

  private module(spec: PipelineSpec): GPUShaderModule {
    const moduleKey = this.moduleKey(spec)
    let module = this.modules.get(moduleKey)
    if (!module) {
      const code = specialise(this.sources[spec.shader], spec.storage, this.sources.params, spec.subgroups)
      module = this.device.createShaderModule({
        label: moduleKey,
        code: this.unroll ? unrollLoops(code, overrideValues(code, spec.overrides)) : code,
      })
      this.modules.set(moduleKey, module)
    }
    return module
  }

  private async create(spec: PipelineSpec, key: string): Promise<GPUComputePipeline> {
    this.watch.check()
    const device = this.device
    device.pushErrorScope('validation')
    device.pushErrorScope('internal')
    const moduleKey = this.moduleKey(spec)
    const module = this.module(spec)
    // pop right after the synchronous calls: no await between push and pop, so concurrent
    // calls never see each other's scopes (compile errors of the async creation reject its promise)
    const creating = device.createComputePipelineAsync({
      label: key,
      layout: this.layoutOf(spec),
      compute: { module, entryPoint: 'main', constants: spec.overrides },
    })
    const scopes = Promise.all([this.watch.track(device.popErrorScope()), this.watch.track(device.popErrorScope())])
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
    return pipeline
  }
}
