/**
 * The multi-threaded wasm backend in each real runtime: examples/threads-batch.js (the packed
 * package, createRuntime({ threads: 2 })) under Node, Deno and Bun, and in headless Chromium on a
 * cross-origin isolated page (two threads) and on a plain page (one thread, with the reason).
 * Every result is checked against the float64 reference, and each process must exit by itself
 * once the runtime is disposed (the workers end). Cloudflare Workers (no threads) are covered by
 * workerd.test.ts.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { extname, join, normalize, sep } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CHROMIUM, has } from '../needs.js'
import { BIN, checkReport, lastJson, packedProject, ROOT, runOk, summary, type BatchReport, type PackedProject } from './harness.js'

interface ThreadsReport extends BatchReport {
  threads: number
  threadsUnavailableReason: string | null
}

const chromiumHere = await has('chromium', 'skipped its Chromium part')
const FLAGS = [
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

beforeAll(async () => {
  project = await packedProject()
  await copyFile(join(ROOT, 'examples/threads-batch.js'), join(project.dir, 'threads-batch.js'))
  await copyFile(join(ROOT, 'examples/browser/index.html'), join(project.dir, 'threads-index.html'))
  await writeFile(join(project.dir, 'deno.json'), JSON.stringify({ nodeModulesDir: 'manual' }))
}, 600_000)

async function expectTwoThreads(report: ThreadsReport, runtime: string, ms: number): Promise<void> {
  expect(report.runtime).toBe(runtime)
  expect(report.threadsUnavailableReason).toBeNull()
  expect(report.threads).toBe(2)
  const errors = await checkReport(report)
  console.log(`${summary(report, errors)} | ${report.threads} threads | process ${ms.toFixed(0)} ms`)
}

describe('threads in each runtime (createRuntime({ threads: 2 }))', () => {
  it('Node: two threads, correct, and the process exits after dispose', async () => {
    const r = await runOk(process.execPath, ['threads-batch.js'], { cwd: project.dir, timeoutMs: 60_000 })
    await expectTwoThreads(lastJson<ThreadsReport>('node threads-batch.js', r), 'node', r.ms)
  })

  it('Deno: two threads (module workers), correct, exits', async () => {
    const r = await runOk(BIN('deno'), ['run', '-A', '--no-lock', 'threads-batch.js'], {
      cwd: project.dir,
      env: { NO_COLOR: '1' },
      timeoutMs: 120_000,
    })
    await expectTwoThreads(lastJson<ThreadsReport>('deno run threads-batch.js', r), 'deno', r.ms)
  })

  it('Bun: two threads, correct, exits', async () => {
    const r = await runOk(BIN('bun'), ['run', 'threads-batch.js'], { cwd: project.dir, env: { NO_COLOR: '1' }, timeoutMs: 120_000 })
    await expectTwoThreads(lastJson<ThreadsReport>('bun run threads-batch.js', r), 'bun', r.ms)
  })
})

describe.runIf(chromiumHere)('threads in headless Chromium', () => {
  let context: BrowserContext | undefined
  let profile: string | undefined
  const servers: Server[] = []

  /** A static server of the project; `isolated` adds the COOP/COEP headers that enable SharedArrayBuffer. */
  function serve(isolated: boolean): Promise<string> {
    const root = project.dir
    const s = createServer(async (req, res) => {
      const path = normalize(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)))
      if (!path.startsWith(root + sep)) return void res.writeHead(403).end()
      const headers: Record<string, string> = { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream' }
      if (isolated) Object.assign(headers, { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' })
      let body: Buffer
      try {
        body = await readFile(path)
      } catch {
        return void res.writeHead(404).end()
      }
      res.writeHead(200, headers).end(body)
    })
    servers.push(s)
    return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}/`)))
  }

  async function runPage(base: string): Promise<ThreadsReport> {
    const page = await context!.newPage()
    const log: string[] = []
    page.on('console', (m) => log.push(`${m.type()}: ${m.text().slice(0, 300)}`))
    page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`))
    await page.goto(`${base}threads-index.html?example=threads-batch`)
    await page
      .waitForFunction(() => 'report' in window || 'failure' in window, undefined, { timeout: 90_000 })
      .catch((e) => {
        throw new Error(`the page did not finish: ${e.message}\n${log.join('\n')}`)
      })
    const { report, failure } = await page.evaluate(() => ({
      report: (window as { report?: unknown }).report,
      failure: (window as { failure?: string }).failure,
    }))
    await page.close()
    if (failure) throw new Error(`the page failed: ${failure}\n${log.join('\n')}`)
    return report as ThreadsReport
  }

  beforeAll(async () => {
    profile = await mkdtemp(join(tmpdir(), 'multilora-chromium-threads-'))
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS })
  }, 120_000)

  afterAll(async () => {
    await context?.close()
    for (const s of servers) s.close()
    if (profile) await rm(profile, { recursive: true, force: true })
  })

  it('a cross-origin isolated page runs on two threads (module workers over shared memory)', async () => {
    const t0 = performance.now()
    await expectTwoThreads(await runPage(await serve(true)), 'browser', performance.now() - t0)
  })

  it('a page that is not cross-origin isolated runs on one thread and says why', async () => {
    const report = await runPage(await serve(false))
    expect(report.threads).toBe(1)
    expect(report.threadsUnavailableReason).toMatch(/cross-origin isolated/)
    const errors = await checkReport(report)
    console.log(`${summary(report, errors)} | 1 thread: ${report.threadsUnavailableReason}`)
  })
})
