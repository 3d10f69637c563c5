#!/usr/bin/env node
// multilora command line: `multilora bench [--quick] [--json FILE] [--svg FILE]`.
// The benchmark is TypeScript run through tsx, with the peers as devDependencies: it runs from a
// checkout of the repository (npm install), not from the published package alone.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const [command, ...rest] = process.argv.slice(2)
const usage = 'usage: multilora bench [--quick] [--json FILE] [--svg FILE]'
if (command !== 'bench') {
  console.error(command === undefined || command === '--help' || command === '-h' ? usage : `unknown command '${command}'\n${usage}`)
  process.exit(command === '--help' || command === '-h' ? 0 : 1)
}
const main = fileURLToPath(new URL('../bench/cli/main.ts', import.meta.url))
let tsx
try {
  tsx = import.meta.resolve('tsx')
} catch {
  tsx = null
}
if (!existsSync(main) || !tsx) {
  console.error('multilora bench needs the repository checkout with its devDependencies (tsx, the peer libraries): run it there after npm install')
  process.exit(1)
}
const child = spawn(process.execPath, ['--import', tsx, main, ...rest], {
  stdio: 'inherit',
  env: { XDG_RUNTIME_DIR: '/tmp', ...process.env },
})
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
