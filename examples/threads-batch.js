// The mixed-adapter batch of mixed-batch.js on the multi-threaded wasm backend: two threads where
// the runtime has them (Node, Deno, Bun, cross-origin isolated pages), one thread elsewhere, with
// the reason. The same file runs unchanged in each (test/runtimes/threads.test.ts); it expects
// the PEFT adapter directories math/ and code/ in ./adapters/ next to it.
import { createRuntime } from 'multilora'

const rt = await createRuntime({ backend: 'wasm', threads: 2, threadsMinWork: 0 }) // every call cut over both threads, even these small ones
for (const name of ['math', 'code']) {
  await rt.loadAdapter(name, new URL(`./adapters/${name}/`, import.meta.url))
}

const module = 'model.layers.0.self_attn.q_proj'
const tokens = ['math', 'code', null, ['math', 'code'], 'code', 'math']
const x = Float32Array.from({ length: tokens.length * 256 }, (_, i) => ((i * 37) % 101) / 50 - 1)
const y = new Float32Array(tokens.length * 256)
await rt.apply(module, x, y, tokens)
y.fill(0)
const t0 = performance.now()
await rt.apply(module, x, y, tokens)
const ms = performance.now() - t0
const runtime = 'Deno' in globalThis ? 'deno' : 'Bun' in globalThis ? 'bun' : 'document' in globalThis ? 'browser' : 'node'
const { backends, wasmVariant, webgpuUnavailableReason, threads, threadsUnavailableReason } = rt
rt.dispose() // ends the worker threads: the process can exit
export const report = {
  runtime,
  backends,
  wasmVariant,
  webgpuUnavailableReason,
  threads,
  threadsUnavailableReason,
  module,
  tokens,
  results: [{ backend: 'wasm', ms, y: Array.from(y) }],
}
console.log(JSON.stringify(report))
