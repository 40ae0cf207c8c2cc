/**
 * How long one cache line takes to travel between the two CPUs: the cost every descriptor
 * handoff pays, and the part of a pair's rate that depends on where the hypervisor placed the
 * two vCPUs (same host core's SMT siblings, same L3, or across L3s). Two threads, pinned by
 * `taskset` to the two CPUs, bounce a counter in one shared line; the best of many rounds is the
 * line's round-trip time, the spread across rounds shows preemption by other work.
 *
 * ```
 *   main thread (CPU a)  ──Atomics.store(n+1)──►  shared Int32  ◄──Atomics.store(n+2)── worker (CPU b)
 * ```
 *
 * Run: `taskset -c 0,1 deno run -A bench/cacheline_pingpong.ts [--rounds 20] [--trips 200000]`
 *
 * @module
 */

import { parseArgs } from "node:util";

const args = parseArgs({
  options: {
    rounds: { type: "string", default: "20" },
    trips: { type: "string", default: "200000" },
  },
}).values;
const rounds = Number(args.rounds), trips = Number(args.trips);

const WORKER = `
self.onmessage = (e) => {
  const cell = new Int32Array(e.data.sab);
  const total = e.data.total;
  for (let n = 1; n < total; n += 2) {
    while (Atomics.load(cell, 0) !== n) {}
    Atomics.store(cell, 0, n + 1);
  }
  self.postMessage("done");
};`;

const sab = new SharedArrayBuffer(128);
const cell = new Int32Array(sab);
const url = URL.createObjectURL(new Blob([WORKER], { type: "application/javascript" }));
const results: number[] = [];
for (let r = 0; r < rounds; r++) {
  Atomics.store(cell, 0, 0);
  const worker = new Worker(url, { type: "module" });
  const done = new Promise((res) => (worker.onmessage = res));
  const total = trips * 2;
  worker.postMessage({ sab, total });
  const t0 = performance.now();
  for (let n = 0; n < total; n += 2) {
    Atomics.store(cell, 0, n + 1);
    while (Atomics.load(cell, 0) !== n + 2) { /* spin */ }
  }
  const ns = ((performance.now() - t0) * 1e6) / trips;
  await done;
  worker.terminate();
  results.push(ns);
}
results.sort((a, b) => a - b);
const at = (q: number) => results[Math.min(results.length - 1, Math.floor(q * results.length))];
console.log(
  `cache-line round trip over ${rounds} rounds of ${trips}: best ${at(0).toFixed(0)} ns, ` +
    `median ${at(0.5).toFixed(0)} ns, worst ${at(1).toFixed(0)} ns`,
);
