/**
 * `npm run soak`: the full soak (1,000 PEFT adapters on disk, a pool budget of 10% of their
 * bytes, 10,000 random mixed batches over every backend, each checked against the float64
 * reference). Options: --adapters N --batches N --budget F --concurrency N --seed N --backend B.
 * Prints progress and the report, writes bench/results/soak.json, exits 1 on any wrong result.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { runSoak, type SoakConfig } from '../test/soak-run.js'
import { writeResultsMarkdown } from './results-md.js'

process.env.XDG_RUNTIME_DIR ??= '/tmp'

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}

const cfg: SoakConfig = {
  adapters: arg('adapters', 1000),
  batches: arg('batches', 10_000),
  budgetFraction: arg('budget', 0.1),
  concurrency: arg('concurrency', 4),
  seed: arg('seed', 1),
  progressEvery: 1000,
  backend: process.argv.includes('--backend') ? (process.argv[process.argv.indexOf('--backend') + 1] as SoakConfig['backend']) : undefined,
  onProgress: (done, r) => {
    ;(globalThis as { gc?: () => void }).gc?.() // with --expose-gc: the heap figure is what is live
    const m = process.memoryUsage()
    console.log(
      `${done} batches: wrong ${r.wrong}, errors ${JSON.stringify(r.errors)}, rss ${Math.round(m.rss / 2 ** 20)} MB, heap ${Math.round(m.heapUsed / 2 ** 20)} MB`,
    )
  },
}
console.log(
  `soak: ${JSON.stringify({ ...cfg, onProgress: undefined })}${(globalThis as { gc?: unknown }).gc ? '' : ' (run with --expose-gc for exact RSS growth)'}`,
)
const report = await runSoak(cfg)
console.log(JSON.stringify(report, null, 2))
await mkdir(new URL('./results/', import.meta.url), { recursive: true })
await writeFile(
  new URL('./results/soak.json', import.meta.url),
  `${JSON.stringify({ date: new Date().toISOString(), node: process.version, config: { ...cfg, onProgress: undefined }, report }, null, 2)}\n`,
)
writeResultsMarkdown()
const failed = report.wrong > 0 || Object.keys(report.errors).length > 0
if (failed) console.error(`SOAK FAILED:\n${report.failures.join('\n')}`)
process.exit(failed ? 1 : 0)
