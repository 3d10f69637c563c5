import type { Backend, BackendLayer, CallData } from '../backend.js'
import type { SegmentPlan } from '../metadata.js'
import type { EncodeTarget, LayerSpec } from '../types.js'

/** Input or output of a WebGPU apply: a host array, or a GPU buffer on the backend's device. */
export type GpuData = CallData

/** A layer on the WebGPU backend: {@link BackendLayer} whose apply always returns a promise. */
export interface WebGpuLayer extends BackendLayer {
  apply(x: GpuData, y: GpuData, plan: SegmentPlan): Promise<void>
  /** Record the call into the caller's encoder or open compute pass (GPU-resident x and y; no submit, no wait). */
  encode(encoder: EncodeTarget, x: GPUBuffer, y: GPUBuffer, plan: SegmentPlan): void
}

/** The WebGPU backend: a {@link Backend} that always has its device. */
export interface WebGpuBackend extends Backend {
  readonly name: 'webgpu'
  readonly device: GPUDevice
  /** The tile family its kernels use: 'software' (CPU adapters) or 'discrete' (GPUs). */
  readonly kernels: import('./programs/program.js').KernelProfile
  createLayer(spec: LayerSpec): WebGpuLayer
}
