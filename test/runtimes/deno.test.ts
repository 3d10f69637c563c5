/**
 * Deno (npm package `deno`): the packed package, installed in an empty project, imported by
 * examples/mixed-batch.js under `deno run`; wasm and WebGPU (navigator.gpu, on lavapipe in CI)
 * checked against the float64 reference.
 */
import { copyFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { has } from '../needs.js'
import { BIN, checkReport, lastJson, packedProject, ROOT, runOk, summary, type BatchReport, type PackedProject } from './harness.js'

const gpuHere = await has('webgpu', 'does not require WebGPU from Deno')
let project: PackedProject

beforeAll(async () => {
  project = await packedProject()
  // use the node_modules npm installed (no registry look-ups by Deno)
  await writeFile(join(project.dir, 'deno.json'), JSON.stringify({ nodeModulesDir: 'manual' }))
  await copyFile(join(ROOT, 'examples/mixed-batch.js'), join(project.dir, 'mixed-batch-deno.js'))
}, 600_000)

describe('Deno', () => {
  it('runs the mixed batch on every backend Deno has (WebGPU wherever Node has a Vulkan driver) against the reference', async () => {
    const r = await runOk(BIN('deno'), ['run', '-A', '--no-lock', 'mixed-batch-deno.js'], {
      cwd: project.dir,
      env: { XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', NO_COLOR: '1' },
      timeoutMs: 120_000,
    })
    const report = lastJson<BatchReport>('deno run mixed-batch.js', r)
    expect(report.runtime).toBe('deno')
    // navigator.gpu exists in Deno: with a Vulkan driver (test/needs.ts) WebGPU must be there;
    // without one Deno may still have it (on OpenGL), and then it is checked too
    if (gpuHere) expect(report.webgpuUnavailableReason).toBeNull()
    if (gpuHere) expect(report.backends).toEqual(['wasm', 'webgpu'])
    expect(report.backends[0]).toBe('wasm')
    expect(report.results.map((x) => x.backend)).toEqual(report.backends)
    const errors = await checkReport(report)
    console.log(`${summary(report, errors)} | process ${r.ms.toFixed(0)} ms`)
  })
})
