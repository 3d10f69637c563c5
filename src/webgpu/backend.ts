import { CHUNK_SIZE, type HostTransfers } from '../backend.js'
import { LoraError } from '../errors.js'
import type { LayerSpec } from '../types.js'
import { BufferPool, StagingPool } from './buffers.js'
import { acquireDevice, type DeviceContext, isWgpu, LossWatch } from './device.js'
import { GpuLayer } from './layer.js'
import { PipelineCache } from './pipelines.js'
import type { KernelProfile } from './programs/program.js'
import { loadShaderSources, weightStorage } from './shaders.js'
import { checkWritable, readBack, writeBack } from './transfer.js'
import { kernelLayout, MetaRing, Scratch, type SharedCallState, weighLayout } from './shared.js'
import type { WebGpuBackend, WebGpuLayer } from './types.js'

/** How host arrays reach the GPU: mapped staging buffers and copies on the queue, or writeBuffer. */
export type Uploads = 'staging' | 'writeBuffer'

class Backend implements WebGpuBackend {
  readonly name = 'webgpu' as const
  readonly chunkSize = CHUNK_SIZE
  readonly device: GPUDevice
  readonly isSoftware: boolean
  readonly threads = 1
  readonly threadsUnavailableReason = null
  readonly transfers: HostTransfers
  readonly kernels: KernelProfile
  readonly hostMemory = null
  private readonly shared: SharedCallState
  private readonly watch: LossWatch
  private readonly pool: BufferPool
  private readonly staging: StagingPool | null
  private readonly pipelines: PipelineCache
  private readonly layers = new Set<GpuLayer>()
  readonly maxCallBuffer: number
  private disposed = false
  private keepAlive: unknown

  constructor(
    private readonly dc: DeviceContext,
    sources: Awaited<ReturnType<typeof loadShaderSources>>,
    kernels: KernelProfile | undefined,
    uploads: Uploads | undefined,
    unroll: boolean | undefined,
  ) {
    this.device = dc.device
    this.isSoftware = dc.isSoftware
    this.kernels = kernels ?? (dc.isSoftware ? 'software' : 'discrete')
    this.keepAlive = dc.keepAlive
    this.watch = new LossWatch(dc.device)
    this.maxCallBuffer = Math.min(dc.device.limits.maxStorageBufferBindingSize, dc.device.limits.maxBufferSize)
    this.pool = new BufferPool(dc.device, this.maxCallBuffer)
    // host uploads: mapped staging buffers on a hardware adapter (an H200: 8.6-11.8 GB/s against
    // writeBuffer's 2.4-3.2); writeBuffer on a software one, where it is a plain copy
    const staged = (uploads ?? (dc.isSoftware ? 'writeBuffer' : 'staging')) === 'staging'
    const track = <T>(p: Promise<T>): Promise<T> => this.watch.track(p)
    this.staging = staged ? new StagingPool(dc.device, dc.device.limits.maxBufferSize, track) : null
    const layout = kernelLayout(dc.device)
    const weigh = weighLayout(dc.device)
    this.shared = {
      layout: layout.group,
      weighLayout: weigh.group,
      ring: new MetaRing(dc.device, this.maxCallBuffer),
      h: new Scratch(dc.device, this.maxCallBuffer),
    }
    this.pipelines = new PipelineCache(dc.device, sources, this.watch, layout.pipeline, unroll ?? loopBounding(), {
      weigh: weigh.pipeline,
    })
    const device = dc.device
    this.transfers = {
      read: (src, floats, name) => readBack(device, src, floats, name, track),
      write: (dst, values) => writeBack(device, dst, values),
      checkWritable,
    }
  }

  partsFor(): number {
    return 1
  }

  forceParts(): void {}

  settled(): Promise<void> {
    return this.watch.track(this.device.queue.onSubmittedWorkDone())
  }

  get lost(): boolean {
    return this.watch.lost
  }

  createLayer(spec: LayerSpec): WebGpuLayer {
    if (this.disposed) throw new LoraError('DISPOSED', 'this WebGPU backend was disposed')
    const layer = new GpuLayer(
      {
        device: this.device,
        watch: this.watch,
        pipelines: this.pipelines,
        pool: this.pool,
        staging: this.staging,
        shared: this.shared,
        profile: this.kernels,
        subgroupSize: this.dc.subgroupSize,
        storageOf: (s) => weightStorage(s.weightDtype, this.dc.hasF16),
        maxBinding: this.maxCallBuffer,
        onDispose: (l) => this.layers.delete(l),
      },
      spec,
    )
    this.layers.add(layer)
    return layer
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    for (const layer of [...this.layers]) layer.dispose()
    this.pool.destroy()
    this.staging?.destroy()
    this.shared.ring.destroy()
    this.shared.h.destroy()
    if (this.dc.owned) this.device.destroy()
    // lets Node exit (Dawn's instance keeps the event loop alive), once Dawn has settled every
    // promise of its own: an instance collected with one pending aborts the process (device.ts)
    const instance = this.keepAlive
    this.keepAlive = undefined
    if (instance) void this.watch.drained().then(() => instance)
  }
}

/**
 * WebGPU by wgpu (Deno, Firefox), whose shader compiler bounds every loop: the kernels' small
 * loops are then unrolled in the WGSL (unroll.ts).
 */
export function loopBounding(): boolean {
  return isWgpu()
}

/**
 * Create the WebGPU backend on `options.device`, or on a device of its own: navigator.gpu in
 * browsers and Deno, the `webgpu` npm package (Dawn) in Node. `options.kernels` forces a tile
 * family (default: 'software' on a CPU adapter such as lavapipe, else 'discrete'); `options.uploads`
 * how host arrays reach the GPU (default: 'writeBuffer' on a CPU adapter, else 'staging');
 * `options.unroll` whether the kernels' small loops are unrolled in the WGSL (default: on wgpu,
 * see unroll.ts). Throws LoraError('BACKEND_UNAVAILABLE') when no adapter or device can be had.
 */
export async function createWebGpuBackend(
  options: { device?: GPUDevice; kernels?: KernelProfile; uploads?: Uploads; unroll?: boolean } = {},
): Promise<WebGpuBackend> {
  const dc = await acquireDevice(options.device)
  try {
    return new Backend(dc, await loadShaderSources(), options.kernels, options.uploads, options.unroll)
  } catch (e) {
    if (dc.owned) dc.device.destroy()
    throw e
  }
}
