export { createRuntime, type Runtime, type RuntimeOptions } from './runtime.js'
export { LoraError, type LoraErrorCode } from './errors.js'
export type {
  AdapterWeights,
  ApplyOptions,
  BackendChoice,
  BackendName,
  EncodeTarget,
  HostArray,
  Layer,
  LayerOptions,
  LayerSpec,
  WeightDtype,
} from './types.js'
export { buildSegmentsChecked as buildSegments, type SegmentPlan } from './metadata.js'
export type { WasmModuleOptions, WasmSource } from './wasm/loader.js'
export type { AdapterInfo, AdapterSource, PoolStats, TokenAdapters, WeightedAdapter } from './pool/pool.js'
export type { BaseWeight } from './peft/adapter.js'
export { readSafetensors, writeSafetensors } from './peft/safetensors.js'
export type { Decision, ExplainRequest } from './dispatch/dispatch.js'
export type { Profile } from './dispatch/profile.js'
export type { ThreadsOption } from './wasm/threads/support.js'
