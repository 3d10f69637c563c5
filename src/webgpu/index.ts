export { createWebGpuBackend } from './backend.js'
export type { GpuData, WebGpuBackend, WebGpuLayer } from './types.js'
