/**
 * The package's `workerd` export (Cloudflare Workers; wrangler resolves it). Workers forbid
 * `WebAssembly.compile(bytes)`, so both kernel builds are imported here as compiled modules
 * (wrangler and miniflare turn a `.wasm` import into a WebAssembly.Module) and handed to
 * createRuntime. Everything else is the default entry unchanged.
 */
import relaxed from '../build/multilora-relaxed.wasm'
import simd from '../build/multilora-simd.wasm'
import { createRuntime as createAnyRuntime, type Runtime, type RuntimeOptions } from './runtime.js'

export * from './index.js'

/**
 * {@link createAnyRuntime} with the kernels imported as modules. Workers have WebAssembly SIMD but
 * no WebGPU and no threads: `backend: 'auto'` yields `['wasm']`.
 */
export function createRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  if (typeof options !== 'object' || options === null) return createAnyRuntime(options)
  return createAnyRuntime({ ...options, wasm: options.wasm ?? { simd, relaxed } })
}
