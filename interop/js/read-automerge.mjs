// Reads an Automerge document exported by mc-node (GET /v1/documents/{id})
// with the JavaScript @automerge/automerge package and prints its entries
// as one JSON object: key -> the stored entry string, untouched (parsing it
// here would round numbers through JavaScript doubles).
//
//   node read-automerge.mjs FILE
import { readFileSync } from "node:fs";
import * as Automerge from "@automerge/automerge";

const file = process.argv[2];
if (!file) {
  console.error("usage: node read-automerge.mjs FILE");
  process.exit(2);
}
const doc = Automerge.load(new Uint8Array(readFileSync(file)));
const entries = doc.entries ?? {};
const out = {};
for (const [key, value] of Object.entries(entries)) {
  // Automerge JS gives strings as plain strings (or RawString objects).
  out[key] = typeof value === "string" ? value : String(value);
}
console.log(JSON.stringify({ heads: Automerge.getHeads(doc), entries: out }));
