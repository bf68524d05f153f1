// A minimal, independent js-libp2p peer for the mc-node interop test
// (node/tests/js_interop.rs).
//
//   node peer.mjs <multiaddr-of-mc-node/p2p/PEER_ID> <deadline-ms> [topic]
//
// It dials the node over TCP (noise + yamux), runs identify and ping,
// subscribes to the topic (default `mc/knowledge/1`) and prints one JSON
// line per event on stdout:
//
//   {"event":"started","peer":"<own peer id>","gossipsub":"<package@version>"}
//   {"event":"connected","peer":"<node peer id>"}
//   {"event":"identified","peer":...,"agent":...,"protocols":[...]}
//   {"event":"ping","peer":...,"ms":N}
//   {"event":"subscribed","peer":...,"topic":...}      (the node's subscription)
//   {"event":"message","topic":...,"bytes":N,"from":...}
//   {"event":"error","where":...,"message":...}
//   {"event":"done","subscribed":bool,"messages":N}
//
// It exits 0 after the deadline, or earlier when MC_JS_STOP_ON_EOF=1 and its
// stdin closes (the Rust test uses that to stop it once it has seen enough).
// Logs for humans go to stderr (DEBUG=libp2p:* works).

import './node20.mjs' // must stay first: Promise.withResolvers on Node 20
import { readFileSync } from 'node:fs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { multiaddr } from '@multiformats/multiaddr'

// Which gossipsub implementation to load. `@libp2p/gossipsub` is the
// libp2p-3 line (the continuation of `@chainsafe/libp2p-gossipsub`, which
// ends at 14.x on libp2p 2.x); `MC_JS_GOSSIPSUB` overrides it for experiments.
const GOSSIPSUB_PKG = process.env.MC_JS_GOSSIPSUB ?? '@libp2p/gossipsub'

const [addrArg, deadlineArg, topicArg] = process.argv.slice(2)
if (addrArg === undefined || deadlineArg === undefined) {
  process.stderr.write('usage: node peer.mjs <multiaddr/p2p/PEER_ID> <deadline-ms> [topic]\n')
  process.exit(2)
}
const deadlineMs = Number(deadlineArg)
const topic = topicArg ?? 'mc/knowledge/1'

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function pkgVersion (name) {
  try {
    const url = new URL(`./node_modules/${name}/package.json`, import.meta.url)
    return JSON.parse(readFileSync(url, 'utf8')).version
  } catch {
    return 'unknown'
  }
}

const { gossipsub } = await import(GOSSIPSUB_PKG)

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    pubsub: gossipsub({
      // Defaults otherwise: StrictSign, the meshsub protocol list of the package.
      emitSelf: false,
      allowPublishToZeroTopicPeers: true
    })
  }
})

let subscribed = false
let messages = 0
const pubsub = node.services.pubsub

pubsub.addEventListener('subscription-change', (evt) => {
  const { peerId, subscriptions } = evt.detail
  for (const sub of subscriptions) {
    if (sub.subscribe) {
      if (sub.topic === topic) subscribed = true
      emit({ event: 'subscribed', peer: peerId.toString(), topic: sub.topic })
    } else {
      emit({ event: 'unsubscribed', peer: peerId.toString(), topic: sub.topic })
    }
  }
})

pubsub.addEventListener('message', (evt) => {
  const msg = evt.detail
  messages += 1
  emit({
    event: 'message',
    topic: msg.topic,
    bytes: msg.data.length,
    from: msg.type === 'signed' ? msg.from.toString() : null
  })
})

node.addEventListener('peer:connect', (evt) => {
  emit({ event: 'connected', peer: evt.detail.toString() })
})
node.addEventListener('peer:identify', (evt) => {
  const { peerId, agentVersion, protocols } = evt.detail
  emit({ event: 'identified', peer: peerId.toString(), agent: agentVersion ?? null, protocols })
})
node.addEventListener('peer:disconnect', (evt) => {
  emit({ event: 'disconnected', peer: evt.detail.toString() })
})

pubsub.subscribe(topic)
emit({
  event: 'started',
  peer: node.peerId.toString(),
  gossipsub: `${GOSSIPSUB_PKG}@${pkgVersion(GOSSIPSUB_PKG)}`,
  libp2p: pkgVersion('libp2p')
})

const target = multiaddr(addrArg)
try {
  await node.dial(target, { signal: AbortSignal.timeout(Math.max(1000, deadlineMs)) })
  const ms = await node.services.ping.ping(target, { signal: AbortSignal.timeout(5000) })
  emit({ event: 'ping', peer: target.getComponents().find(c => c.name === 'p2p')?.value ?? null, ms })
} catch (err) {
  emit({ event: 'error', where: 'dial/ping', message: String(err?.message ?? err) })
}

await new Promise((resolve) => {
  setTimeout(resolve, Math.max(0, deadlineMs))
  if (process.env.MC_JS_STOP_ON_EOF === '1') {
    process.stdin.on('end', resolve)
    process.stdin.on('error', resolve)
    process.stdin.resume()
  }
})
emit({ event: 'done', subscribed, messages })
await node.stop()
process.exit(0)
