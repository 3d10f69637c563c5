/**
 * A mixed batch through a whole Llama with multilora: every sequence has its own adapter (or
 * none), and every LoRA-wrapped module (embedding, projections, lm_head) adds the batch's deltas
 * in one call. Greedy decoding with a KV cache.
 *
 *   npx tsx examples/llama/main.ts <dir> [--backend wasm|webgpu] [--out result.json]
 *
 * <dir> holds base/ (config.json, model.safetensors), adapters/<name>/ (PEFT adapters) and
 * batch.json with input_ids [sequences][tokens], adapter_names [sequences] ('__base__' = none)
 * and max_new_tokens. Writes { logits: the prompt's logits flattened [sequence, position, vocab],
 * generated_ids: prompt + new tokens per sequence }.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createRuntime, type BackendName, type Runtime } from '../../src/index.js'
import { Llama, type TokenIn } from './model.js'

export interface Batch {
  input_ids: number[][]
  adapter_names: string[]
  max_new_tokens: number
}

export interface Result {
  logits: number[]
  generated_ids: number[][]
}

/** Run the batch of `dir` on `rt` (adapters/<name>/ loaded into it first). */
export async function runBatch(rt: Runtime, dir: string, backend: BackendName): Promise<Result> {
  const batch = JSON.parse(await readFile(join(dir, 'batch.json'), 'utf8')) as Batch
  for (const name of await readdir(join(dir, 'adapters'))) await rt.loadAdapter(name, join(dir, 'adapters', name))
  const adapterOf = batch.adapter_names.map((n) => (n === '__base__' ? null : n))
  // the adapter of each token of the current call, set before each forward
  let perToken: (string | null)[] = []
  const model = await Llama.load(join(dir, 'base'), (module, x, y) => rt.apply(module, x, y, perToken, { backend }))

  const run = (tokens: TokenIn[]): Promise<Float32Array> => {
    perToken = tokens.map((t) => adapterOf[t.seq])
    return model.forward(tokens)
  }
  const V = model.config.vocab
  const argmax = (logits: Float32Array, t: number): number => {
    let best = 0
    for (let i = 1; i < V; i++) if (logits[t * V + i] > logits[t * V + best]) best = i
    return best
  }
  // prefill: every prompt token of every sequence in one forward
  const prompt = batch.input_ids.flatMap((ids, seq) => ids.map((id) => ({ seq, id })))
  const logits = await run(prompt)
  const generated = batch.input_ids.map((ids) => [...ids])
  let last = 0
  let next = generated.map((ids) => argmax(logits, (last += ids.length) - 1))
  // decode: one new token per sequence per forward, attending over the cache
  for (let step = 0; step < batch.max_new_tokens; step++) {
    next.forEach((id, seq) => generated[seq].push(id))
    if (step === batch.max_new_tokens - 1) break
    const out = await run(next.map((id, seq) => ({ seq, id })))
    next = next.map((_, seq) => argmax(out, seq))
  }
  return { logits: Array.from(logits), generated_ids: generated }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  const opt = (name: string): string | undefined => {
    const i = args.indexOf(name)
    if (i < 0) return undefined
    const v = args[i + 1]
    args.splice(i, 2)
    return v
  }
  const backend = (opt('--backend') ?? 'wasm') as BackendName
  const out = opt('--out')
  if (args.length !== 1 || !['wasm', 'webgpu'].includes(backend)) {
    console.error('usage: npx tsx examples/llama/main.ts <dir> [--backend wasm|webgpu] [--out result.json]')
    process.exit(2)
  }
  const rt = await createRuntime({ backend })
  try {
    const result = await runBatch(rt, args[0], backend)
    if (out) await writeFile(out, JSON.stringify(result))
    for (const ids of result.generated_ids) console.log(ids.join(' '))
  } finally {
    rt.dispose()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main()
