// libp2p 3.x and its helpers (it-queue, mortice, @libp2p/utils, noise, yamux,
// ...) call `Promise.withResolvers`, which Node.js has only from v22; none of
// them declares `engines.node`, so npm installs them on Node 20 without a
// warning and they throw `TypeError: Promise.withResolvers is not a function`
// at the first lock or stream. This is the exact, spec-defined behaviour
// (ES2024), installed only where it is missing. peer.mjs imports this module
// first, so it runs before any libp2p module is evaluated.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve
      let reject
      const promise = new this((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    }
  })
}
