/**
 * The command line (bin/multilora.mjs): --help prints the usage and exits 0, for the program and
 * for bench; a missing or unknown command, an unknown option or argument, and an option without
 * its value exit 2 naming what exists, before anything runs (the benchmark itself is never
 * started here).
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const BIN = fileURLToPath(new URL('../bin/multilora.mjs', import.meta.url))
const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000 })

describe('multilora command line', () => {
  it.each([[['--help']], [['-h']], [['help']], [['bench', '--help']], [['bench', '-h']], [['bench', '--quick', '--help']]])(
    '%j prints the usage and exits 0',
    (args) => {
      const r = cli(...args)
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/^usage: multilora <command>/)
      for (const option of ['--quick', '--table', '--shapes LIST', '--json FILE', '--svg FILE', '--help'])
        expect(r.stdout).toContain(option)
      expect(r.stderr).toBe('')
    },
  )

  it.each([
    [[], /no command given/],
    [['bogus'], /unknown command 'bogus' \(the commands: bench, help\)/],
    [['--quick'], /unknown command '--quick'/],
    [
      ['bench', '--bogus'],
      /unknown option '--bogus' for bench \(its options: --quick, --table, --shapes LIST, --json FILE, --svg FILE, --help\)/,
    ],
    [['bench', '--quick', 'extra'], /unknown argument 'extra' for bench \(its options: --quick/],
    [['bench', '--json'], /--json needs a FILE/],
    [['bench', '--svg', '--quick'], /--svg needs a FILE/],
    [['bench', '--table', '--shapes'], /--shapes needs a LIST/],
  ] as [string[], RegExp][])('%j is an error naming what exists', (args, message) => {
    const r = cli(...args)
    expect(r.status, r.stdout).toBe(2)
    expect(r.stderr).toMatch(message)
    expect(r.stderr).toContain('`multilora --help` prints the usage')
    expect(r.stdout).toBe('')
  })
})
