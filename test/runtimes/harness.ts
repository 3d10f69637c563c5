/**
 * Shared by the runtime tests (test/runtimes/*.test.ts): the packed package installed into an
 * empty project, subprocesses with clear failures, and the check of a runtime's output against
 * the float64 reference.
 *
 * The package is built and packed once per set of inputs (src, shaders, bin, the .wasm builds,
 * package.json): the first test file to need it copies those inputs into a folder under the OS
 * temp directory, builds dist/ there (the checkout's dist/ is left alone), runs `npm pack`, and
 * installs the tarball into an empty project beside it with the example adapters; the other test
 * files (other processes) wait on a lock directory and reuse it.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { cp, mkdir, readdir, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { decodeHalf } from '../../src/dtype.js'
import { readSafetensors } from '../../src/peft/safetensors.js'
import { expectDelta, TOLERANCE } from '../compare.js'
import { sgmv, type RefAdapter } from '../reference.js'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const ADAPTERS = join(ROOT, 'test/fixtures/peft/tiny-llama-public/adapters')
export const BIN = (name: string): string => join(ROOT, 'node_modules/.bin', name)

// ---------------------------------------------------------------- subprocesses

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  ms: number
}

/** Run a command; never rejects (the caller asserts), but kills it after `timeoutMs`. */
export function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d))
    child.stderr.on('data', (d: Buffer) => (stderr += d))
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${opts.timeoutMs} ms]`
      child.kill('SIGKILL')
    }, opts.timeoutMs ?? 120_000)
    child.on('error', (e) => {
      clearTimeout(timer)
      resolve({ code: null, signal: null, stdout, stderr: `${stderr}\n[spawn failed: ${e.message}]`, ms: performance.now() - t0 })
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0 })
    })
  })
}

/** Run and throw with the command, exit status and output tails unless it exits with 0. */
export async function runOk(cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) throw new Error(describeRun(`${cmd} ${args.join(' ')}`, r))
  return r
}

export function describeRun(what: string, r: RunResult): string {
  const tail = (s: string): string => (s.length > 4000 ? `...${s.slice(-4000)}` : s)
  return `${what} exited with ${r.code ?? r.signal}\n--- stdout\n${tail(r.stdout)}\n--- stderr\n${tail(r.stderr)}`
}

/** The last stdout line that is a JSON object (the examples print exactly one). */
export function lastJson<T>(what: string, r: RunResult): T {
  const line = r.stdout
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{'))
  if (!line) throw new Error(`${what} printed no JSON result\n${describeRun(what, r)}`)
  return JSON.parse(line) as T
}

// ---------------------------------------------------------------- the packed package

export interface PackedProject {
  /** An empty project with the tarball installed (node_modules/multilora) and adapters/ copied in. */
  dir: string
  tarball: string
  /** Paths inside the tarball (relative to the package root). */
  files: string[]
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...(await listFiles(p)))
    else out.push(p)
  }
  return out.sort()
}

/** What the package is built and packed from (besides build/*.wasm). */
const INPUTS = [
  'package.json',
  'README.md',
  'tsconfig.json',
  'tsconfig.build.json',
  'src',
  'shaders',
  'bin',
  'scripts/copy-dist-assets.mjs',
]

async function inputFiles(): Promise<string[]> {
  const files: string[] = []
  for (const p of INPUTS) {
    const full = join(ROOT, p)
    files.push(...((await stat(full).catch(() => null))?.isDirectory() ? await listFiles(full) : [full]))
  }
  return [...files, ...(await listFiles(join(ROOT, 'build'))).filter((f) => f.endsWith('.wasm'))]
}

async function inputsHash(): Promise<string> {
  const h = createHash('sha256')
  for (const f of await inputFiles()) {
    h.update(relative(ROOT, f))
    h.update(await readFile(f).catch(() => Buffer.from('missing')))
  }
  return h.digest('hex').slice(0, 16)
}

/** The folder of package `name` as Node resolves it from `from` (nested node_modules first). */
async function packageDir(name: string, from: string): Promise<string | null> {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name)
    if (await stat(join(candidate, 'package.json')).catch(() => null)) return candidate
    if (dir === dirname(dir) || !dir.startsWith(ROOT)) return null
  }
}

/**
 * The package's dependencies and theirs, as installed in this checkout's node_modules, packed
 * into `into`: installing these tarballs beside the package's needs neither the registry nor the
 * npm cache. Optional dependencies are left out (the WebGPU package for Node: tests in Node use
 * it from src/; Deno and browsers have their own WebGPU).
 */
async function packDependencies(deps: Record<string, string> | undefined, into: string): Promise<string[]> {
  const dirs = new Map<string, string>()
  const visit = async (list: Record<string, string> | undefined, from: string): Promise<void> => {
    for (const name of Object.keys(list ?? {})) {
      const dir = await packageDir(name, from)
      if (!dir) throw new Error(`${name} (a dependency of the package) is not installed in ${ROOT}node_modules: run npm install`)
      if (dirs.has(dir)) continue
      dirs.set(dir, name)
      await visit(
        (JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }).dependencies,
        dir,
      )
    }
  }
  await visit(deps, ROOT)
  if (dirs.size === 0) return []
  await mkdir(into, { recursive: true })
  const packed = await runOk('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', into, ...dirs.keys()], {
    timeoutMs: 120_000,
  })
  return (JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string }[]).map((p) => join(into, p.filename))
}

async function withLock<T>(lockDir: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 300_000
  for (;;) {
    try {
      await mkdir(lockDir)
      await writeFile(join(lockDir, 'pid'), String(process.pid))
      break
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
      // a lock left by a process that died is taken over
      const pid = Number(await readFile(join(lockDir, 'pid'), 'utf8').catch(() => 'NaN'))
      let alive = true
      try {
        if (Number.isFinite(pid)) process.kill(pid, 0)
      } catch {
        alive = false
      }
      if (!alive) await rm(lockDir, { recursive: true, force: true })
      else if (Date.now() > deadline) throw new Error(`timed out waiting for ${lockDir} (held by pid ${pid})`)
      else await new Promise((r) => setTimeout(r, 250))
    }
  }
  try {
    return await fn()
  } finally {
    await rm(lockDir, { recursive: true, force: true })
  }
}

/** Projects of earlier inputs, unused for an hour (a run still using one is never that old). */
async function removeStale(base: string, keep: string): Promise<void> {
  for (const e of await readdir(base, { withFileTypes: true })) {
    if (!e.isDirectory() || e.name === keep || e.name === 'lock') continue
    const s = await stat(join(base, e.name)).catch(() => null)
    if (s && Date.now() - s.mtimeMs > 3_600_000) await rm(join(base, e.name), { recursive: true, force: true })
  }
}

/** Build, pack and install the package once per set of inputs (see the header). */
export async function packedProject(): Promise<PackedProject> {
  const base = join(tmpdir(), 'multilora-runtimes')
  await mkdir(base, { recursive: true })
  return withLock(join(base, 'lock'), async () => {
    const key = await inputsHash()
    const cache = join(base, key)
    const ready = join(cache, 'ready.json')
    const done = await readFile(ready, 'utf8').catch(() => null)
    if (done) {
      await utimes(cache, new Date(), new Date()) // in use: not stale
      return JSON.parse(done) as PackedProject
    }
    await rm(cache, { recursive: true, force: true })
    await mkdir(cache, { recursive: true })

    // build: the .wasm only if missing (CI builds it before the tests); dist/ from scratch in a
    // copy of the inputs, with this checkout's node_modules
    const wasmMissing = await Promise.all(
      ['simd', 'relaxed'].map((v) =>
        stat(join(ROOT, `build/multilora-${v}.wasm`)).then(
          () => false,
          () => true,
        ),
      ),
    )
    if (wasmMissing.some(Boolean)) await runOk('npm', ['run', 'build:wasm'], { timeoutMs: 240_000 })
    const stage = join(cache, 'package')
    for (const f of await inputFiles()) {
      await mkdir(dirname(join(stage, relative(ROOT, f))), { recursive: true })
      await cp(f, join(stage, relative(ROOT, f)))
    }
    await symlink(join(ROOT, 'node_modules'), join(stage, 'node_modules'), 'dir')
    await runOk('npm', ['run', 'build:ts'], { cwd: stage, timeoutMs: 240_000 })

    const packed = await runOk('npm', ['pack', '--json', '--pack-destination', cache], { cwd: stage, timeoutMs: 120_000 })
    const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[]
    const tarball = join(cache, info[0].filename)
    const pkg = JSON.parse(await readFile(join(stage, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }
    const deps = await packDependencies(pkg.dependencies, join(cache, 'deps'))

    // an empty project that installs the tarball and its dependencies' tarballs (--offline: npm
    // must not need the registry, whatever its cache holds)
    const dir = join(cache, 'project')
    await mkdir(dir)
    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2))
    await runOk('npm', ['install', '--offline', '--omit=optional', '--no-audit', '--no-fund', tarball, ...deps], {
      cwd: dir,
      timeoutMs: 180_000,
    })
    await cp(ADAPTERS, join(dir, 'adapters'), { recursive: true })

    const project: PackedProject = { dir, tarball, files: info[0].files.map((f) => f.path).sort() }
    await writeFile(ready, JSON.stringify(project))
    await removeStale(base, key)
    return project
  })
}

// ---------------------------------------------------------------- the example batch and its reference

/** What examples/mixed-batch.js (and the worker) report. */
export interface BatchReport {
  runtime: string
  backends: string[]
  wasmVariant: string | null
  webgpuUnavailableReason: string | null
  module: string
  tokens: (string | string[] | null)[]
  results: { backend: string; ms: number; y: number[] }[]
}

/** The example's input, x[i] = ((37 i) mod 101) / 50 - 1: exact in every engine. */
export function exampleX(length: number): Float32Array {
  return Float32Array.from({ length }, (_, i) => ((i * 37) % 101) / 50 - 1)
}

const NAMES = ['math', 'code'] as const

/** PEFT's tensors of one module, decoded to f32; scale = lora_alpha / r read from the raw config. */
async function refAdapter(name: string, module: string): Promise<RefAdapter & { inF: number; outF: number }> {
  const config = JSON.parse(await readFile(join(ADAPTERS, name, 'adapter_config.json'), 'utf8')) as Record<string, unknown>
  if (config.use_rslora || Object.keys(config.rank_pattern as object).length || Object.keys(config.alpha_pattern as object).length) {
    throw new Error(`reference: ${name} uses rslora or patterns; this helper only knows lora_alpha / r`)
  }
  const file = readSafetensors(new Uint8Array(await readFile(join(ADAPTERS, name, 'adapter_model.safetensors'))))
  const f32 = (suffix: string): { data: Float32Array; shape: number[] } => {
    const t = file.tensors.get(`base_model.model.${module}.${suffix}`)
    if (!t) throw new Error(`reference: ${name} has no ${module}.${suffix}`)
    const data = t.dtype === 'F32' ? (t.data as Float32Array) : decodeHalf(t.data as Uint16Array, t.dtype === 'F16' ? 'f16' : 'bf16')
    return { data, shape: t.shape }
  }
  const A = f32('lora_A.weight')
  const B = f32('lora_B.weight')
  const rank = A.shape[0]
  return { rank, scale: (config.lora_alpha as number) / (config.r as number), A: [A.data], B: [B.data], inF: A.shape[1], outF: B.shape[0] }
}

/**
 * Check every backend's y (which started at 0) against the float64 reference delta; returns the
 * relative error per backend. Throws with the worst index and both values on a mismatch.
 */
export async function checkReport(report: BatchReport, x?: Float32Array): Promise<Record<string, number>> {
  const ads = await Promise.all(NAMES.map((n) => refAdapter(n, report.module)))
  const inF = ads[0].inF
  const outF = ads[0].outF
  const T = report.tokens.length
  const input = x ?? exampleX(T * inF)
  const ids = new Int32Array(T * 2).fill(-1)
  report.tokens.forEach((tok, t) => {
    const list = tok === null ? [] : Array.isArray(tok) ? tok : [tok]
    list.forEach((n, k) => (ids[t * 2 + k] = NAMES.indexOf(n as (typeof NAMES)[number])))
  })
  const delta = sgmv({ inFeatures: inF, sliceWidths: [outF], adapters: ads }, input, ids, 2)
  if (report.results.length === 0) throw new Error(`${report.runtime}: no results`)
  const errors: Record<string, number> = {}
  for (const r of report.results) {
    const y = Float32Array.from(r.y)
    // the dtype tolerance; f16 weights are decoded exactly, so f32 math is all that differs
    expectDelta(y, new Float32Array(y.length), delta, TOLERANCE.f32, `${report.runtime} ${r.backend}`)
    errors[r.backend] = relError(y, delta)
  }
  return errors
}

function relError(y: Float32Array, delta: Float64Array): number {
  let scale = 0
  let err = 0
  for (let i = 0; i < delta.length; i++) {
    scale = Math.max(scale, Math.abs(delta[i]))
    err = Math.max(err, Math.abs(y[i] - delta[i]))
  }
  return scale > 0 ? err / scale : err
}

/** One line for the test log: relative error and time per backend. */
export function summary(report: BatchReport, errors: Record<string, number>): string {
  return (
    `${report.runtime}: backends ${report.backends.join(',')} (wasm ${report.wasmVariant})` +
    report.results.map((r) => ` | ${r.backend}: rel err ${errors[r.backend].toExponential(2)}, ${r.ms.toFixed(1)} ms`).join('')
  )
}
