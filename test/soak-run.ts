/**
 * The soak: many PEFT adapters written to disk (adapter_config.json + adapter_model.safetensors),
 * loaded by path into one runtime whose pool budget holds only a fraction of them, then many
 * random mixed batches (single adapters, pairs, no adapter; hot and cold adapters; every backend)
 * through rt.apply, each result checked against the float64 reference. Used by test/soak.test.ts
 * (a short configuration in CI) and bench/soak.ts (`npm run soak`, the full one).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { encodeHalf } from '../src/dtype.js'
import { createRuntime, LoraError, writeSafetensors, type BackendChoice, type TokenAdapters } from '../src/index.js'
import type { TensorToWrite } from '../src/peft/safetensors.js'
import { Rng } from './random.js'
import { roundWeights, sgmv, type RefAdapter } from './reference.js'

export interface SoakConfig {
  adapters: number
  batches: number
  /** Pool budget as a fraction of all adapters' f32 bytes. */
  budgetFraction: number
  /** Calls in flight at once. */
  concurrency: number
  seed: number
  /** Called every `progressEvery` batches. */
  onProgress?: (done: number, r: SoakReport) => void
  progressEvery?: number
  /** Runtime backend (default 'auto': every backend, forced and auto, in turn). */
  backend?: BackendChoice
}

export interface SoakReport {
  adapters: number
  adapterBytes: number
  memoryBudget: number
  backends: string[]
  calls: number
  /** Calls per backend choice. */
  byBackend: Record<string, number>
  wrong: number
  /** LoraErrors by code (none expected). */
  errors: Record<string, number>
  /** First failures, with the input that failed. */
  failures: string[]
  hits: number
  misses: number
  evictions: number
  reloads: number
  maxResidentAdapters: number
  /** Distinct adapters per batch, at most (so that the batches in flight fit the budget together). */
  maxDistinctPerBatch: number
  rssStartMB: number
  rssAfterWarmupMB: number
  rssPeakMB: number
  rssEndMB: number
  /** RSS at the end minus after the warm-up (first 10% of batches). */
  rssGrowthMB: number
  /** Whether a full garbage collection ran before each memory reading (globalThis.gc, node --expose-gc). */
  gc: boolean
  heapGrowthMB: number
  writeSeconds: number
  loadSeconds: number
  runSeconds: number
}

/** The modules every adapter may target, with their shapes (in/out 32..64). */
const MODULES: [path: string, inF: number, outF: number][] = [
  ['model.layers.0.self_attn.q_proj', 48, 48],
  ['model.layers.0.self_attn.v_proj', 48, 32],
  ['model.layers.0.mlp.up_proj', 48, 64],
  ['model.layers.1.self_attn.q_proj', 48, 48],
  ['model.layers.1.mlp.down_proj', 64, 48],
]

interface AdapterModel {
  name: string
  modules: Map<string, RefAdapter>
  bytes: number
}

/** Write adapter i to dir/ai as PEFT does; return its weights as the kernels will see them. */
async function writeAdapter(dir: string, i: number, rng: Rng): Promise<AdapterModel> {
  const name = `a${i}`
  const r = 1 + rng.int(8)
  const alpha = [r, 2 * r, 16, 32][rng.int(4)]
  const rslora = rng.next() < 0.2
  const dtype = (['F32', 'F16', 'BF16'] as const)[rng.int(3)]
  let chosen = MODULES.filter(() => rng.next() < 0.6)
  if (chosen.length === 0) chosen = [rng.pick(MODULES)]
  const tensors = new Map<string, TensorToWrite>()
  const modules = new Map<string, RefAdapter>()
  let bytes = 0
  for (const [path, inF, outF] of chosen) {
    const A = rng.array(r * inF, 1 / Math.sqrt(inF))
    const B = rng.array(outF * r, 0.2)
    for (const [k, v, shape] of [
      ['A', A, [r, inF]],
      ['B', B, [outF, r]],
    ] as const) {
      tensors.set(
        `base_model.model.${path}.lora_${k}.weight`,
        dtype === 'F32'
          ? { dtype, shape: [...shape], data: v }
          : { dtype, shape: [...shape], data: encodeHalf(v, dtype === 'F16' ? 'f16' : 'bf16') },
      )
    }
    const round = (v: Float32Array): Float32Array => (dtype === 'F32' ? v : roundWeights(v, dtype === 'F16' ? 'f16' : 'bf16'))
    modules.set(path, { rank: r, scale: rslora ? alpha / Math.sqrt(r) : alpha / r, A: [round(A)], B: [round(B)] })
    bytes += (A.length + B.length) * 4
  }
  const config = {
    peft_type: 'LORA',
    r,
    lora_alpha: alpha,
    use_rslora: rslora,
    target_modules: [...new Set(chosen.map(([p]) => p.split('.').at(-1)))],
    // only the chosen modules: other layers' modules of the same name are not in the file
    layers_to_transform: null,
    rank_pattern: {},
    alpha_pattern: {},
    bias: 'none',
    lora_dropout: 0.05,
    task_type: 'CAUSAL_LM',
  }
  const at = join(dir, name)
  await mkdir(at)
  await writeFile(join(at, 'adapter_config.json'), JSON.stringify(config))
  await writeFile(join(at, 'adapter_model.safetensors'), writeSafetensors(tensors, { format: 'pt' }))
  return { name, modules, bytes }
}

const mb = (b: number): number => Math.round((b / 2 ** 20) * 10) / 10

export async function runSoak(cfg: SoakConfig): Promise<SoakReport> {
  const rng = new Rng(cfg.seed)
  const rssStart = process.memoryUsage().rss
  const dir = await mkdtemp(join(tmpdir(), 'multilora-soak-'))
  const t0 = performance.now()
  const models: AdapterModel[] = []
  for (let i = 0; i < cfg.adapters; i++) models.push(await writeAdapter(dir, i, rng))
  const t1 = performance.now()
  const adapterBytes = models.reduce((s, m) => s + m.bytes, 0)
  const memoryBudget = Math.floor(adapterBytes * cfg.budgetFraction)
  // Slots are plentiful: the byte budget is what limits residency.
  const rt = await createRuntime({ backend: cfg.backend ?? 'auto', memoryBudget, adapterSlots: 256 })
  const report: SoakReport = {
    adapters: cfg.adapters,
    adapterBytes,
    memoryBudget,
    backends: rt.backends,
    calls: 0,
    byBackend: {},
    wrong: 0,
    errors: {},
    failures: [],
    hits: 0,
    misses: 0,
    evictions: 0,
    reloads: 0,
    maxResidentAdapters: 0,
    maxDistinctPerBatch: 0,
    rssStartMB: mb(rssStart),
    rssAfterWarmupMB: 0,
    rssPeakMB: 0,
    rssEndMB: 0,
    rssGrowthMB: 0,
    gc: false,
    heapGrowthMB: 0,
    writeSeconds: (t1 - t0) / 1000,
    loadSeconds: 0,
    runSeconds: 0,
  }
  const gc = (globalThis as { gc?: () => void }).gc
  report.gc = typeof gc === 'function'
  try {
    for (const m of models) await rt.loadAdapter(m.name, join(dir, m.name))
    const t2 = performance.now()
    report.loadSeconds = (t2 - t1) / 1000
    const byName = new Map(models.map((m) => [m.name, m]))
    const hot = models.slice(0, Math.max(1, Math.floor(cfg.adapters / 20)))
    // Running calls keep their adapters resident, so the adapters of all calls in flight must fit
    // the budget together (else OUT_OF_MEMORY, by design): cap the distinct adapters per batch.
    const largest = Math.max(...models.map((m) => m.bytes))
    const maxDistinct = Math.max(2, Math.floor(memoryBudget / (cfg.concurrency * largest)))
    report.maxDistinctPerBatch = maxDistinct
    const draw = (): AdapterModel => (rng.next() < 0.5 ? rng.pick(hot) : rng.pick(models))
    const choices: BackendChoice[] = [...rt.backends, 'auto']
    let rssWarm = 0
    let heapWarm = 0
    let peak = 0

    const one = async (i: number): Promise<void> => {
      const [module, inF, outF] = rng.pick(MODULES)
      const T = 1 + rng.int(8)
      const tokens: TokenAdapters[] = []
      const batch = new Set<AdapterModel>()
      const pickAdapter = (): AdapterModel => {
        const a = batch.size < maxDistinct ? draw() : rng.pick([...batch])
        batch.add(a)
        return a
      }
      for (let t = 0; t < T; t++) {
        const u = rng.next()
        if (u < 0.1) tokens.push(null)
        else if (u < 0.85) tokens.push(pickAdapter().name)
        else {
          const a = pickAdapter()
          const b = pickAdapter()
          tokens.push(b === a ? a.name : [a.name, b.name])
        }
      }
      const backend = rng.pick(choices)
      const x = rng.array(T * inF)
      const y0 = rng.array(T * outF)
      const y = new Float32Array(y0)
      report.calls++
      report.byBackend[backend] = (report.byBackend[backend] ?? 0) + 1
      const label = `batch ${i}: ${module} ${backend} tokens ${JSON.stringify(tokens)}`
      try {
        await rt.apply(module, x, y, tokens, { backend })
      } catch (e) {
        const code = e instanceof LoraError ? e.code : `not a LoraError: ${(e as Error)?.name}`
        report.errors[code] = (report.errors[code] ?? 0) + 1
        if (report.failures.length < 10) report.failures.push(`${label}: ${(e as Error)?.message}`)
        return
      }
      // reference: the named adapters that target this module, summed per token
      const used: AdapterModel[] = []
      const K = 2
      const ids = new Int32Array(T * K).fill(-1)
      tokens.forEach((tok, t) => {
        const names = tok == null ? [] : typeof tok === 'string' ? [tok] : (tok as string[])
        let k = 0
        for (const n of names) {
          const m = byName.get(n)!
          if (!m.modules.has(module)) continue
          let slot = used.indexOf(m)
          if (slot < 0) slot = used.push(m) - 1
          ids[t * K + k++] = slot
        }
      })
      const refs = used.map((m) => m.modules.get(module)!)
      const ref = sgmv({ inFeatures: inF, sliceWidths: [outF], adapters: refs }, x, ids, K)
      // The same sums over |terms|: the scale of f32 rounding in each output.
      const abs = (a: Float32Array): Float32Array => a.map(Math.abs)
      const mag = sgmv(
        {
          inFeatures: inF,
          sliceWidths: [outF],
          adapters: refs.map((a) => ({ rank: a.rank, scale: Math.abs(a.scale), A: a.A.map(abs), B: a.B.map(abs) })),
        },
        abs(x),
        ids,
        K,
      )
      // bf16/f16 weights are compared after the same rounding, so f32 accumulation order is all
      // that differs: allowed is 1e-5 of the largest |delta| (as in the kernel tests), or the f32
      // worst case of a <= 64-term dot product (64 u sum|terms|) where cancellation makes that
      // larger, plus one ulp of y for y + delta itself. Rows with no delta must stay bit-exact.
      let scale = 0
      for (let j = 0; j < ref.length; j++) scale = Math.max(scale, Math.abs(ref[j]))
      let at = -1
      for (let j = 0; j < ref.length && at < 0; j++) {
        const err = Math.abs(y[j] - y0[j] - ref[j])
        const allowed = mag[j] === 0 ? 0 : Math.max(1e-5 * scale, 64 * 2 ** -24 * mag[j]) + 2 ** -23 * Math.abs(y0[j])
        if (!(err <= allowed)) at = j
      }
      if (at >= 0) {
        report.wrong++
        if (report.failures.length < 10)
          report.failures.push(`${label}: y[${at}] got delta ${y[at] - y0[at]}, reference ${ref[at]} (max |delta| ${scale})`)
      }
    }

    let next = 0
    const warmupAt = Math.floor(cfg.batches / 10)
    const worker = async (): Promise<void> => {
      while (next < cfg.batches) {
        const i = next++
        await one(i)
        const done = i + 1
        if (done % 50 === 0 || done === cfg.batches) {
          const s = rt.stats()
          report.maxResidentAdapters = Math.max(report.maxResidentAdapters, s.residentAdapters)
          if (s.bytesResident > memoryBudget) {
            report.wrong++
            report.failures.push(`batch ${i}: ${s.bytesResident} bytes resident exceed the budget of ${memoryBudget}`)
          }
          peak = Math.max(peak, process.memoryUsage().rss)
        }
        if (done === warmupAt) {
          gc?.()
          rssWarm = process.memoryUsage().rss
          heapWarm = process.memoryUsage().heapUsed
        }
        if (cfg.onProgress && done % (cfg.progressEvery ?? 1000) === 0) cfg.onProgress(done, report)
      }
    }
    await Promise.all(Array.from({ length: cfg.concurrency }, worker))
    gc?.()
    const end = process.memoryUsage()
    report.runSeconds = (performance.now() - t2) / 1000
    const s = rt.stats()
    Object.assign(report, { hits: s.hits, misses: s.misses, evictions: s.evictions, reloads: s.reloads })
    report.rssAfterWarmupMB = mb(rssWarm)
    report.rssPeakMB = mb(Math.max(peak, end.rss))
    report.rssEndMB = mb(end.rss)
    report.rssGrowthMB = mb(end.rss - rssWarm)
    report.heapGrowthMB = mb(end.heapUsed - heapWarm)
    return report
  } finally {
    rt.dispose()
    await rm(dir, { recursive: true, force: true })
  }
}
