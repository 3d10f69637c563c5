import type { Backend, BackendLayer, CallData } from '../backend.js'
import type { SegmentPlan } from '../metadata.js'
import type { LayerSpec } from '../types.js'

/** Input or output of a WebGPU apply: a host array, or a GPU buffer on the backend's device. */
export type GpuData = CallData

/** A layer on the WebGPU backend: {@link BackendLayer} whose apply always returns a promise. */
export interface WebGpuLayer extends BackendLayer {
  apply(x: GpuData, y: GpuData, plan: SegmentPlan): Promise<void>
}

/** The WebGPU backend: a {@link Backend} that always has its device. */
export interface WebGpuBackend extends Backend {
  readonly name: 'webgpu'
  readonly device: GPUDevice
  createLayer(spec: LayerSpec): WebGpuLayer
}
