/**
 * A Node built-in (or npm package) imported through a variable, so that bundlers for browsers and
 * workers neither follow nor reject it; only code paths that run in Node, Deno or Bun call this.
 */
export function importNode(name: string): Promise<unknown> {
  return import(/* @vite-ignore */ name)
}
