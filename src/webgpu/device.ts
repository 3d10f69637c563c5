import { LoraError } from '../errors.js'
import { vulkanMissing } from './vulkan.js'

/** A device with what this backend learned about it while acquiring it. */
export interface DeviceContext {
  device: GPUDevice
  /** The adapter is a CPU implementation (lavapipe, SwiftShader, WARP). */
  isSoftware: boolean
  /** The device has `shader-f16` (f16 weights as native f16 storage). */
  hasF16: boolean
  /**
   * Subgroup lanes the kernels' trees may use: the adapter's smallest subgroup size where the
   * device has `subgroups` (a power of two), else 0. A kernel checks it per workgroup and uses
   * workgroup memory wherever the subgroups turn out otherwise (shaders.ts, lanesLow).
   */
  subgroupSize: number
  /** The device was created here (so dispose() destroys it). */
  owned: boolean
  /**
   * Dawn's GPU object in Node, held until dispose(). Node exits once it is dropped, and it must
   * not be garbage-collected while a device from it still works: measured here, a collected
   * instance with a mapAsync pending aborts the process ("std::system_error: Invalid argument",
   * the futex abort) or segfaults inside Dawn's event processing, every time under --expose-gc.
   * A disposed backend therefore drops it only once every promise of Dawn's it started has settled
   * (LossWatch.drained): a call answered DEVICE_LOST at once still has Dawn's mapAsync pending.
   */
  keepAlive?: unknown
}

/** Feature names we use when the adapter has them. */
const WANTED_FEATURES = ['shader-f16', 'timestamp-query', 'subgroups'] as const

/** WebGPU by wgpu (Deno, Firefox) rather than Dawn (Node's `webgpu` package, Chromium). */
export function isWgpu(): boolean {
  if ('Deno' in globalThis) return true
  const ua = (globalThis as { navigator?: { userAgent?: string } }).navigator?.userAgent ?? ''
  return /Firefox\//.test(ua)
}

/**
 * See DeviceContext.subgroupSize. None under wgpu: its WGSL front end (naga) does not take
 * `workgroupUniformLoad` of an atomic, which the kernels' check uses (gfx-rs/wgpu#8785), and no
 * wgpu adapter measured here listed `subgroups`.
 */
export function subgroupLanes(device: GPUDevice, info: GPUAdapterInfo | undefined): number {
  const min = (info as (GPUAdapterInfo & { subgroupMinSize?: number }) | undefined)?.subgroupMinSize ?? 0
  return !isWgpu() && device.features.has('subgroups') && min >= 2 && (min & (min - 1)) === 0 ? min : 0
}

/** Limits raised to the adapter's own values (large weight stacks need big storage bindings). */
const WANTED_LIMITS = ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize'] as const

function isSoftwareAdapter(adapter: GPUAdapter): boolean {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean }
  const legacy = (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter
  return (
    info.architecture === 'software' ||
    info.isFallbackAdapter === true ||
    legacy === true ||
    /llvmpipe|lavapipe|swiftshader/i.test(info.description ?? '')
  )
}

/** navigator.gpu (browsers, Deno), else the `webgpu` npm package (Dawn) in Node. */
async function findGpu(): Promise<{ gpu: GPU; keepAlive?: unknown }> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator
  if (nav?.gpu) return { gpu: nav.gpu }
  const isNode = typeof process !== 'undefined' && !!process.versions?.node && !('Bun' in globalThis)
  if (!isNode) throw new LoraError('BACKEND_UNAVAILABLE', 'no navigator.gpu in this runtime')
  const noVulkan = await vulkanMissing()
  if (noVulkan) throw new LoraError('BACKEND_UNAVAILABLE', noVulkan)
  let mod: { create: (flags: string[]) => GPU; globals: Record<string, unknown> }
  try {
    const name = 'webgpu' // a variable, so bundlers for other runtimes do not follow the import
    mod = await import(name)
  } catch (cause) {
    throw new LoraError('BACKEND_UNAVAILABLE', 'the "webgpu" npm package (Dawn for Node) could not be loaded', { cause })
  }
  // GPUBufferUsage etc. are needed as globals by code written for browsers.
  for (const [k, v] of Object.entries(mod.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v
  const gpu = mod.create(['disable-dawn-features=timestamp_quantization'])
  return { gpu, keepAlive: gpu }
}

/**
 * Acquire a device: the one given, or a new one from navigator.gpu / the `webgpu` package,
 * with shader-f16 and timestamp-query when the adapter has them.
 * Throws LoraError('BACKEND_UNAVAILABLE') when no adapter or device can be had.
 */
export async function acquireDevice(given?: GPUDevice): Promise<DeviceContext> {
  if (given) {
    return {
      device: given,
      isSoftware: false, // unknown for a foreign device; GPUDevice.adapterInfo when present says more
      hasF16: given.features.has('shader-f16'),
      subgroupSize: subgroupLanes(given, (given as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo),
      owned: false,
    }
  }
  const { gpu, keepAlive } = await findGpu()
  let adapter: GPUAdapter | null
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' })
  } catch (cause) {
    throw new LoraError('BACKEND_UNAVAILABLE', 'requestAdapter failed', { cause })
  }
  if (!adapter) throw new LoraError('BACKEND_UNAVAILABLE', 'no WebGPU adapter (no GPU and no software Vulkan driver?)')
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[]
  const requiredLimits: Record<string, number> = {}
  for (const name of WANTED_LIMITS) requiredLimits[name] = adapter.limits[name]
  let device: GPUDevice
  try {
    device = await adapter.requestDevice({ requiredFeatures, requiredLimits })
  } catch (cause) {
    throw new LoraError('BACKEND_UNAVAILABLE', 'requestDevice failed', { cause })
  }
  return {
    device,
    isSoftware: isSoftwareAdapter(adapter),
    hasF16: device.features.has('shader-f16'),
    subgroupSize: subgroupLanes(device, adapter.info),
    owned: true,
    keepAlive,
  }
}

/** Tracks device loss; `check()` throws DEVICE_LOST once the device is gone. */
export class LossWatch {
  lost = false
  reason = ''
  /** Resolves when the device is lost (never rejects). */
  readonly whenLost: Promise<void>
  /**
   * The guards waiting now, woken by the one handler on device.lost. (A reaction per call on
   * whenLost, as Promise.race([p, whenLost.then(...)]) adds, stays attached to that promise,
   * which never settles while the device lives: ~1 KB of promises and closures per call, forever.)
   */
  private readonly waiting = new Set<() => void>()
  /** Native waits (mapAsync, onSubmittedWorkDone, popErrorScope, pipeline creation) not settled yet. */
  private readonly native = new Set<Promise<unknown>>()
  constructor(device: GPUDevice) {
    this.whenLost = device.lost.then((info) => {
      this.lost = true
      this.reason = `${info.reason ?? 'unknown'}: ${info.message ?? ''}`
      for (const wake of this.waiting) wake()
      this.waiting.clear()
    })
  }
  check(): void {
    if (this.lost) throw new LoraError('DEVICE_LOST', `the WebGPU device was lost (${this.reason})`)
  }
  /** `p`, a promise of Dawn's, tracked until it settles (see `drained`). */
  track<T>(p: Promise<T>): Promise<T> {
    this.native.add(p)
    const done = () => this.native.delete(p)
    p.then(done, done)
    return p
  }
  /**
   * Resolves once every tracked native wait has settled (never rejects). A guard answers DEVICE_LOST
   * at once, while Dawn's own promise may still be pending: Dawn's instance must outlive it (device.ts,
   * keepAlive), so a disposed backend holds its instance until this resolves.
   */
  async drained(): Promise<void> {
    while (this.native.size) await Promise.allSettled([...this.native])
  }
  /** Guards still waiting (0 between calls: nothing per call outlives it). */
  get waitingGuards(): number {
    return this.waiting.size
  }
  /** `promise`, or DEVICE_LOST as soon as the device is lost: never hangs on a dead device. */
  async guard<T>(promise: Promise<T>, what: string): Promise<T> {
    this.track(promise)
    let wake: () => void = () => {}
    const lost = new Promise<never>((_, reject) => {
      wake = () => reject(new LoraError('DEVICE_LOST', `the WebGPU device was lost during ${what} (${this.reason})`))
    })
    if (this.lost) wake()
    else this.waiting.add(wake)
    try {
      return await Promise.race([promise, lost])
    } catch (cause) {
      if (cause instanceof LoraError) throw cause
      if (this.lost) throw new LoraError('DEVICE_LOST', `the WebGPU device was lost during ${what} (${this.reason})`, { cause })
      throw new LoraError('GPU_ERROR', `${what} failed: ${(cause as Error)?.message ?? cause}`, { cause })
    } finally {
      this.waiting.delete(wake)
    }
  }
}
