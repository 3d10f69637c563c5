/**
 * Real PEFT adapters (test/fixtures/peft/tiny-llama-public, written by peft 0.21) against PEFT's
 * own mixed-batch forward pass: y = base + delta on every LoRA-wrapped module.
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseAdapter, type ParsedAdapter } from '../src/peft/adapter.js'
import { readSafetensors } from '../src/peft/safetensors.js'
import { readAdapterSource } from '../src/peft/source.js'
import { AdapterPool } from '../src/pool/pool.js'
import type { Layer, LayerOptions } from '../src/types.js'
import { expectDelta } from './compare.js'
import { fakeFactory } from './fake-layer.js'
import { has } from './needs.js'
import { sgmv, type RefAdapter } from './reference.js'

const DIR = fileURLToPath(new URL('./fixtures/peft/tiny-llama-public/', import.meta.url))
const TOL = 1e-5
const gpuHere = await has('webgpu', 'runs rt.apply on wasm only')

interface Manifest {
  token_adapter: string[]
  modules: string[]
  adapters: Record<string, { r: number; alpha: number; targets: string[]; dtype?: string }>
}

let manifest: Manifest
let oracle: Map<string, Float32Array>
const adapters = new Map<string, ParsedAdapter>()

beforeAll(async () => {
  manifest = JSON.parse(await readFile(`${DIR}manifest.json`, 'utf8'))
  const file = readSafetensors(new Uint8Array(await readFile(`${DIR}oracle.safetensors`)), 'oracle.safetensors')
  oracle = new Map([...file.tensors].map(([k, t]) => [k, t.data as Float32Array]))
  for (const name of Object.keys(manifest.adapters)) {
    const files = await readAdapterSource(`${DIR}adapters/${name}`)
    adapters.set(name, parseAdapter(files.config, files.weights, name, files.fileNames))
  }
})

/** The oracle's x, base and y of one module. */
function io(module: string): { x: Float32Array; base: Float32Array; y: Float32Array } {
  const get = (s: string): Float32Array => {
    const t = oracle.get(`${module}.${s}`)
    if (!t) throw new Error(`oracle has no ${module}.${s}`)
    return t
  }
  return { x: get('x'), base: get('base'), y: get('y') }
}

describe('PEFT fixture: parsing', () => {
  it('both adapters parse with the manifest ranks, scales, targets and dtypes', () => {
    for (const [name, m] of Object.entries(manifest.adapters)) {
      const ad = adapters.get(name)!
      expect(ad.dtype).toBe(m.dtype === 'f16' ? 'F16' : 'F32')
      const targeted = manifest.modules.filter((p) => m.targets.some((t) => p.endsWith(`.${t}`)))
      expect([...ad.modules.keys()].sort()).toEqual(targeted.sort())
      for (const [path, mod] of ad.modules) {
        expect(mod.rank, path).toBe(m.r)
        expect(mod.scale, path).toBe(m.alpha / m.r)
        const { x, y } = io(path)
        const T = manifest.token_adapter.length
        expect(mod.inFeatures * T).toBe(x.length)
        expect(mod.outFeatures * T).toBe(y.length)
      }
      expect(ad.ignored).toEqual([])
    }
  })

  it('a file: URL source gives the same adapter as the directory path', async () => {
    const files = await readAdapterSource(pathToFileURL(`${DIR}adapters/math`))
    const viaUrl = parseAdapter(files.config, files.weights, 'math')
    expect([...viaUrl.modules.keys()]).toEqual([...adapters.get('math')!.modules.keys()])
    const [path, mod] = [...viaUrl.modules][0]
    expect(mod.A).toEqual(adapters.get('math')!.modules.get(path)!.A)
  })
})

describe('PEFT fixture: y = base + delta against PEFT (relative error of the delta <= 1e-5)', () => {
  it('float64 reference sgmv on every module, mixed token assignment', () => {
    const names = Object.keys(manifest.adapters)
    for (const module of manifest.modules) {
      const { x, base, y } = io(module)
      // One slot per adapter that targets the module; other adapters' tokens get no delta (as PEFT).
      const slots: (RefAdapter | undefined)[] = names.map((n) => {
        const m = adapters.get(n)!.modules.get(module)
        return m && { rank: m.rank, scale: m.scale, A: [m.A], B: [m.B] }
      })
      const ids = Int32Array.from(manifest.token_adapter, (a) => {
        const s = names.indexOf(a)
        return s >= 0 && slots[s] ? s : -1
      })
      const inF = x.length / ids.length
      const delta = sgmv({ inFeatures: inF, sliceWidths: [y.length / ids.length], adapters: slots }, x, ids)
      expectDelta(y, base, delta, TOL, module)
      // Tokens with no delta: PEFT's output is exactly its base output.
      const out = y.length / ids.length
      ids.forEach((id, t) => {
        if (id < 0) expect(y.subarray(t * out, (t + 1) * out)).toEqual(base.subarray(t * out, (t + 1) * out))
      })
    }
  })

  /** Load both adapters into a pool and apply every module with the manifest's assignment. */
  async function checkPool(createLayer: (o: LayerOptions) => Layer): Promise<void> {
    const pool = new AdapterPool({ createLayer })
    for (const name of Object.keys(manifest.adapters)) await pool.loadAdapter(name, `${DIR}adapters/${name}`)
    const tokens = manifest.token_adapter.map((a) => (a === '__base__' ? null : a))
    for (const module of manifest.modules) {
      const { x, base, y } = io(module)
      const got = new Float32Array(base)
      await pool.apply(module, x, got, tokens)
      const delta = new Float64Array(y.length)
      for (let i = 0; i < y.length; i++) delta[i] = y[i] - base[i]
      expectDelta(got, base, delta, TOL, `pool ${module}`)
    }
    const s = pool.stats()
    expect(s.misses).toBe(0) // everything was uploaded at load time
    expect(s.hits).toBe(4 * 2 * 2 + 3 * 2) // q,k,v,o x 2 layers x 2 adapters + gate,up,down x 2 layers x code
    pool.dispose()
  }

  it('through the AdapterPool on a reference layer', () => checkPool(fakeFactory().createLayer))

  it('through rt.loadAdapter + rt.apply on every available backend', async () => {
    const { createRuntime } = await import('../src/runtime.js')
    const rt = await createRuntime({ backend: 'auto' })
    try {
      if (gpuHere) expect(rt.backends).toContain('webgpu')
      for (const name of Object.keys(manifest.adapters)) await rt.loadAdapter(name, `${DIR}adapters/${name}`)
      const tokens = manifest.token_adapter.map((a) => (a === '__base__' ? null : a))
      for (const backend of rt.backends) {
        for (const module of manifest.modules) {
          const { x, base, y } = io(module)
          const got = new Float32Array(base)
          await rt.apply(module, x, got, tokens, { backend })
          const delta = Float64Array.from(y, (v, i) => v - base[i])
          expectDelta(got, base, delta, TOL, `${backend} ${module}`)
        }
      }
    } finally {
      rt.dispose()
    }
  })
})

describe('readAdapterSource: sharded checkpoints, http URLs, missing files', () => {
  let dir = ''
  let server: import('node:http').Server | null = null
  let base = ''
  beforeAll(async () => {
    const { mkdtemp, writeFile } = await import('node:fs/promises')
    const { tmpdir } = await import('node:os')
    const { writeSafetensors } = await import('../src/peft/safetensors.js')
    dir = await mkdtemp(`${tmpdir()}/multilora-src-`)
    // Split the math adapter into two shards with an index, as save_pretrained(max_shard_size=...) does.
    const bytes = new Uint8Array(await readFile(`${DIR}adapters/math/adapter_model.safetensors`))
    const keys = [...readSafetensors(bytes).tensors.keys()]
    const tensors = readSafetensors(bytes).tensors
    const half = (part: string[]): Uint8Array => writeSafetensors(new Map(part.map((k) => [k, tensors.get(k)!])))
    const [k1, k2] = [keys.slice(0, 5), keys.slice(5)]
    await writeFile(`${dir}/adapter_config.json`, await readFile(`${DIR}adapters/math/adapter_config.json`))
    await writeFile(`${dir}/adapter_model-00001-of-00002.safetensors`, half(k1))
    await writeFile(`${dir}/adapter_model-00002-of-00002.safetensors`, half(k2))
    const weightMap = Object.fromEntries([
      ...k1.map((k) => [k, 'adapter_model-00001-of-00002.safetensors']),
      ...k2.map((k) => [k, 'adapter_model-00002-of-00002.safetensors']),
    ])
    await writeFile(`${dir}/adapter_model.safetensors.index.json`, JSON.stringify({ metadata: {}, weight_map: weightMap }))
    const http = await import('node:http')
    server = http.createServer((req, res) => {
      readFile(`${DIR}adapters/${decodeURIComponent(req.url!.slice(1))}`).then(
        (b) => res.end(b),
        () => res.writeHead(404).end(),
      )
    })
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r))
    base = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}/`
  })
  afterAll(async () => {
    server?.close()
    if (dir) await (await import('node:fs/promises')).rm(dir, { recursive: true, force: true })
  })

  it('a sharded checkpoint parses to the same adapter', async () => {
    const files = await readAdapterSource(dir)
    expect(files.fileNames).toEqual(['adapter_model-00001-of-00002.safetensors', 'adapter_model-00002-of-00002.safetensors'])
    const sharded = parseAdapter(files.config, files.weights, 'math', files.fileNames)
    const whole = adapters.get('math')!
    expect(sharded.modules.size).toBe(whole.modules.size)
    for (const [p, m] of whole.modules) expect(sharded.modules.get(p)).toEqual(m)
  })

  it('an index that disagrees with its shards, or points outside the directory, is INVALID_FILE', async () => {
    const { writeFile } = await import('node:fs/promises')
    const { LoraError } = await import('../src/errors.js')
    const index = `${dir}/adapter_model.safetensors.index.json`
    const good = await readFile(index, 'utf8')
    const map = JSON.parse(good).weight_map as Record<string, string>
    const first = Object.keys(map)[0]
    for (const [bad, message] of [
      [{ ...map, [first]: '../oracle.safetensors' }, /must be a file name in the same directory/],
      [{ ...map, [first]: 'adapter_model-00002-of-00002.safetensors' }, /weight_map disagrees/],
      [{ ...map, extra: 'adapter_model-00001-of-00002.safetensors' }, /no tensor "extra"/],
    ] as const) {
      await writeFile(index, JSON.stringify({ weight_map: bad }))
      const err = await readAdapterSource(dir).catch((e) => e)
      expect(err).toBeInstanceOf(LoraError)
      expect(err.code).toBe('INVALID_FILE')
      expect(err.message).toMatch(message)
    }
    await writeFile(index, good)
  })

  it('http URL (fetch) gives the same adapter; a missing URL is NOT_FOUND', async () => {
    const files = await readAdapterSource(`${base}code`)
    expect(files.kind).toBe('url')
    const viaHttp = parseAdapter(files.config, files.weights, 'code')
    for (const [p, m] of adapters.get('code')!.modules) expect(viaHttp.modules.get(p)!.B).toEqual(m.B)
    await expect(readAdapterSource(new URL(`${base}nope/`))).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringMatching(/adapter_config\.json not found in http/),
    })
  })

  it('missing files: NOT_FOUND; only a pickle adapter_model.bin: UNSUPPORTED_FEATURE', async () => {
    const { mkdir, writeFile } = await import('node:fs/promises')
    await expect(readAdapterSource(`${dir}/nope`)).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringMatching(/nope does not exist/),
    })
    await mkdir(`${dir}/bin`)
    await expect(readAdapterSource(`${dir}/bin`)).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringMatching(/adapter_config\.json not found/),
    })
    await writeFile(`${dir}/bin/adapter_config.json`, '{}')
    await expect(readAdapterSource(`${dir}/bin`)).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringMatching(/neither adapter_model\.safetensors nor/),
    })
    await writeFile(`${dir}/bin/adapter_model.bin`, 'pickle')
    await expect(readAdapterSource(`${dir}/bin`)).rejects.toMatchObject({
      code: 'UNSUPPORTED_FEATURE',
      message: expect.stringMatching(/adapter_model\.bin/),
    })
  })
})
