/**
 * npm packaging: `npm pack` ships only what users need, the tarball installs into an empty
 * project, and examples/mixed-batch.js runs there under Node against the float64 reference.
 */
import { copyFile, readFile } from 'node:fs/promises'
import { join, posix } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { checkReport, lastJson, packedProject, ROOT, runOk, summary, type BatchReport, type PackedProject } from './harness.js'

let project: PackedProject

beforeAll(async () => {
  project = await packedProject()
}, 600_000)

describe('npm package', () => {
  it('ships dist (JS and types), the .wasm builds and the shaders, nothing else', () => {
    const files = project.files
    expect(files).toContain('dist/index.js')
    expect(files).toContain('dist/index.d.ts')
    expect(files).toContain('dist/workerd.js')
    expect(files).toContain('dist/wasm/loader.js')
    expect(files).toContain('build/multilora-simd.wasm')
    expect(files).toContain('build/multilora-relaxed.wasm')
    expect(files.some((f) => f.startsWith('shaders/') && f.endsWith('.wgsl'))).toBe(true)
    const allowed = (f: string): boolean =>
      /^dist\/.+\.(m?js|d\.m?ts)$/.test(f) ||
      /^build\/multilora-(simd|relaxed|threads|threads-relaxed)\.wasm$/.test(f) ||
      /^shaders\/[^/]+\.wgsl$/.test(f) ||
      ['package.json', 'README.md', 'LICENSE', 'bin/multilora.mjs'].includes(f)
    expect(files.filter((f) => !allowed(f))).toEqual([])
  })

  it('resolves each runtime condition to a file in the package', async () => {
    const pkg = JSON.parse(await readFile(join(project.dir, 'node_modules/multilora/package.json'), 'utf8'))
    const root = pkg.exports['.']
    const targets: string[] = [
      root.workerd.default,
      root.workerd.types,
      root.types,
      root.node,
      root.deno,
      root.bun,
      root.browser,
      root.default,
    ]
    for (const t of targets) expect(project.files, t).toContain(t.replace(/^\.\//, ''))
    // the workerd entry imports both builds as modules, relative to dist/
    const workerd = await readFile(join(project.dir, 'node_modules/multilora/dist/workerd.js'), 'utf8')
    expect(workerd).toMatch(/from '\.\.\/build\/multilora-simd\.wasm'/)
  })

  it('every relative import and new URL(..., import.meta.url) in the package points to a packaged file', async () => {
    const missing: string[] = []
    // bin/multilora.mjs is the Node command line: it runs the benchmark from a repository checkout
    // only, checks that bench/ is there and says so otherwise (the peers are devDependencies).
    for (const f of project.files.filter((p) => /\.m?js$/.test(p) && !p.startsWith('bin/'))) {
      const src = await readFile(join(project.dir, 'node_modules/multilora', f), 'utf8')
      const refs = [
        ...src.matchAll(/\bfrom\s*['"](\.{1,2}\/[^'"]+)['"]/g),
        ...src.matchAll(/\bimport\s*\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g),
        ...src.matchAll(/new URL\(\s*['"`](\.{1,2}\/[^'"`$]+)['"`]\s*,\s*import\.meta\.url/g),
      ].map((m) => m[1])
      for (const ref of refs) {
        const target = posix.normalize(posix.join(posix.dirname(f), ref))
        if (!project.files.includes(target)) missing.push(`${f} -> ${ref}`)
      }
    }
    expect(
      missing,
      'referenced by the packaged code but not in the tarball (not built into dist/, or not in package.json "files")',
    ).toEqual([])
  })

  it('no module other runtimes load has a top-level node: import', async () => {
    const offenders: string[] = []
    for (const f of project.files.filter((p) => p.endsWith('.js'))) {
      const src = await readFile(join(project.dir, 'node_modules/multilora', f), 'utf8')
      // static imports and re-exports (tsc ends each with ';'), bare side-effect imports, require
      const nodeOnly = `(node:[^'"]*|fs|path|os|url|child_process|webgpu)`
      const staticImport = new RegExp(`^\\s*(import|export)\\b[^;]*?\\bfrom\\s*['"]${nodeOnly}['"]|^\\s*import\\s*['"]${nodeOnly}['"]`, 'm')
      if (staticImport.test(src) || /\brequire\(/.test(src)) offenders.push(f)
    }
    expect(offenders).toEqual([])
  })

  it('installed from the tarball, runs a mixed batch under Node against the reference', async () => {
    await copyFile(join(ROOT, 'examples/mixed-batch.js'), join(project.dir, 'mixed-batch-node.js'))
    const r = await runOk(process.execPath, ['mixed-batch-node.js'], {
      cwd: project.dir,
      env: { XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
      timeoutMs: 120_000,
    })
    const report = lastJson<BatchReport>('node mixed-batch.js', r)
    expect(report.runtime).toBe('node')
    expect(report.backends).toContain('wasm')
    expect(report.results.map((x) => x.backend)).toEqual(report.backends)
    const errors = await checkReport(report)
    console.log(`${summary(report, errors)} | process ${r.ms.toFixed(0)} ms`)
  })
})
