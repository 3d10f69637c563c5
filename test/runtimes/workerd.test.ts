/**
 * Cloudflare Workers: examples/worker/worker.js, bundled as wrangler bundles it (esbuild with the
 * workerd/worker/browser conditions, so `multilora` is the package's "workerd" export; .wasm
 * imports become CompiledWasm modules and .safetensors Data modules), served by workerd through
 * miniflare on 127.0.0.1, queried over HTTP and checked against the float64 reference.
 */
import { createHash } from 'node:crypto'
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import type { Plugin } from 'esbuild'
import { build } from 'esbuild'
import { Miniflare } from 'miniflare'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Rng } from '../random.js'
import { checkReport, packedProject, ROOT, type PackedProject } from './harness.js'

let project: PackedProject
let mf: Miniflare | undefined
let url: URL

/** wrangler's module rules: import .wasm as a compiled module, .safetensors as bytes, unbundled. */
function moduleRules(outdir: string, modules: { type: 'CompiledWasm' | 'Data'; path: string }[]): Plugin {
  return {
    name: 'worker-modules',
    setup(b) {
      b.onResolve({ filter: /\.(wasm|safetensors)$/ }, async (args) => {
        const file = resolve(args.resolveDir, args.path)
        const name = `${createHash('sha1').update(file).digest('hex').slice(0, 8)}-${basename(file)}`
        await copyFile(file, join(outdir, name))
        if (!modules.some((m) => m.path === name)) modules.push({ type: file.endsWith('.wasm') ? 'CompiledWasm' : 'Data', path: name })
        return { path: `./${name}`, external: true }
      })
    },
  }
}

beforeAll(async () => {
  project = await packedProject()
  const src = join(project.dir, 'worker.js')
  await copyFile(join(ROOT, 'examples/worker/worker.js'), src)
  const outdir = join(project.dir, 'worker-dist')
  await rm(outdir, { recursive: true, force: true })
  await mkdir(outdir)
  const modules: { type: 'CompiledWasm' | 'Data'; path: string }[] = []
  await build({
    entryPoints: [src],
    outfile: join(outdir, 'worker.js'),
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    conditions: ['workerd', 'worker', 'browser'],
    mainFields: ['browser', 'module', 'main'],
    external: ['node:*'], // only reached in Node, Deno and Bun (file-system paths)
    plugins: [moduleRules(outdir, modules)],
    logLevel: 'error',
  })
  // the bundle must carry the kernels as modules, not compile bytes
  expect(
    modules
      .filter((m) => m.type === 'CompiledWasm')
      .map((m) => m.path.replace(/^\w+-/, ''))
      .sort(),
  ).toEqual(['multilora-relaxed.wasm', 'multilora-simd.wasm'])
  mf = new Miniflare({
    modulesRoot: outdir,
    modules: [{ type: 'ESModule', path: join(outdir, 'worker.js') }, ...modules.map((m) => ({ ...m, path: join(outdir, m.path) }))],
    compatibilityDate: '2025-09-01',
    host: '127.0.0.1',
    port: 0,
  })
  url = await mf.ready
}, 600_000)

afterAll(async () => {
  await mf?.dispose()
})

async function post(body: unknown): Promise<{ status: number; json: Record<string, unknown>; ms: number }> {
  const t0 = performance.now()
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
  const json = (await res.json()) as Record<string, unknown>
  return { status: res.status, json, ms: performance.now() - t0 }
}

describe('Cloudflare Workers (workerd)', () => {
  it('serves on 127.0.0.1', () => {
    expect(url.hostname).toBe('127.0.0.1')
  })

  it('applies a mixed-adapter batch over HTTP, matching the reference', async () => {
    const module = 'model.layers.0.self_attn.q_proj'
    const tokens = ['code', 'math', null, ['code', 'math'], 'math', 'math', 'code', null, ['math']]
    const x = new Rng(606).array(tokens.length * 256, 1)
    const first = await post({ module, tokens, x: Array.from(x), y: new Array(tokens.length * 256).fill(0) })
    expect(first.status, JSON.stringify(first.json).slice(0, 500)).toBe(200)
    const again = await post({ module, tokens, x: Array.from(x), y: new Array(tokens.length * 256).fill(0) })
    expect(again.status).toBe(200)
    const { backends, wasmVariant, webgpuUnavailableReason, threads, threadsUnavailableReason, y } = again.json as {
      backends: string[]
      wasmVariant: string
      webgpuUnavailableReason: string
      threads: number
      threadsUnavailableReason: string
      y: number[]
    }
    expect(backends).toEqual(['wasm'])
    expect(webgpuUnavailableReason).toMatch(/navigator\.gpu|WebGPU/)
    // the worker asks for threads: 'auto'; Workers have none, so one thread, without an error
    expect(threads).toBe(1)
    expect(threadsUnavailableReason).toMatch(/Cloudflare Workers/)
    const report = {
      runtime: 'workerd',
      backends,
      wasmVariant,
      webgpuUnavailableReason,
      module,
      tokens,
      results: [{ backend: 'wasm', ms: again.ms, y }],
    }
    const errors = await checkReport(report, x)
    console.log(
      `workerd: wasm ${wasmVariant}, rel err ${errors.wasm.toExponential(2)}; HTTP round trip ${first.ms.toFixed(0)} ms first (runtime + adapters), ${again.ms.toFixed(1)} ms next`,
    )
  })

  it('bundled without the workerd condition, createRuntime fails with an error that says what to do', async () => {
    const outdir = join(project.dir, 'worker-default-dist')
    await rm(outdir, { recursive: true, force: true })
    await mkdir(outdir)
    const src = join(project.dir, 'worker-default.js')
    await writeFile(
      src,
      `import { createRuntime } from 'multilora'
export default { async fetch() { try { await createRuntime(); return new Response('created') } catch (e) { return Response.json({ code: e.code, message: e.message }, { status: 500 }) } } }\n`,
    )
    await build({
      entryPoints: [src],
      outfile: join(outdir, 'worker.js'),
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      conditions: ['worker', 'browser'],
      mainFields: ['browser', 'module', 'main'],
      external: ['node:*'],
      logLevel: 'error',
    })
    const other = new Miniflare({
      modulesRoot: outdir,
      modules: [{ type: 'ESModule', path: join(outdir, 'worker.js') }],
      compatibilityDate: '2025-09-01',
      host: '127.0.0.1',
      port: 0,
    })
    try {
      const res = await fetch(await other.ready)
      const json = (await res.json()) as { code: string; message: string }
      expect(res.status).toBe(500)
      expect(json.code).toBe('WASM_LOAD_FAILED')
      expect(json.message).toMatch(/"workerd" export/)
    } finally {
      await other.dispose()
    }
  })

  it('answers a bad request with the LoraError code', async () => {
    const bad = await post({ module: 'model.layers.0.self_attn.q_proj', tokens: ['math'], x: [1, 2, 3], y: new Array(256).fill(0) })
    expect(bad.status).toBe(400)
    expect(bad.json.code).toBe('SHAPE_MISMATCH')
  })
})
