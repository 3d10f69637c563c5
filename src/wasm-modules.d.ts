// `import m from 'x.wasm'` gives a compiled module where a bundler or runtime supports it
// (wrangler, miniflare, workerd): only src/workerd.ts does this.
declare module '*.wasm' {
  const module: WebAssembly.Module
  export default module
}
