/**
 * A whole model through multilora: examples/llama on test/fixtures/peft/tiny-llama-e2e (a random
 * Llama, three PEFT adapters, one with embedding and lm_head LoRA) must reproduce PEFT's logits of
 * the mixed batch (max abs error <= 1e-4 x the largest |logit|) and its greedy generations
 * exactly, on every backend.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntime, readSafetensors, type Runtime } from '../src/index.js'
import { runBatch, type Result } from '../examples/llama/main.js'
import { expectLoraError } from './compare.js'
import { has } from './needs.js'

const DIR = fileURLToPath(new URL('./fixtures/peft/tiny-llama-e2e/', import.meta.url))
const batch = JSON.parse(readFileSync(join(DIR, 'batch.json'), 'utf8')) as {
  generated_ids: number[][]
  logits_shape: number[]
  lora_effect_max_abs: number
}
const raw = readFileSync(join(DIR, 'logits.f32'))
const peftLogits = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))

function expectPeft(result: Result, label: string): void {
  expect(result.logits.length, label).toBe(batch.logits_shape.reduce((a, b) => a * b, 1))
  let largest = 0
  let worst = 0
  let at = 0
  for (let i = 0; i < peftLogits.length; i++) {
    largest = Math.max(largest, Math.abs(peftLogits[i]))
    const err = Math.abs(result.logits[i] - peftLogits[i])
    if (!(err <= worst)) (worst = err), (at = i)
  }
  // the adapters move logits by far more than the tolerance: a missing delta cannot pass
  expect(batch.lora_effect_max_abs).toBeGreaterThan(100 * 1e-4 * largest)
  expect(worst, `${label}: logit ${at} is ${result.logits[at]}, PEFT's ${peftLogits[at]}`).toBeLessThanOrEqual(1e-4 * largest)
  expect(result.generated_ids, label).toEqual(batch.generated_ids)
}

const gpuHere = await has('webgpu', 'skipped its WebGPU part')

describe.each(gpuHere ? (['wasm', 'webgpu'] as const) : (['wasm'] as const))('examples/llama on %s reproduces PEFT', (backend) => {
  let rt: Runtime
  beforeAll(async () => {
    rt = await createRuntime({ backend })
  })
  afterAll(() => rt?.dispose())

  it("the mixed batch's logits and greedy generations", async () => {
    expectPeft(await runBatch(rt, DIR, backend), backend)
    // embedding and lm_head LoRA were loaded, and the base weights the file carries are exposed
    const beta = rt.listAdapters().find((a) => a.name === 'beta')!
    expect(beta.embeddings).toEqual(['model.embed_tokens'])
    expect(beta.modules).toContain('lm_head')
    expect([...beta.baseWeights].sort()).toEqual(['lm_head', 'model.embed_tokens'])
    expect(rt.listAdapters().find((a) => a.name === 'alpha')!.baseWeights).toEqual([])
    const base = readSafetensors(new Uint8Array(readFileSync(join(DIR, 'base/model.safetensors')))).tensors
    const saved = await rt.baseWeights('beta')
    expect(saved.get('lm_head')!.shape).toEqual([128, 64])
    expect(saved.get('lm_head')!.data).toEqual(base.get('lm_head.weight')!.data)
    expect(saved.get('model.embed_tokens')!.data).toEqual(base.get('model.embed_tokens.weight')!.data)
  })

  it('rt.apply on the embedding module: token ids, { name, weight }, and bad x', async () => {
    await rt.loadAdapter('beta', join(DIR, 'adapters/beta'))
    const ids = Int32Array.of(5, 0, 127)
    const full = new Float32Array(3 * 64)
    await rt.apply('model.embed_tokens', ids, full, ['beta', null, 'beta'], { backend })
    const half = new Float32Array(3 * 64)
    await rt.apply('model.embed_tokens', ids, half, [{ name: 'beta', weight: 0.5 }, null, [{ name: 'beta', weight: -2 }]], { backend })
    expect(full.slice(64, 128)).toEqual(new Float32Array(64)) // no adapter: untouched
    for (let i = 0; i < 64; i++) {
      expect(Math.abs(full[i])).toBeGreaterThan(0)
      expect(half[i]).toBeCloseTo(0.5 * full[i], 6)
      expect(half[128 + i]).toBeCloseTo(-2 * full[128 + i], 5)
    }
    const y = new Float32Array(3 * 64)
    await expectLoraError(
      () => rt.apply('model.embed_tokens', new Float32Array(3 * 128), y, ['beta', null, null], { backend }),
      'INVALID_ARGUMENT',
      ['token ids'],
    )
    await expectLoraError(
      () => rt.apply('model.embed_tokens', Int32Array.of(1, 2), y, ['beta', null, null], { backend }),
      'SHAPE_MISMATCH',
      ['x [3 * 1]'],
    )
    await expectLoraError(
      () => rt.apply('model.embed_tokens', Int32Array.of(1, 2, 128), y, ['beta', null, null], { backend }),
      'OUT_OF_RANGE',
      ['x[2] = 128'],
    )
    await expectLoraError(() => rt.apply('lm_head', Int32Array.of(1, 2, 3), y, ['beta', null, null], { backend }), 'INVALID_ARGUMENT', [
      'Float32Array',
    ])
    expect(y).toEqual(new Float32Array(3 * 64))
  })
})

it('the command line writes the result file', () => {
  const out = join(mkdtempSync(join(tmpdir(), 'llama-')), 'result.json')
  const main = fileURLToPath(new URL('../examples/llama/main.ts', import.meta.url))
  const run = spawnSync(process.execPath, ['--import', 'tsx', main, DIR, '--backend', 'wasm', '--out', out], {
    encoding: 'utf8',
    timeout: 120_000,
  })
  expect(run.status, run.stderr).toBe(0)
  expectPeft(JSON.parse(readFileSync(out, 'utf8')) as Result, 'cli')
  expect(run.stdout.trim().split('\n')).toEqual(batch.generated_ids.map((ids) => ids.join(' ')))
})
