// A Cloudflare Worker applying a mixed-adapter batch: POST { module, tokens, x, y } -> { y, ... }.
// `tokens[t]` names token t's adapter, a list of adapters (their deltas are summed) or null;
// x is [T * inFeatures], y the base layer's output [T * outFeatures], returned with the LoRA
// deltas added. The PEFT adapters are bundled with the worker (wrangler.toml: a Data rule for
// .safetensors). test/runtimes/workerd.test.ts bundles this file as wrangler does and serves it
// with workerd.
import { createRuntime, LoraError } from 'multilora' // the "workerd" export: the kernels come as wasm modules
import codeConfig from './adapters/code/adapter_config.json'
import codeWeights from './adapters/code/adapter_model.safetensors'
import mathConfig from './adapters/math/adapter_config.json'
import mathWeights from './adapters/math/adapter_model.safetensors'

let runtime = null // created by the first request, reused by the next ones in this isolate

function getRuntime() {
  runtime ??= (async () => {
    // backends: ['wasm'] (Workers have WebAssembly SIMD, no WebGPU); threads: 'auto' is portable
    // code: Workers have no threads, so this runs on one, and rt.threadsUnavailableReason says so
    const rt = await createRuntime({ threads: 'auto' })
    await rt.loadAdapter('math', { config: mathConfig, weights: new Uint8Array(mathWeights) })
    await rt.loadAdapter('code', { config: codeConfig, weights: new Uint8Array(codeWeights) })
    return rt
  })().catch((e) => {
    runtime = null // let the next request try again
    throw e
  })
  return runtime
}

export default {
  async fetch(request) {
    if (request.method !== 'POST') return Response.json({ error: 'POST { module, tokens, x, y }' }, { status: 405 })
    try {
      const { module, tokens, x, y } = await request.json()
      const rt = await getRuntime()
      const out = Float32Array.from(y)
      await rt.apply(module, Float32Array.from(x), out, tokens)
      const { backends, wasmVariant, webgpuUnavailableReason, threads, threadsUnavailableReason } = rt
      return Response.json({ backends, wasmVariant, webgpuUnavailableReason, threads, threadsUnavailableReason, y: Array.from(out) })
    } catch (e) {
      const status = e instanceof LoraError ? 400 : 500
      return Response.json({ error: String(e?.message ?? e), code: e?.code ?? null }, { status })
    }
  },
}
