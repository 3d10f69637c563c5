/**
 * The main job on bundled data (npm start):
 *  1. load two real PEFT adapters (test/fixtures/peft/tiny-llama-public), run PEFT's recorded
 *     mixed batch through every LoRA-wrapped module on every backend, check y against PEFT's own
 *     outputs;
 *  2. a serving-sized mixed batch (QKV 4096/1024/1024, 8 adapters of rank 16, 64 tokens, some
 *     with no adapter) through the kernels, checked against the float64 reference, with timings;
 *  3. a whole model (examples/llama on test/fixtures/peft/tiny-llama-e2e: a random Llama, three
 *     PEFT adapters, one with embedding and lm_head LoRA): the mixed batch's logits and greedy
 *     generations per adapter, beside PEFT's own.
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { createRuntime, readSafetensors } from '../src/index.js'
import { roundToDtype } from '../src/dtype.js'
import { Rng } from '../test/random.js'
import { sgmv, type RefAdapter } from '../test/reference.js'
import { runBatch } from './llama/main.js'

const DIR = fileURLToPath(new URL('../test/fixtures/peft/tiny-llama-public/', import.meta.url))

function relErr(got: Float32Array, before: Float32Array | Float64Array, want: Float32Array | Float64Array): number {
  let err = 0
  let scale = 0
  for (let i = 0; i < got.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]))
    scale = Math.max(scale, Math.abs(want[i] - before[i]))
  }
  return scale > 0 ? err / scale : err
}

async function median(fn: () => Promise<void>, reps = 15): Promise<number> {
  // warm up for 300 ms first: V8 runs new wasm code in its baseline compiler (about 2x slower)
  // until the optimizing tier has compiled it
  for (const t0 = performance.now(); performance.now() - t0 < 300; ) await fn()
  const t: number[] = []
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now()
    await fn()
    t.push(performance.now() - t0)
  }
  return t.sort((a, b) => a - b)[reps >> 1]
}

const rt = await createRuntime({ backend: 'auto' })
console.log(
  `multilora: backends ${rt.backends.join(', ')} (wasm ${rt.wasmVariant}${rt.webgpuUnavailableReason ? `; webgpu: ${rt.webgpuUnavailableReason}` : ''})`,
)
let failures = 0

// 1. PEFT adapters against PEFT's outputs
const manifest = JSON.parse(await readFile(`${DIR}manifest.json`, 'utf8')) as { token_adapter: string[]; modules: string[] }
const oracle = readSafetensors(new Uint8Array(await readFile(`${DIR}oracle.safetensors`)), 'oracle.safetensors').tensors
for (const name of ['math', 'code']) {
  const info = await rt.loadAdapter(name, `${DIR}adapters/${name}`)
  console.log(
    `loaded ${name}: ${info.modules.length} modules, rank ${[...new Set(info.ranks)].join('/')}, ${info.dtype}, ${(info.bytes / 1024).toFixed(0)} KiB`,
  )
}
const tokens = manifest.token_adapter.map((a) => (a === '__base__' ? null : a))
console.log(`PEFT batch: ${tokens.length} tokens (${tokens.map((a) => a ?? '-').join(' ')})`)
for (const backend of rt.backends) {
  let worst = 0
  const t0 = performance.now()
  for (const m of manifest.modules) {
    const x = oracle.get(`${m}.x`)!.data as Float32Array
    const base = oracle.get(`${m}.base`)!.data as Float32Array
    const want = oracle.get(`${m}.y`)!.data as Float32Array
    const y = new Float32Array(base)
    await rt.apply(m, x, y, tokens, { backend })
    worst = Math.max(worst, relErr(y, base, want))
  }
  const ms = performance.now() - t0
  const ok = worst <= 1e-5
  if (!ok) failures++
  console.log(
    `  ${backend}: ${manifest.modules.length} modules in ${ms.toFixed(1)} ms, worst relative error vs PEFT ${worst.toExponential(2)} ${ok ? 'OK' : 'FAIL'}`,
  )
}

// 2. a serving-sized mixed batch against the float64 reference
const rng = new Rng(2024)
const inF = 4096
const widths = [4096, 1024, 1024]
const D = 8
const rank = 16
const T = 64
const refAdapters: RefAdapter[] = []
const layers = rt.backends.map((backend) => ({
  backend,
  layer: rt.createLayer({ inFeatures: inF, outFeatures: widths, maxAdapters: D, maxRank: rank, weightDtype: 'bf16' }),
}))
for (let a = 0; a < D; a++) {
  const A = widths.map(() => rng.array(rank * inF, 1 / 64))
  const B = widths.map((n) => rng.array(n * rank, 0.05))
  for (const { layer } of layers) layer.setAdapter(a, { rank, scale: 2, A, B })
  refAdapters.push({ rank, scale: 2, A: A.map((v) => roundToDtype(v, 'bf16')), B: B.map((v) => roundToDtype(v, 'bf16')) })
}
const ids = Int32Array.from({ length: T }, () => (rng.next() < 0.15 ? -1 : rng.int(D)))
const x = rng.array(T * inF)
const y0 = rng.array(T * 6144)
const delta = sgmv({ inFeatures: inF, sliceWidths: widths, adapters: refAdapters }, x, ids)
const want = Float64Array.from(y0, (v, i) => v + delta[i])
const flops = 2 * [...ids].filter((i) => i >= 0).length * rank * (inF * 3 + 6144)
console.log(`serving batch: QKV ${widths.join('/')}, ${D} adapters of rank ${rank} (bf16), ${T} tokens`)
for (const { backend, layer } of layers) {
  const y = new Float32Array(y0)
  await layer.apply(x, y, ids, { backend })
  const err = relErr(y, y0, want)
  const ok = err <= 1e-5
  if (!ok) failures++
  const ms = await median(() => layer.apply(x, new Float32Array(y0), ids, { backend }))
  console.log(
    `  ${backend}: ${ms.toFixed(3)} ms (${(flops / ms / 1e6).toFixed(1)} GFLOP/s), relative error vs reference ${err.toExponential(2)} ${ok ? 'OK' : 'FAIL'}`,
  )
}
// 3. a whole model against PEFT (another model: its module paths name other shapes)
for (const name of ['math', 'code']) rt.unloadAdapter(name)
const E2E = fileURLToPath(new URL('../test/fixtures/peft/tiny-llama-e2e/', import.meta.url))
const peft = JSON.parse(await readFile(`${E2E}batch.json`, 'utf8')) as {
  input_ids: number[][]
  adapter_names: string[]
  generated_ids: number[][]
  max_new_tokens: number
}
const raw = await readFile(`${E2E}logits.f32`)
const peftLogits = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))
const largest = peftLogits.reduce((m, v) => Math.max(m, Math.abs(v)), 0)
console.log(
  `whole model (examples/llama): ${peft.input_ids.length} sequences x ${peft.input_ids[0].length} prompt tokens, ${peft.max_new_tokens} greedy tokens each`,
)
for (const backend of rt.backends) {
  const t0 = performance.now()
  const got = await runBatch(rt, E2E, backend)
  const ms = performance.now() - t0
  let err = 0
  for (let i = 0; i < peftLogits.length; i++) err = Math.max(err, Math.abs(got.logits[i] - peftLogits[i]))
  const same = got.generated_ids.map((ids, s) => ids.join() === peft.generated_ids[s].join())
  const ok = err <= 1e-4 * largest && same.every((v) => v)
  if (!ok) failures++
  console.log(
    `  ${backend}: ${ms.toFixed(0)} ms, max logit error vs PEFT ${err.toExponential(2)} (of max |logit| ${largest.toFixed(2)}) ${ok ? 'OK' : 'FAIL'}`,
  )
  peft.adapter_names.forEach((name, s) => {
    const prompt = peft.input_ids[s].length
    const ours = got.generated_ids[s].slice(prompt).join(' ')
    const theirs = peft.generated_ids[s].slice(prompt).join(' ')
    console.log(`    ${name.padEnd(8)} multilora ${ours.padEnd(32)} PEFT ${theirs.padEnd(32)} ${same[s] ? 'same' : 'DIFFERENT'}`)
  })
}
rt.dispose()
if (failures > 0) {
  console.error(`${failures} check(s) failed`)
  process.exit(1)
}
