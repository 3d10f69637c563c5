import type { Backend, BackendLayer } from '../backend.js'
import type { SegmentPlan } from '../metadata.js'

/** Input or output of a WebGPU apply: a host array, or a GPU buffer on the backend's device. */
export type GpuData = Float32Array | GPUBuffer

/** A layer on the WebGPU backend. */
export interface WebGpuLayer extends BackendLayer {
  /**
   * y[row] += delta for every entry of the plan.
   * @param x [T * inFeatures] f32: a host array, or a GPUBuffer with STORAGE usage.
   * @param y [T * outFeatures] f32, updated in place. A host array is read back and left untouched
   *   if the call throws; a GPUBuffer (STORAGE usage) is updated on the GPU, in queue order, with
   *   no readback (the returned promise resolves once the work is submitted).
   */
  apply(x: GpuData, y: GpuData, plan: SegmentPlan): Promise<void>
  /** Record the call into the caller's encoder (GPU-resident x and y; no submit, no wait). */
  encode(encoder: GPUCommandEncoder, x: GPUBuffer, y: GPUBuffer, plan: SegmentPlan): void
}

/** The WebGPU backend: a {@link Backend} with its device. */
export interface WebGpuBackend extends Backend {
  readonly name: 'webgpu'
  readonly device: GPUDevice
  /** The adapter is a CPU implementation (e.g. lavapipe, SwiftShader). */
  readonly isSoftware: boolean
  /** The tile family its kernels use: 'software' (CPU adapters) or 'discrete' (GPUs). */
  readonly kernels: import('./programs/program.js').KernelProfile
  /** The device was lost (or destroyed): every later call throws LoraError 'DEVICE_LOST'. */
  readonly lost: boolean
  createLayer(spec: import('../types.js').LayerSpec): WebGpuLayer
}
