import { afterAll, beforeAll } from 'vitest'
import type { Runtime } from '../src/index.js'
import { gridSuite, runtimeFor } from './suite.js'

let rt: Runtime
beforeAll(async () => {
  rt = await runtimeFor('wasm')
})
afterAll(() => rt?.dispose())

gridSuite('wasm', () => rt)
