#!/usr/bin/env node
// multilora command line: `multilora bench [--quick] [--table [--shapes LIST]] [--json FILE] [--svg FILE]`, `multilora --help`.
// Arguments are checked here, before anything runs: --help prints the usage, an unknown command or
// option is an error that lists the ones there are. The benchmark is TypeScript run through tsx,
// with the peers as devDependencies: it runs from a checkout of the repository (npm install), not
// from the published package alone.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** Options of `bench`: name -> [the name of its value or false, description]. */
const BENCH_OPTIONS = {
  '--quick': [false, 'the short grid (about a minute; the full run takes about ten)'],
  '--table': [false, 'nine mixed batches, cold caches, peers and threads side by side (bench/results/table.json)'],
  '--shapes': ['LIST', 'with --table: only these of the nine (0-based, comma-separated, e.g. 2,3)'],
  '--json': ['FILE', 'write the results here (default bench/results/bench.json, bench-quick.json with --quick)'],
  '--svg': ['FILE', 'write the chart here (default bench/results/bench.svg, bench-quick.svg with --quick)'],
  '--help': [false, 'print this and exit'],
}
const USAGE = `usage: multilora <command> [options]

commands:
  bench    every backend, 'auto' and the peer libraries timed side by side over the benchmark
           grid, each checked against the float64 reference first (from a repository checkout)
  help     print this and exit

options of bench:
${Object.entries(BENCH_OPTIONS)
  .map(([name, [value, text]]) => `  ${`${name}${value ? ` ${value}` : ''}`.padEnd(13)} ${text}`)
  .join('\n')}`
const OPTION_LIST = Object.entries(BENCH_OPTIONS)
  .map(([name, [value]]) => `${name}${value ? ` ${value}` : ''}`)
  .join(', ')

function fail(message) {
  console.error(`multilora: ${message}; \`multilora --help\` prints the usage`)
  process.exit(2)
}

const [command, ...rest] = process.argv.slice(2)
if (command === undefined) fail('no command given')
if (command === '--help' || command === '-h' || command === 'help') {
  console.log(USAGE)
  process.exit(0)
}
if (command !== 'bench') fail(`unknown command '${command}' (the commands: bench, help)`)

for (let i = 0; i < rest.length; i++) {
  const arg = rest[i]
  if (arg === '--help' || arg === '-h') {
    console.log(USAGE)
    process.exit(0)
  }
  const option = Object.hasOwn(BENCH_OPTIONS, arg) ? BENCH_OPTIONS[arg] : undefined
  if (!option) fail(`unknown ${arg.startsWith('-') ? 'option' : 'argument'} '${arg}' for bench (its options: ${OPTION_LIST})`)
  if (option[0] && (i + 1 >= rest.length || rest[i + 1].startsWith('--'))) fail(`${arg} needs a ${option[0]}`)
  if (option[0]) i++
}

const main = fileURLToPath(new URL(`../bench/cli/${rest.includes('--table') ? 'table' : 'main'}.ts`, import.meta.url))
let tsx
try {
  tsx = import.meta.resolve('tsx')
} catch {
  tsx = null
}
if (!existsSync(main) || !tsx) {
  console.error(
    'multilora bench needs the repository checkout with its devDependencies (tsx, the peer libraries): run it there after npm install',
  )
  process.exit(1)
}
const child = spawn(process.execPath, ['--import', tsx, main, ...rest], {
  stdio: 'inherit',
  env: { XDG_RUNTIME_DIR: '/tmp', ...process.env },
})
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
