import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { InMemoryAdapter } from '../src/peft/source.js'
import { AdapterPool, type TokenAdapters } from '../src/pool/pool.js'
import { expectDelta } from './compare.js'
import { fakeFactory } from './fake-layer.js'
import { expectLoraError, makeWeights, peftConfig, toyModules, weightValues } from './peft-helpers.js'
import { Rng } from './random.js'
import { sgmv } from './reference.js'

const Q0 = 'model.layers.0.self_attn.q_proj'
const UP0 = 'model.layers.0.mlp.up_proj'

/** The weights each test adapter was generated with (scale 2: lora_alpha = 2 r), by module path. */
const generated = new WeakMap<InMemoryAdapter, ReturnType<typeof weightValues>>()

/** An in-memory adapter over the toy model (q_proj, v_proj; optionally up_proj). */
function source(seed: number, rank = 8, names = ['q_proj', 'v_proj']): InMemoryAdapter {
  const modules = toyModules(rank, 'F32', [0, 1], names)
  const src = { config: peftConfig({ r: rank, lora_alpha: 2 * rank, target_modules: names }), weights: makeWeights(modules, seed) }
  generated.set(src, weightValues(modules, seed))
  return src
}

/** The float64 delta the named adapters should give on `module` (adapters not targeting it: none). */
function expected(module: string, x: Float32Array, tokens: TokenAdapters[], srcs: Record<string, InMemoryAdapter>): Float64Array {
  const names = Object.keys(srcs)
  const parsed = names.map((n) => generated.get(srcs[n])!.get(module))
  const some = parsed.find((m) => m)!
  const lists = tokens.map((t) =>
    (t == null ? [] : Array.isArray(t) ? t : [t]).map((a) =>
      typeof a === 'string' ? { name: a, weight: 1 } : (a as { name: string; weight: number }),
    ),
  )
  const K = Math.max(1, ...lists.map((l) => l.length))
  const ids = new Int32Array(tokens.length * K).fill(-1)
  const weights = new Float32Array(tokens.length * K)
  lists.forEach((list, i) => {
    list
      .filter((a) => parsed[names.indexOf(a.name)])
      .forEach((a, k) => {
        ids[i * K + k] = names.indexOf(a.name)
        weights[i * K + k] = a.weight
      })
  })
  const adapters = parsed.map((m) => m && { rank: m.rank, scale: 2, A: [m.A], B: [m.B] })
  return sgmv({ inFeatures: some.inFeatures, sliceWidths: [some.outFeatures], adapters }, x, ids, K, weights)
}

/** Apply on the pool and check y against the reference. */
async function check(
  pool: AdapterPool,
  module: string,
  tokens: TokenAdapters[],
  srcs: Record<string, InMemoryAdapter>,
  seed = 5,
): Promise<void> {
  // the module's widths, as the adapters that target it define them
  const mod = Object.values(srcs)
    .map((a) => generated.get(a)!.get(module))
    .find((m) => m)!
  const rng = new Rng(seed)
  const x = rng.array(tokens.length * mod.inFeatures)
  const y0 = rng.array(tokens.length * mod.outFeatures)
  const y = new Float32Array(y0)
  await pool.apply(module, x, y, tokens)
  expectDelta(y, y0, expected(module, x, tokens, srcs), 1e-5, module)
}

const BYTES8 = 2 * 4 * (8 * 12 + 12 * 8) + 2 * 4 * (8 * 12 + 6 * 8) // one rank-8 q/v adapter

describe('AdapterPool: loading and applying', () => {
  it('load creates one f32 layer per module; listAdapters reports modules, ranks, dtype, bytes', async () => {
    const f = fakeFactory()
    const pool = new AdapterPool({ createLayer: f.createLayer, maxAdapters: 4 })
    const info = await pool.loadAdapter('a', source(1))
    expect(info).toMatchObject({ name: 'a', ranks: [8], dtype: 'F32', bytes: BYTES8, resident: true, pinned: false, source: 'memory' })
    expect(info.modules).toHaveLength(4)
    expect(f.options).toHaveLength(4)
    expect(f.options[0]).toEqual({ inFeatures: 12, outFeatures: 12, maxAdapters: 4, maxRank: 16, weightDtype: 'f32' })
    await pool.loadAdapter('b', source(2, 4, ['q_proj', 'up_proj']))
    expect(f.options).toHaveLength(6) // two up_proj layers added, q_proj layers reused
    expect(pool.listAdapters().map((a) => [a.name, a.ranks])).toEqual([
      ['a', [8]],
      ['b', [4]],
    ])
    expect(pool.stats()).toMatchObject({
      adapters: 2,
      residentAdapters: 2,
      layers: 6,
      bytesResident: BYTES8 + pool.listAdapters()[1].bytes,
    })
  })

  it('mixed batch: single adapters, combinations (K = 2), null, and an adapter not targeting the module', async () => {
    const srcs = { a: source(1), b: source(2), up: source(3, 4, ['up_proj']) }
    const pool = new AdapterPool({ createLayer: fakeFactory().createLayer })
    for (const [n, s] of Object.entries(srcs)) await pool.loadAdapter(n, s)
    const tokens: TokenAdapters[] = ['a', 'b', null, ['a', 'b'], 'up', ['up', 'a'], 'a', ['b']]
    await check(pool, Q0, tokens, srcs)
    await check(pool, UP0, tokens, srcs)
    await check(pool, Q0, [], srcs) // empty batch
    await check(pool, Q0, [null, 'up'], srcs) // no delta at all
  })

  it('weighted tokens: { name, weight } alone and in combinations, beside plain names', async () => {
    const srcs = { a: source(1), b: source(2), up: source(3, 4, ['up_proj']) }
    const f = fakeFactory()
    const pool = new AdapterPool({ createLayer: f.createLayer })
    for (const [n, s] of Object.entries(srcs)) await pool.loadAdapter(n, s)
    const tokens: TokenAdapters[] = [
      { name: 'a', weight: 0.5 },
      'b',
      null,
      [
        { name: 'a', weight: -1 },
        { name: 'b', weight: 2 },
      ],
      ['up', { name: 'a', weight: 0 }],
      [{ name: 'b', weight: 1 }],
    ]
    await check(pool, Q0, tokens, srcs)
    await check(pool, UP0, tokens, srcs)
    const x = new Float32Array(12)
    const y = new Float32Array(12)
    await expectLoraError(() => pool.apply(Q0, x, y, [{ name: 'a', weight: NaN }]), 'INVALID_ARGUMENT', ['adapters[0].weight', 'finite'])
    await expectLoraError(() => pool.apply(Q0, x, y, [[{ name: 'a', weight: Infinity }]]), 'INVALID_ARGUMENT', ['adapters[0][0].weight'])
    await expectLoraError(() => pool.apply(Q0, x, y, [{ name: 'zz', weight: 1 }]), 'NOT_FOUND', ['"zz"'])
    await expectLoraError(() => pool.apply(Q0, x, y, [[{ name: 'a', weight: 1 }, 'a']]), 'DUPLICATE_ADAPTER')
    expect([...y]).toEqual(new Array(12).fill(0))
  })

  it('bad calls: unknown adapter, duplicate in a token, wrong x/y length, bad token entry', async () => {
    const pool = new AdapterPool({ createLayer: fakeFactory().createLayer })
    await pool.loadAdapter('a', source(1))
    const x = new Float32Array(2 * 12)
    const y = new Float32Array(2 * 12)
    await expectLoraError(() => pool.apply(Q0, x, y, ['a', 'nope']), 'NOT_FOUND', /adapters\[1\]: adapter "nope" is not loaded/)
    await expectLoraError(() => pool.apply(Q0, x, y, ['a', ['a', 'a']]), 'DUPLICATE_ADAPTER', /adapters\[1\]/)
    await expectLoraError(() => pool.apply(Q0, x, y, ['a']), 'SHAPE_MISMATCH', /1 tokens need x \[1 \* 12\] and y \[1 \* 12\], got x\[24\]/)
    await expectLoraError(() => pool.apply(Q0, x, y, ['a', 5 as unknown as string]), 'INVALID_ARGUMENT', /adapters\[1\]/)
    await expectLoraError(() => pool.unloadAdapter('nope'), 'NOT_FOUND', /"nope"/)
    await expectLoraError(() => pool.pin('nope'), 'NOT_FOUND', /"nope"/)
    // A module no adapter targets is a no-op (PEFT leaves it unwrapped).
    await pool.apply('lm_head', x, y, ['a', null])
    expect(y.every((v) => v === 0)).toBe(true)
  })
})

describe('AdapterPool: eviction, pinning, reload', () => {
  it('slot count: the least recently used adapter is evicted, and comes back on use', async () => {
    const f = fakeFactory()
    const srcs = { a: source(1), b: source(2), c: source(3) }
    const pool = new AdapterPool({ createLayer: f.createLayer, maxAdapters: 2 })
    await pool.loadAdapter('a', srcs.a)
    await pool.loadAdapter('b', srcs.b)
    await check(pool, Q0, ['a'], srcs) // a is now more recent than b
    await pool.loadAdapter('c', srcs.c) // evicts b
    expect(pool.listAdapters().map((r) => [r.name, r.resident])).toEqual([
      ['a', true],
      ['b', false],
      ['c', true],
    ])
    expect(pool.stats()).toMatchObject({ evictions: 1, misses: 0, bytesResident: 2 * BYTES8, bytesHost: 3 * BYTES8 })
    await check(pool, Q0, ['b', 'c', 'b'], srcs) // b back, a (LRU) evicted; c is in the batch
    expect(pool.stats()).toMatchObject({ evictions: 2, misses: 1, hits: 2 })
    expect(pool.listAdapters().find((r) => r.name === 'a')!.resident).toBe(false)
    // A batch needing three adapters in a two-slot layer cannot run.
    await expectLoraError(() => check(pool, Q0, ['a', 'b', 'c'], srcs), 'OUT_OF_MEMORY', /slots hold pinned or running adapters/)
  })

  it('memory budget: bytes resident never exceed it; an adapter bigger than the budget is refused', async () => {
    const srcs = { a: source(1), b: source(2), c: source(3) }
    const pool = new AdapterPool({ createLayer: fakeFactory().createLayer, memoryBudget: 2 * BYTES8 + 10 })
    for (const [n, s] of Object.entries(srcs)) {
      await pool.loadAdapter(n, s)
      expect(pool.stats().bytesResident).toBeLessThanOrEqual(2 * BYTES8 + 10)
    }
    expect(pool.stats().evictions).toBe(1)
    await check(pool, Q0, ['a', 'b'], srcs)
    expect(pool.stats().bytesResident).toBe(2 * BYTES8)
    await expectLoraError(
      () => pool.loadAdapter('big', source(4, 32)),
      'OUT_OF_MEMORY',
      /"big" needs \d+ bytes, more than the memory budget/,
    )
    expect(pool.listAdapters().map((r) => r.name)).toEqual(['a', 'b', 'c'])
  })

  it('pinned adapters are never evicted; unpin makes them evictable again', async () => {
    const srcs = { a: source(1), b: source(2), c: source(3) }
    const pool = new AdapterPool({ createLayer: fakeFactory().createLayer, maxAdapters: 2 })
    await pool.loadAdapter('a', srcs.a)
    await pool.pin('a')
    await pool.loadAdapter('b', srcs.b)
    await pool.loadAdapter('c', srcs.c) // evicts b, not the older a
    expect(pool.listAdapters().map((r) => [r.name, r.resident, r.pinned])).toEqual([
      ['a', true, true],
      ['b', false, false],
      ['c', true, false],
    ])
    await pool.pin('c')
    await expectLoraError(() => check(pool, Q0, ['b'], srcs), 'OUT_OF_MEMORY', /"b"/)
    pool.unpin('a')
    await check(pool, Q0, ['b', 'c'], srcs)
    expect(pool.listAdapters().map((r) => r.resident)).toEqual([false, true, true])
  })

  it('adapters of a running batch are not evicted', async () => {
    const f = fakeFactory()
    const srcs = { a: source(1), b: source(2), c: source(3) }
    const pool = new AdapterPool({ createLayer: f.createLayer, maxAdapters: 2 })
    await pool.loadAdapter('a', srcs.a)
    await pool.loadAdapter('b', srcs.b)
    let open!: () => void
    const layer = f.layers[0] // Q0's layer
    layer.gate = new Promise((r) => (open = r))
    const running = check(pool, Q0, ['a', 'a'], srcs)
    await new Promise((r) => setTimeout(r, 0))
    layer.gate = null
    await check(pool, 'model.layers.1.self_attn.q_proj', ['b'], srcs) // now a is the least recently used...
    await pool.loadAdapter('c', srcs.c) // ...but running, so b is evicted
    expect(pool.listAdapters().map((r) => r.resident)).toEqual([true, false, true])
    expect(pool.stats().evictions).toBe(1)
    open()
    await running
  })

  it('path sources: evicted host copy dropped, re-read on use; NOT_FOUND once the source is gone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'multilora-pool-'))
    afterAll(() => rm(dir, { recursive: true, force: true }))
    const srcs = { a: source(1), b: source(2) }
    for (const [n, s] of Object.entries(srcs)) {
      await mkdir(join(dir, n))
      await writeFile(join(dir, n, 'adapter_config.json'), JSON.stringify(s.config))
      await writeFile(join(dir, n, 'adapter_model.safetensors'), s.weights as Uint8Array)
    }
    const pool = new AdapterPool({ createLayer: fakeFactory().createLayer, maxAdapters: 1 })
    await pool.loadAdapter('a', join(dir, 'a'))
    await pool.loadAdapter('b', join(dir, 'b')) // evicts a
    expect(pool.stats()).toMatchObject({ bytesHost: 0, evictions: 1, reloads: 0 })
    await check(pool, Q0, ['a', null], srcs) // re-read from disk
    expect(pool.stats()).toMatchObject({ reloads: 1, evictions: 2 })
    await rm(join(dir, 'b'), { recursive: true })
    await expectLoraError(
      () => check(pool, Q0, ['b'], srcs),
      'NOT_FOUND',
      /adapter "b" was evicted and cannot be reloaded from .*b: .*not exist/,
    )
    await check(pool, Q0, ['a'], srcs) // the pool is still usable
    await expectLoraError(() => pool.loadAdapter('c', join(dir, 'c')), 'NOT_FOUND', /does not exist/)
  })
})

describe('AdapterPool: atomic load, replace, unload, layer growth', () => {
  it('a failed load leaves nothing behind; a failed replace keeps the old adapter', async () => {
    const f = fakeFactory()
    const pool = new AdapterPool({ createLayer: f.createLayer })
    const srcs = { a: source(1) }
    await pool.loadAdapter('a', srcs.a)
    const bad = { config: peftConfig({ use_dora: true }), weights: source(2).weights }
    await expectLoraError(() => pool.loadAdapter('x', bad), 'UNSUPPORTED_FEATURE', /use_dora/)
    await expectLoraError(() => pool.loadAdapter('a', bad), 'UNSUPPORTED_FEATURE')
    // Same module paths with other widths: refused before anything changes.
    const wide = { config: peftConfig(), weights: makeWeights({ [Q0]: { rank: 8, inFeatures: 16, outFeatures: 12 } }) }
    await expectLoraError(
      () => pool.loadAdapter('a', wide),
      'SHAPE_MISMATCH',
      /q_proj" is \[in 16, out 12\] but loaded adapters have \[in 12, out 12\]/,
    )
    expect(pool.listAdapters().map((r) => r.name)).toEqual(['a'])
    expect(f.layers).toHaveLength(4)
    await check(pool, Q0, ['a', 'a'], srcs)
  })

  it('replacing a name swaps the weights; a running batch finishes with the old ones, then their slots are freed', async () => {
    const f = fakeFactory()
    const pool = new AdapterPool({ createLayer: f.createLayer })
    await pool.loadAdapter('a', source(1))
    let open!: () => void
    f.layers[0].gate = new Promise((r) => (open = r))
    const running = check(pool, Q0, ['a'], { a: source(1) })
    await new Promise((r) => setTimeout(r, 0))
    f.layers[0].gate = null
    await pool.loadAdapter('a', source(2)) // old a still running: keeps its slot
    expect(pool.stats().bytesResident).toBe(2 * BYTES8)
    open()
    await running
    expect(pool.stats().bytesResident).toBe(BYTES8)
    expect(f.layers[0].log).toContain('clear 0')
    await check(pool, Q0, ['a'], { a: source(2) })
  })

  it('a larger rank recreates the module layer; adapters of the old layer are re-uploaded on use', async () => {
    const f = fakeFactory()
    const srcs = { a: source(1), big: source(2, 40, ['q_proj']) }
    const pool = new AdapterPool({ createLayer: f.createLayer })
    await pool.loadAdapter('a', srcs.a)
    await pool.loadAdapter('big', srcs.big)
    expect(f.options.slice(4).map((o) => o.maxRank)).toEqual([64, 64])
    expect(f.layers[0].disposed).toBe(true)
    expect(pool.stats()).toMatchObject({ layerRebuilds: 2, layers: 4 })
    expect(pool.listAdapters()[0].resident).toBe(false)
    await check(pool, Q0, ['a', 'big', ['big', 'a']], srcs)
    expect(pool.listAdapters()[0].resident).toBe(true)
  })

  it('unload frees the slots and disposes layers no adapter targets any more', async () => {
    const f = fakeFactory()
    const pool = new AdapterPool({ createLayer: f.createLayer })
    await pool.loadAdapter('a', source(1))
    await pool.loadAdapter('up', source(2, 4, ['up_proj']))
    pool.unloadAdapter('up')
    expect(f.layers.slice(4).every((l) => l.disposed)).toBe(true)
    expect(pool.stats()).toMatchObject({ adapters: 1, layers: 4, bytesResident: BYTES8 })
    await expectLoraError(() => pool.apply(Q0, new Float32Array(12), new Float32Array(12), ['up']), 'NOT_FOUND', /"up"/)
    pool.dispose()
    expect(f.layers.every((l) => l.disposed)).toBe(true)
  })
})
