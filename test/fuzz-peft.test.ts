/**
 * Property tests (fast-check) of everything that reads a PEFT adapter: adapter_config.json,
 * whole adapters through rt.loadAdapter (mutated configs and weight files), and sharded
 * checkpoints read from a URL (index + shards). Every case ends in success or a LoraError, in
 * bounded time, and a failed load changes nothing: listAdapters(), the pool counters and the
 * outputs of the adapters already loaded are as before. A load that succeeds is checked against
 * this file's own reading of the adapter: PEFT's config semantics in a few lines (peftModules) and
 * the weights from the test's own safetensors reader, nothing from parseAdapter. fast-check
 * prints the failing input and the seed to replay it (FUZZ_SEED=<seed>).
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createRuntime, LoraError, type Runtime } from '../src/index.js'
import { isTargeted, moduleScale, parseLoraConfig } from '../src/peft/config.js'
import { writeSafetensors, type TensorToWrite } from '../src/peft/safetensors.js'
import { encodeHalf } from '../src/dtype.js'
import { expectDelta } from './compare.js'
import { peftConfig } from './peft-helpers.js'
import { FUZZ_SEED, Rng } from './random.js'
import { readTensors } from './read-tensors.js'
import { sgmv } from './reference.js'

const runs = (n: number): fc.Parameters<unknown> => ({ numRuns: n, seed: FUZZ_SEED, endOnFailure: true })

/** Codes a bad adapter file may give. */
const FILE_CODES = [
  'INVALID_FILE',
  'UNSUPPORTED_FEATURE',
  'UNSUPPORTED_DTYPE',
  'NOT_FOUND',
  'SHAPE_MISMATCH',
  'OUT_OF_RANGE',
  'OUT_OF_MEMORY',
  'INVALID_ARGUMENT',
]

function asLoraError(e: unknown, allowed = FILE_CODES): LoraError {
  if (!(e instanceof LoraError)) throw new Error(`not a LoraError: ${(e as Error)?.name}: ${(e as Error)?.message}`, { cause: e })
  expect(allowed, e.message).toContain(e.code)
  return e
}

const FIELDS = [
  'r',
  'lora_alpha',
  'use_rslora',
  'rank_pattern',
  'alpha_pattern',
  'target_modules',
  'exclude_modules',
  'fan_in_fan_out',
  'layers_to_transform',
  'layers_pattern',
  'modules_to_save',
  'peft_type',
  'use_dora',
  'lora_bias',
  'target_parameters',
  'layer_replication',
  '__proto__',
  'constructor',
  'toString',
]
/** Values of every JSON type, plus the absurd numbers a config can hold. */
const valueArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    0,
    1,
    8,
    -1,
    1.5,
    1e9,
    65536,
    65537,
    2 ** 53,
    -0,
    'LORA',
    'IA3',
    '8',
    '',
    'all-linear',
    '(q',
    '.*',
    'q_proj',
    true,
    false,
    null,
  ),
  fc.constantFrom(
    ['q_proj'],
    ['q_proj', 'v_proj'],
    [1],
    [0, 1],
    ['1'],
    [],
    [null],
    { q_proj: 4 },
    { q_proj: 0 },
    { '(': 2 },
    { '.*': 1e9 },
    { v_proj: 'x' },
    {},
  ),
  fc.jsonValue({ maxDepth: 2 }),
)
const configArb = fc.dictionary(fc.constantFrom(...FIELDS), valueArb, { maxKeys: 6 }).map((over) => {
  const c = peftConfig()
  for (const [k, v] of Object.entries(over)) Object.defineProperty(c, k, { value: v, enumerable: true, writable: true, configurable: true })
  return c
})

describe('fuzz: adapter_config.json', () => {
  it('random field values, JSON text and garbage: a config or a LoraError; its queries never throw anything else', () => {
    const paths = ['model.layers.0.self_attn.q_proj', 'model.layers.1.mlp.up_proj', 'q_proj', 'a.b.c.d.0.e']
    let ok = 0
    fc.assert(
      fc.property(
        fc.oneof(
          { weight: 6, arbitrary: configArb },
          { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
          { weight: 1, arbitrary: fc.jsonValue() },
          { weight: 1, arbitrary: configArb.map((c) => JSON.stringify(c)) },
        ),
        (input) => {
          try {
            const c = parseLoraConfig(input)
            expect(Number.isSafeInteger(c.r) && c.r >= 1 && c.r <= 65536).toBe(true)
            expect(Number.isFinite(c.loraAlpha)).toBe(true)
            for (const p of paths) {
              try {
                const { rank, scale } = moduleScale(c, p)
                expect(rank).toBeGreaterThanOrEqual(1)
                expect(Number.isFinite(scale)).toBe(true)
                expect(typeof isTargeted(c, p)).toBe('boolean')
              } catch (e) {
                expect(asLoraError(e, ['INVALID_FILE']).message).toMatch(/regular expression/)
              }
            }
            ok++
          } catch (e) {
            asLoraError(e, ['INVALID_FILE', 'UNSUPPORTED_FEATURE'])
          }
        },
      ),
      runs(3000),
    )
    expect(ok).toBeGreaterThan(100)
  })
})

// ---------------------------------------------------------------------------------------------
// Whole adapters through rt.loadAdapter

const MODS = ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj']
const IN = 8
const OUT: Record<string, number> = { [MODS[0]]: 8, [MODS[1]]: 4 }

interface TensorSpec {
  key: string
  dtype: string
  shape: number[]
  fill: 'rand' | 'nan' | 'inf' | 'big'
}
/** A valid rank-r adapter over MODS, as tensor specs the mutations can edit. */
function baseTensors(r: number): TensorSpec[] {
  return MODS.flatMap((m) => [
    { key: `base_model.model.${m}.lora_A.weight`, dtype: 'F32', shape: [r, IN], fill: 'rand' as const },
    { key: `base_model.model.${m}.lora_B.weight`, dtype: 'F32', shape: [OUT[m], r], fill: 'rand' as const },
  ])
}
function encodeTensors(specs: TensorSpec[], seed: number): Uint8Array {
  const rng = new Rng(seed)
  const map = new Map<string, TensorToWrite>()
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1)
    const v = rng.array(n, 0.5)
    if (n > 0 && s.fill === 'nan') v[rng.int(n)] = NaN
    if (n > 0 && s.fill === 'inf') v[rng.int(n)] = -Infinity
    // large but finite in f32 even after the delta's sums (1e38 weights would overflow y to Infinity, as in PEFT)
    if (n > 0 && s.fill === 'big') v[rng.int(n)] = 3e4
    const dtype = (['F32', 'F16', 'BF16'].includes(s.dtype) ? s.dtype : 'F32') as 'F32' | 'F16' | 'BF16'
    map.set(s.key, { dtype, shape: s.shape, data: dtype === 'F32' ? v : encodeHalf(v, dtype === 'F16' ? 'f16' : 'bf16') })
  }
  const bytes = writeSafetensors(map)
  // dtypes the writer refuses are spliced into the header afterwards (same byte length: 'I32' for 'F32')
  const odd = specs.filter((s) => !['F32', 'F16', 'BF16'].includes(s.dtype))
  if (odd.length) {
    let text = new TextDecoder().decode(bytes)
    for (const s of odd)
      text = text.replace(
        `${JSON.stringify(s.key)}:{"dtype":"F32"`,
        `${JSON.stringify(s.key)}:{"dtype":${JSON.stringify(s.dtype.slice(0, 3).padEnd(3))}`,
      )
    return new TextEncoder().encode(text)
  }
  return bytes
}

type Mutation =
  | { kind: 'config'; field: string; value: unknown }
  | { kind: 'dropConfig'; field: string }
  | { kind: 'shape'; tensor: number; dim: number; value: number }
  | { kind: 'dims'; tensor: number; shape: number[] }
  | { kind: 'drop'; tensor: number }
  | { kind: 'rename'; tensor: number; key: string }
  | { kind: 'extra'; key: string }
  | { kind: 'dtype'; tensor: number; dtype: string }
  | { kind: 'fill'; tensor: number; fill: TensorSpec['fill'] }
  | { kind: 'corrupt'; at: number; value: number }
  | { kind: 'truncate'; at: number }

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('config' as const), field: fc.constantFrom(...FIELDS), value: valueArb }),
  fc.record({ kind: fc.constant('dropConfig' as const), field: fc.constantFrom('r', 'lora_alpha', 'target_modules', 'peft_type') }),
  fc.record({ kind: fc.constant('shape' as const), tensor: fc.nat(3), dim: fc.nat(1), value: fc.constantFrom(0, 1, 2, 3, 5, 16, 17, 300) }),
  fc.record({ kind: fc.constant('dims' as const), tensor: fc.nat(3), shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 }) }),
  fc.record({ kind: fc.constant('drop' as const), tensor: fc.nat(3) }),
  fc.record({
    kind: fc.constant('rename' as const),
    tensor: fc.nat(3),
    key: fc.constantFrom(
      'x.lora_A.weight',
      'base_model.model.model.embed_tokens.lora_embedding_A',
      'base_model.model.lm_head.weight',
      'lora_A.weight',
      '.lora_B.weight',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias',
      'model.layers.0.self_attn.q_proj.lora_A.weight',
    ),
  }),
  fc.record({
    kind: fc.constant('extra' as const),
    key: fc.constantFrom(
      'base_model.model.model.norm.weight',
      'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight',
      'base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight',
    ),
  }),
  fc.record({ kind: fc.constant('dtype' as const), tensor: fc.nat(3), dtype: fc.constantFrom('F16', 'BF16', 'I32', 'U32', 'F64') }),
  fc.record({
    kind: fc.constant('fill' as const),
    tensor: fc.nat(3),
    fill: fc.constantFrom('nan', 'inf', 'big') as fc.Arbitrary<TensorSpec['fill']>,
  }),
  fc.record({ kind: fc.constant('corrupt' as const), at: fc.nat(), value: fc.nat(255) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
)

function buildAdapter(r: number, seed: number, ms: Mutation[]): { config: Record<string, unknown>; weights: Uint8Array } {
  const config = peftConfig({ r, lora_alpha: 2 * r, target_modules: ['q_proj', 'v_proj'] })
  let specs = baseTensors(r)
  for (const m of ms) {
    const t = 'tensor' in m ? specs[m.tensor % Math.max(1, specs.length)] : undefined
    if (m.kind === 'config')
      Object.defineProperty(config, m.field, { value: m.value, enumerable: true, writable: true, configurable: true })
    if (m.kind === 'dropConfig') delete config[m.field]
    if (m.kind === 'shape' && t && t.shape.length > m.dim) t.shape[m.dim] = m.value
    if (m.kind === 'dims' && t) t.shape = m.shape
    if (m.kind === 'drop' && t) specs = specs.filter((s) => s !== t)
    if (m.kind === 'rename' && t) t.key = m.key
    if (m.kind === 'extra') specs.push({ key: m.key, dtype: 'F32', shape: [r, IN], fill: 'rand' })
    if (m.kind === 'dtype' && t) t.dtype = m.dtype
    if (m.kind === 'fill' && t) t.fill = m.fill
  }
  specs = specs.filter((s, i) => specs.findIndex((o) => o.key === s.key) === i)
  let weights = encodeTensors(specs, seed)
  for (const m of ms) {
    if (m.kind === 'corrupt' && weights.length) (weights = weights.slice())[m.at % weights.length] = m.value
    if (m.kind === 'truncate') weights = weights.slice(0, m.at % (weights.length + 1))
  }
  return { config, weights }
}

let rt: Runtime
const baseline = buildAdapter(4, 1, [])
beforeAll(async () => {
  rt = await createRuntime({ backend: 'wasm' })
})
afterAll(() => rt?.dispose())

/** What must not change when a load fails: the adapter list, the pool's shape, and 'base''s outputs. */
async function snapshot(): Promise<{ list: unknown; stats: unknown; y: Float32Array[] }> {
  const s = rt.stats()
  const rng = new Rng(3)
  const y: Float32Array[] = []
  for (const m of MODS) {
    const x = rng.array(3 * IN)
    const out = new Float32Array(3 * OUT[m])
    await rt.apply(m, x, out, ['base', null, 'base'])
    y.push(out)
  }
  return {
    list: rt.listAdapters(),
    stats: { adapters: s.adapters, bytesResident: s.bytesResident, layers: s.layers, residentAdapters: s.residentAdapters },
    y,
  }
}

/** A tensor as the test's own reader gives it. */
type Tensor = ReturnType<typeof readTensors> extends Map<string, infer T> ? T : never

/**
 * PEFT's reading of an adapter_config.json (peft 0.21: check_target_module_exists and
 * get_pattern_key), written here from PEFT's rules and not from the library: which of the
 * modules in `paths` get LoRA, and each one's rank and scale. Only for configs the library
 * accepted (their fields have PEFT's types).
 */
function peftModules(config: Record<string, unknown>, paths: string[]): Map<string, { rank: number; scale: number }> {
  const get = (k: string): unknown => (Object.hasOwn(config, k) ? config[k] : undefined)
  const list = (v: unknown): string[] | null => (v == null ? null : typeof v === 'string' ? [v] : (v as string[]))
  const full = (re: string, key: string): boolean => new RegExp(`^(?:${re})$`).test(key)
  const named = (names: string[], key: string): boolean => names.some((n) => key === n || key.endsWith(`.${n}`))
  const wrapped = (key: string): boolean => {
    const ex = get('exclude_modules')
    if (typeof ex === 'string' ? ex !== '' && full(ex, key) : ex != null && named(ex as string[], key)) return false
    // a module named in modules_to_save (or inside one) is saved whole, not wrapped
    const parts = key.split('.')
    const saved = (get('modules_to_save') as string[] | null) ?? []
    if (parts.some((_, i) => named(saved, parts.slice(0, i + 1).join('.')))) return false
    const target = get('target_modules')
    if (target == null || target === 'all-linear') return true
    if (typeof target === 'string') return full(target, key)
    const names = target as string[]
    if (names.includes(key)) return true
    if (!named(names, key)) return false
    const layers = get('layers_to_transform') as number | number[] | null | undefined
    if (layers == null || (Array.isArray(layers) && layers.length === 0)) return true
    const patterns = (list(get('layers_pattern')) ?? []).filter((p) => p !== '')
    const m = patterns.length
      ? patterns.map((p) => new RegExp(`^.*\\.${p}\\.(\\d+)\\.`).exec(key)).find((r) => r)
      : /^.*\.[^.]*\.(\d+)\./.exec(key)
    if (!m) return false
    return typeof layers === 'number' ? Number(m[1]) === layers : layers.includes(Number(m[1]))
  }
  const pick = (pattern: unknown, key: string, fallback: number): number => {
    const map = (pattern ?? {}) as Record<string, number>
    const k = Object.keys(map).find((p) => new RegExp(`^(?:.*\\.)?(?:${p})$`).test(key))
    return k === undefined ? fallback : map[k]
  }
  const out = new Map<string, { rank: number; scale: number }>()
  for (const key of paths) {
    if (!wrapped(key)) continue
    const rank = pick(get('rank_pattern'), key, get('r') as number)
    const alpha = pick(get('alpha_pattern'), key, get('lora_alpha') as number)
    out.set(key, { rank, scale: get('use_rslora') === true ? alpha / Math.sqrt(rank) : alpha / rank })
  }
  return out
}

describe('fuzz: rt.loadAdapter on mutated PEFT adapters', () => {
  it('success (and correct outputs) or a LoraError that leaves every loaded adapter as it was', async () => {
    await rt.loadAdapter('base', baseline)
    const outcomes = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 8 }),
        fc.nat(1000),
        fc.array(mutationArb, { maxLength: 3 }),
        fc.constantFrom('base', 'new'),
        async (r, seed, ms, name) => {
          const src = buildAdapter(r, seed, ms)
          const before = await snapshot()
          let code = 'ok'
          try {
            await rt.loadAdapter(name, src)
          } catch (e) {
            code = asLoraError(e).code
          }
          outcomes.set(code, (outcomes.get(code) ?? 0) + 1)
          if (code !== 'ok') {
            expect(await snapshot()).toEqual(before)
            return
          }
          // loaded: it lists the modules PEFT would wrap, and applies them as the reference says
          // module path -> its lora_A and lora_B (keys with or without PEFT's base_model.model. prefix)
          const file = new Map<string, { A?: Tensor; B?: Tensor }>()
          for (const [k, t] of readTensors(src.weights)) {
            const m = /^(?:base_model\.model\.)?(.+)\.lora_([AB])\.weight$/.exec(k)
            if (m) file.set(m[1], { ...file.get(m[1]), [m[2]]: t })
          }
          const inFile = [...file].filter(([, t]) => t.A && t.B).map(([p]) => p)
          const expected = peftModules(src.config, inFile)
          expect(
            rt
              .listAdapters()
              .find((a) => a.name === name)
              ?.modules.sort(),
          ).toEqual([...expected.keys()].sort())
          const rng = new Rng(seed)
          for (const [path, { rank, scale }] of expected) {
            const { A, B } = file.get(path) as { A: Tensor; B: Tensor }
            // PEFT builds lora_A [rank, in] and lora_B [out, rank] from the config: a file of other shapes does not load
            expect([A.shape.length, A.shape[0], B.shape.length, B.shape[1]], path).toEqual([2, rank, 2, rank])
            const [inF, outF] = [A.shape[1], B.shape[0]]
            const x = rng.array(2 * inF)
            const y0 = rng.array(2 * outF)
            const y = new Float32Array(y0)
            await rt.apply(path, x, y, [name, null])
            const ref = sgmv(
              { inFeatures: inF, sliceWidths: [outF], adapters: [{ rank, scale, A: [A.data], B: [B.data] }] },
              x,
              Int32Array.of(0, -1),
            )
            // one 'big' weight times a cancelling x A is ill-conditioned: rounding is bounded by |B| |A| |x|
            const abs = (v: Float32Array): Float32Array => v.map(Math.abs)
            const mag = sgmv(
              { inFeatures: inF, sliceWidths: [outF], adapters: [{ rank, scale: Math.abs(scale), A: [abs(A.data)], B: [abs(B.data)] }] },
              abs(x),
              Int32Array.of(0, -1),
            ).reduce((a, b) => Math.max(a, b), 0)
            expectDelta(y, y0, ref, 1e-5, `${name} ${path}`, mag)
          }
          // back to the baseline state for the next case
          if (name === 'new') rt.unloadAdapter('new')
          else await rt.loadAdapter('base', baseline)
        },
      ),
      runs(1200),
    )
    // both sides of the loader are exercised
    expect(outcomes.get('ok') ?? 0, JSON.stringify([...outcomes])).toBeGreaterThan(50)
    expect(outcomes.get('INVALID_FILE') ?? 0).toBeGreaterThan(50)
    expect(rt.listAdapters().map((a) => a.name)).toEqual(['base'])
  })
})

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints read from a URL (fetch stubbed with an in-memory site)

type IndexMutation =
  | { kind: 'json'; text: string }
  | { kind: 'map'; value: unknown }
  | { kind: 'file'; key: number; file: string }
  | { kind: 'dropKey'; key: number }
  | { kind: 'addKey'; key: string; file: string }
  | { kind: 'dropShard'; shard: number }
  | { kind: 'corruptShard'; shard: number; at: number; value: number }
  | { kind: 'status'; shard: number; status: number }
  | { kind: 'throw'; shard: number }

const indexMutationArb: fc.Arbitrary<IndexMutation> = fc.oneof(
  fc.record({
    kind: fc.constant('json' as const),
    text: fc.constantFrom('', '{', 'null', '[]', '{"weight_map": 5}', '{"metadata": {}}', '"x"'),
  }),
  fc.record({ kind: fc.constant('map' as const), value: fc.constantFrom({}, [], null, 'x', { a: 1 }, { __proto__: 'x' }) }),
  fc.record({
    kind: fc.constant('file' as const),
    key: fc.nat(3),
    file: fc.constantFrom(
      '../secret',
      '/etc/passwd',
      '..',
      '.',
      'sub/shard.safetensors',
      'C:\\x',
      'shard-2.safetensors',
      'missing.safetensors',
      'adapter_config.json',
      '%2e%2e%2fx',
      'http://evil.test/x',
      '',
    ),
  }),
  fc.record({ kind: fc.constant('dropKey' as const), key: fc.nat(3) }),
  fc.record({
    kind: fc.constant('addKey' as const),
    key: fc.constantFrom('base_model.model.extra.lora_A.weight', '__proto__', 'constructor'),
    file: fc.constantFrom('shard-1.safetensors', 'shard-2.safetensors'),
  }),
  fc.record({ kind: fc.constant('dropShard' as const), shard: fc.nat(1) }),
  fc.record({ kind: fc.constant('corruptShard' as const), shard: fc.nat(1), at: fc.nat(), value: fc.nat(255) }),
  fc.record({ kind: fc.constant('status' as const), shard: fc.nat(1), status: fc.constantFrom(403, 404, 500, 302) }),
  fc.record({ kind: fc.constant('throw' as const), shard: fc.nat(1) }),
)

describe('fuzz: sharded checkpoints from a URL', () => {
  it('a bad index or shard is a LoraError, never a request outside the adapter directory, never a partial load', async () => {
    const BASE = 'http://fuzz.test/adapters/x/'
    let site = new Map<string, Uint8Array | number | 'throw'>()
    const requested: string[] = []
    vi.stubGlobal('fetch', async (input: URL | string) => {
      const href = String(input)
      requested.push(href)
      const f = site.get(href)
      if (f === 'throw') throw new TypeError('network down')
      if (f === undefined) return new Response(null, { status: 404 })
      if (typeof f === 'number') return new Response(null, { status: f })
      return new Response(f as Uint8Array<ArrayBuffer>)
    })
    try {
      const specs = baseTensors(4)
      const shardOf = (i: number): string => `shard-${i < 2 ? 1 : 2}.safetensors`
      const outcomes = new Map<string, number>()
      await fc.assert(
        fc.asyncProperty(fc.array(indexMutationArb, { maxLength: 3 }), async (ms) => {
          const weightMap: Record<string, unknown> = {}
          specs.forEach((s, i) => (weightMap[s.key] = shardOf(i)))
          let indexText: string | null = null
          let map: unknown = weightMap
          const shards = [encodeTensors(specs.slice(0, 2), 1), encodeTensors(specs.slice(2), 2)]
          const files: (Uint8Array | number | 'throw' | null)[] = [...shards]
          for (const m of ms) {
            if (m.kind === 'json') indexText = m.text
            if (m.kind === 'map') map = m.value
            if (m.kind === 'file') weightMap[specs[m.key].key] = m.file
            if (m.kind === 'dropKey') delete weightMap[specs[m.key].key]
            if (m.kind === 'addKey')
              Object.defineProperty(weightMap, m.key, { value: m.file, enumerable: true, configurable: true, writable: true })
            if (m.kind === 'dropShard') files[m.shard] = null
            if (m.kind === 'corruptShard' && files[m.shard] instanceof Uint8Array) {
              const f = (files[m.shard] as Uint8Array).slice()
              f[m.at % f.length] = m.value
              files[m.shard] = f
            }
            if (m.kind === 'status') files[m.shard] = m.status
            if (m.kind === 'throw') files[m.shard] = 'throw'
          }
          site = new Map()
          site.set(`${BASE}adapter_config.json`, new TextEncoder().encode(JSON.stringify(peftConfig({ r: 4, lora_alpha: 8 }))))
          site.set(
            `${BASE}adapter_model.safetensors.index.json`,
            new TextEncoder().encode(indexText ?? JSON.stringify({ metadata: {}, weight_map: map })),
          )
          files.forEach((f, i) => f !== null && site.set(`${BASE}shard-${i + 1}.safetensors`, f))
          requested.length = 0
          const before = rt.listAdapters()
          let code = 'ok'
          try {
            await rt.loadAdapter('sharded', BASE)
          } catch (e) {
            code = asLoraError(e).code
          }
          outcomes.set(code, (outcomes.get(code) ?? 0) + 1)
          for (const href of requested) expect(href.startsWith(BASE), `request outside the adapter: ${href}`).toBe(true)
          if (code === 'ok') {
            // exactly the modules whose A and B the index lists (a module left out of the index is not part of the checkpoint)
            const listed = MODS.filter((m) =>
              [`base_model.model.${m}.lora_A.weight`, `base_model.model.${m}.lora_B.weight`].every((k) => Object.hasOwn(weightMap, k)),
            )
            expect(
              rt
                .listAdapters()
                .find((a) => a.name === 'sharded')
                ?.modules.sort(),
            ).toEqual(listed.sort())
            rt.unloadAdapter('sharded')
          } else {
            expect(rt.listAdapters()).toEqual(before)
          }
        }),
        runs(1000),
      )
      expect(outcomes.get('ok') ?? 0, JSON.stringify([...outcomes])).toBeGreaterThan(20)
      expect(outcomes.get('INVALID_FILE') ?? 0).toBeGreaterThan(100)
    } finally {
      vi.unstubAllGlobals()
    }
  })
})
