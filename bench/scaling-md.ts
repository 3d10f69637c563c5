/**
 * Markdown tables of bench/threads-scaling.ts and bench/regret.ts results, written next to their
 * JSON. Regenerate from saved results: npx tsx bench/scaling-md.ts SCALING.json REGRET.json
 */
import { readFileSync, writeFileSync } from 'node:fs'

interface ScalingRun {
  cores: number
  cpu: string
  rounds: number
  copyRate?: { inGBs: number; outGBs: number; plainGBs?: number }
  readGBs?: Record<string, number>
  results: Record<string, unknown>[]
}
interface RegretRun {
  cores: number
  cpu: string
  profile?: { machine?: { gpu?: { description?: string } | null } } | null
  threads: number
  summary: { points: number; median: number; max: number; above110: number; above125: number }
  points: Record<string, unknown>[]
}

const f = (v: unknown, d = 2) => (typeof v === 'number' ? v.toFixed(d) : '-')

/** Speed-up over one thread per forced thread count, ordinary and host arrays; small calls per pool size. */
export function scalingMarkdown(run: ScalingRun): string {
  const rows = run.results
  const counts = [...new Set(rows.filter((r) => r.kind === 'scaling').map((r) => r.threads as number))]
  const lines = [
    `Thread scaling, ${run.cores} cores (${run.cpu}), median of ${run.rounds} interleaved calls, cold weights, 8 adapters round-robin (bench/threads-scaling.ts).`,
    '',
    `Every call forced onto n threads: ms (speed-up over 1 thread); "host" = x and y in host arrays (rt.hostArray, no copies).`,
    '',
    ...(run.copyRate
      ? [
          `The main thread copies an ordinary array into the runtime's shared memory at ${f(run.copyRate.inGBs, 1)} GB/s and out at ${f(run.copyRate.outGBs, 1)} GB/s${run.copyRate.plainGBs ? ` (one ordinary array into another: ${f(run.copyRate.plainGBs, 1)} GB/s)` : ''} (same run): "floor" = x and y in and y out at those rates, the least an ordinary-array call can take.`,
          '',
        ]
      : []),
    `| shape | T | arrays | ${counts.map((n) => `${n}`).join(' | ')} |${run.copyRate ? ' floor |' : ''}`,
    `|---|---|---|${counts.map(() => '---').join('|')}|${run.copyRate ? '---|' : ''}`,
  ]
  for (const r of rows.filter((x) => x.kind === 'scaling' && x.threads === 1)) {
    const cells = counts.map(
      (n) => rows.find((x) => x.kind === 'scaling' && x.shape === r.shape && x.T === r.T && x.host === r.host && x.threads === n)!,
    )
    lines.push(
      `| ${r.shape} | ${r.T} | ${r.host ? 'host' : 'ordinary'} | ${cells.map((c) => `${f(c.ms, 3)} (${f(c.speedup)}x)`).join(' | ')} |${
        run.copyRate ? ` ${r.host ? '' : f(r.copyFloorMs, 3)} |` : ''
      }`,
    )
  }
  const read = run.readGBs
  if (read) {
    const max = counts.at(-1)!
    // host arrays: what the calls streamed against what the machine reads with that many threads
    lines.push(
      '',
      `Read bandwidth of this machine with n threads reading at once (each its own 64 MiB; same run): ${counts.map((n) => `${n}: ${f(read[n], 1)} GB/s`).join(', ')}.`,
      `Host arrays: GB/s of each call (cold weights, x read, y read and written, over its time) / that rate for its thread count. ` +
        `"bound": the speed-up over 1 thread at which the ${max}-thread call would stream at the ${max}-thread read rate.`,
      '',
      `| shape | T | ${counts.map((n) => `${n}`).join(' | ')} | bound |`,
      `|---|---|${counts.map(() => '---').join('|')}|---|`,
    )
    for (const r of rows.filter((x) => x.kind === 'scaling' && x.threads === 1 && x.host && typeof x.GBs === 'number')) {
      const cells = counts.map(
        (n) => rows.find((x) => x.kind === 'scaling' && x.shape === r.shape && x.T === r.T && x.host && x.threads === n)!,
      )
      // t1 / (bytes / read_max) = read_max / GBs_1
      const bound = read[max] / (r.GBs as number)
      lines.push(`| ${r.shape} | ${r.T} | ${cells.map((c) => `${f(c.GBs, 1)} / ${f(c.ofRead)}`).join(' | ')} | ${f(bound, 1)}x |`)
    }
  }
  const pools = [...new Set(rows.filter((r) => r.kind === 'small').map((r) => (r.pool as string).replace(' host', '')))]
  lines.push(
    '',
    `Small calls on runtimes created with \`threads: n\` (each call's own choice): ms / the single-threaded runtime's ms.`,
    '',
    `| shape | T | arrays | ${pools.join(' | ')} |`,
    `|---|---|---|${pools.map(() => '---').join('|')}|`,
  )
  for (const r of rows.filter((x) => x.kind === 'small' && (x.pool === 'single' || x.pool === 'single host'))) {
    const cells = pools.map(
      (p) =>
        rows.find(
          (x) =>
            x.kind === 'small' && x.shape === r.shape && x.T === r.T && x.host === r.host && (x.pool as string).replace(' host', '') === p,
        )!,
    )
    lines.push(
      `| ${r.shape} | ${r.T} | ${r.host ? 'host' : 'ordinary'} | ${cells.map((c) => `${f(c.ms, 3)} / ${f(c.overSingle)}`).join(' | ')} |`,
    )
  }
  return `${lines.join('\n')}\n`
}

/** time(the forced backend chosen) / time(the best forced backend) at one point of a regret run. */
export function choiceRegret(chose: unknown, wasmMs: number, webgpuMs: number | null | undefined): number {
  const gpu = typeof webgpuMs === 'number' ? webgpuMs : Infinity
  return (chose === 'webgpu' ? gpu : wasmMs) / Math.min(wasmMs, gpu)
}

/**
 * The choices apart from their timing: per point, time(forced backend 'auto' chose) / time(best
 * forced backend). Where 'auto' chose the fastest backend this is 1, and whatever its regret holds
 * beyond that is 'auto''s own cost plus the run-to-run noise of one path timed twice.
 */
export function choiceSummary(points: Record<string, unknown>[]): { right: number; points: number; max: number; above110: number } {
  const rs = points.map((p) => choiceRegret(p.chose, p.wasmMs as number, p.webgpuMs as number | null))
  return { right: rs.filter((r) => r === 1).length, points: rs.length, max: Math.max(...rs), above110: rs.filter((r) => r > 1.1).length }
}

/** The timed 'auto' calls of a point per backend ("wasm / webgpu"), where the run recorded them. */
function autoRan(p: Record<string, unknown>): string {
  const r = p.autoRan as { wasm: number; webgpu: number } | undefined
  return r ? `${r.wasm} / ${r.webgpu}` : '-'
}

/** Points where 'auto' ran most of its timed calls on the backend that was fastest forced (recorded runs only). */
function ranFastest(points: Record<string, unknown>[]): { right: number; points: number } {
  const recorded = points.filter((p) => p.autoRan !== undefined)
  const right = recorded.filter((p) => {
    const r = p.autoRan as { wasm: number; webgpu: number }
    return choiceRegret(r.webgpu > r.wasm ? 'webgpu' : 'wasm', p.wasmMs as number, p.webgpuMs as number | null) === 1
  })
  return { right: right.length, points: recorded.length }
}

/** Every point of a regret run, and the summary. */
export function regretMarkdown(run: RegretRun): string {
  const s = run.summary
  const c = choiceSummary(run.points)
  const ran = ranFastest(run.points)
  const lines = [
    `Dispatcher regret, time('auto') / time(best forced backend), x and y ordinary arrays on the host, ${run.cores} cores (${run.cpu}), GPU ${run.profile?.machine?.gpu?.description ?? 'none'}, wasm on ${run.threads} thread(s) (bench/regret.ts):`,
    `median ${f(s.median, 3)}, max ${f(s.max, 3)}, ${s.above110} of ${s.points} points above 1.10, ${s.above125} above 1.25.`,
    `The cost model (rt.explain: the choice before a layer has timed any call) picked the backend that was fastest forced at ${c.right} of ${c.points} points; time(its backend forced) / time(best forced): max ${f(c.max, 3)}, ${c.above110} above 1.10. 'auto' itself decides on the times of its own calls once it has them, so its regret can be below that.`,
    ...(ran.points > 0
      ? [`'auto' ran most of its timed calls on the backend that was fastest forced at ${ran.right} of ${ran.points} points.`]
      : []),
    '',
    "| shape | adapters | dtype | T | auto ms | model chose | 'auto' ran (wasm / webgpu calls) | wasm ms | webgpu ms | regret |",
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for (const p of run.points)
    lines.push(
      `| ${p.shape} | ${p.D} | ${p.dtype} | ${p.T} | ${f(p.autoMs, 3)} | ${p.chose} | ${autoRan(p)} | ${f(p.wasmMs, 3)} | ${f(p.webgpuMs, 3)} | ${f(p.regret, 3)} |`,
    )
  return `${lines.join('\n')}\n`
}

if (process.argv[1]?.endsWith('scaling-md.ts')) {
  const [scaling, regret] = process.argv.slice(2)
  if (scaling) writeFileSync(scaling.replace(/\.json$/, '.md'), scalingMarkdown(JSON.parse(readFileSync(scaling, 'utf8'))))
  if (regret) writeFileSync(regret.replace(/\.json$/, '.md'), regretMarkdown(JSON.parse(readFileSync(regret, 'utf8'))))
}
