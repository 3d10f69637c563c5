/**
 * Bun (npm package `bun`): the packed package, installed in an empty project, imported by
 * examples/mixed-batch.js under `bun run`; wasm checked against the float64 reference, WebGPU
 * reported unavailable (Bun has no navigator.gpu, and the Dawn addon is never loaded under Bun).
 */
import { copyFile } from 'node:fs/promises'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { BIN, checkReport, lastJson, packedProject, ROOT, runOk, summary, type BatchReport, type PackedProject } from './harness.js'

let project: PackedProject

beforeAll(async () => {
  project = await packedProject()
  await copyFile(join(ROOT, 'examples/mixed-batch.js'), join(project.dir, 'mixed-batch-bun.js'))
}, 600_000)

describe('Bun', () => {
  it('runs the mixed batch on wasm against the reference; WebGPU is reported unavailable', async () => {
    const r = await runOk(BIN('bun'), ['run', 'mixed-batch-bun.js'], { cwd: project.dir, env: { NO_COLOR: '1' }, timeoutMs: 120_000 })
    const report = lastJson<BatchReport>('bun run mixed-batch.js', r)
    expect(report.runtime).toBe('bun')
    expect(report.backends).toEqual(['wasm'])
    expect(report.webgpuUnavailableReason).toMatch(/navigator\.gpu/)
    const errors = await checkReport(report)
    console.log(`${summary(report, errors)}; webgpu: ${report.webgpuUnavailableReason} | process ${r.ms.toFixed(0)} ms`)
  })
})
