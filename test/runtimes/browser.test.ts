/**
 * Browsers: examples/browser/index.html served on 127.0.0.1 with the packed package (dist/ ESM
 * through an import map) and the PEFT adapters, opened in headless Chromium (CHROMIUM_PATH, else
 * Debian's /usr/bin/chromium; test/needs.ts; driven by playwright-core); examples/mixed-batch.js runs there on wasm and
 * WebGPU (Chromium's SwiftShader adapter) and is checked against the float64 reference.
 */
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { extname, join, normalize, sep } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CHROMIUM, has } from '../needs.js'
import { checkReport, packedProject, ROOT, summary, type BatchReport, type PackedProject } from './harness.js'

const chromiumHere = await has('chromium')
// ../shared/DESIGN.md: WebGPU on SwiftShader headless, no network side traffic
const FLAGS = [
  '--enable-unsafe-webgpu',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
]
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.wgsl': 'text/plain; charset=utf-8',
  '.safetensors': 'application/octet-stream',
}

let project: PackedProject
let server: Server
let base: string
let context: BrowserContext | undefined
let profile: string

/** A static file server for the project directory (no directory listings, nothing outside it). */
function serve(root: string): Promise<Server> {
  const s = createServer(async (req, res) => {
    const path = normalize(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)))
    const file = path.endsWith(sep) ? join(path, 'index.html') : path
    if (!file.startsWith(root + sep)) return void res.writeHead(403).end()
    try {
      const body = await readFile(file)
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(body)
    } catch {
      res.writeHead(404).end()
    }
  })
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(s)))
}

beforeAll(async () => {
  if (!chromiumHere) return
  project = await packedProject()
  await copyFile(join(ROOT, 'examples/browser/index.html'), join(project.dir, 'index.html'))
  await copyFile(join(ROOT, 'examples/mixed-batch.js'), join(project.dir, 'mixed-batch.js'))
  server = await serve(project.dir)
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
  profile = await mkdtemp(join(tmpdir(), 'multilora-chromium-'))
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS })
}, 600_000)

afterAll(async () => {
  await context?.close()
  server?.close()
  if (profile) await rm(profile, { recursive: true, force: true })
})

describe.runIf(chromiumHere)('Browser (headless Chromium)', () => {
  it('loads the package from dist/ and runs the mixed batch on wasm and WebGPU against the reference', async () => {
    const page = await context!.newPage()
    const log: string[] = []
    page.on('console', (m) => log.push(`${m.type()}: ${m.text().slice(0, 300)}`))
    page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`))
    const t0 = performance.now()
    await page.goto(base)
    await page
      .waitForFunction(() => 'report' in window || 'failure' in window, undefined, { timeout: 90_000 })
      .catch((e) => {
        throw new Error(`the page did not finish: ${e.message}\n${log.join('\n')}`)
      })
    const { report, failure } = await page.evaluate(() => ({
      report: (window as { report?: unknown }).report,
      failure: (window as { failure?: string }).failure,
    }))
    if (failure) throw new Error(`the page failed: ${failure}\n${log.join('\n')}`)
    const r = report as BatchReport
    expect(r.runtime).toBe('browser')
    expect(r.webgpuUnavailableReason, 'Chromium with --enable-unsafe-webgpu has a SwiftShader adapter').toBeNull()
    expect(r.backends).toEqual(['wasm', 'webgpu'])
    const errors = await checkReport(r)
    const adapter = await page.evaluate(async () => {
      const a = await (navigator as Navigator & { gpu: GPU }).gpu.requestAdapter()
      return a ? `${a.info.vendor} ${a.info.architecture} ${a.info.description}`.trim() : 'none'
    })
    console.log(`${summary(r, errors)} | adapter ${adapter} | page ${(performance.now() - t0).toFixed(0)} ms`)
    await page.close()
  })
})
