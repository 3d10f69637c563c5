// A mixed-adapter batch through one PEFT module, on every backend this runtime has.
// The same file runs unchanged in Node, Deno, Bun and browsers (test/runtimes/*.test.ts run it
// in each); it expects the PEFT adapter directories math/ and code/ in ./adapters/ next to it.
import { createRuntime } from 'multilora'

const rt = await createRuntime() // wasm everywhere; webgpu where there is a GPU (navigator.gpu or Dawn)
for (const name of ['math', 'code']) {
  await rt.loadAdapter(name, new URL(`./adapters/${name}/`, import.meta.url)) // file: or http(s): URL
}

// 6 tokens of a q_proj (256 -> 256): one adapter, the other, none, or the sum of both
const module = 'model.layers.0.self_attn.q_proj'
const tokens = ['math', 'code', null, ['math', 'code'], 'code', 'math']
const x = Float32Array.from({ length: tokens.length * 256 }, (_, i) => ((i * 37) % 101) / 50 - 1)
const results = []
for (const backend of rt.backends) {
  const y = new Float32Array(tokens.length * 256) // the base layer's output; 0 here, so y = the LoRA delta
  await rt.apply(module, x, y, tokens, { backend }) // first call: uploads the adapters
  y.fill(0)
  const t0 = performance.now()
  await rt.apply(module, x, y, tokens, { backend })
  results.push({ backend, ms: performance.now() - t0, y: Array.from(y) })
}
const runtime = 'Deno' in globalThis ? 'deno' : 'Bun' in globalThis ? 'bun' : 'document' in globalThis ? 'browser' : 'node'
const { backends, wasmVariant, webgpuUnavailableReason } = rt
rt.dispose()
export const report = { runtime, backends, wasmVariant, webgpuUnavailableReason, module, tokens, results }
console.log(JSON.stringify(report))
