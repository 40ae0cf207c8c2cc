/**
 * Side by side: this stack's pktgen and DPDK's C virtio-user PMD (testpmd txonly), each sending
 * 64-byte frames into the same DPDK vhost port (testpmd rxonly), one core each side.
 *
 * ```
 *   pktgen.ts (CPU 0)          ─┐
 *                                ├─► vhost-user ─► testpmd net_vhost0 rxonly (CPU 1)
 *   testpmd virtio-user (CPU 0) ─┘   (one sender at a time, rounds interleaved)
 * ```
 *
 * Rates come from the receiver's exact counts over the sender's active time. Run:
 * `deno run -A bench/versus_dpdk.ts [--duration 5] [--rounds 3] [--size 64] [--queue-size 256]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Testpmd } from "../tests/testpmd.ts";
import { testpmdPath } from "../tests/peers.ts";

const args = parseArgs({
  options: {
    duration: { type: "string", default: "5" },
    rounds: { type: "string", default: "3" },
    size: { type: "string", default: "64" },
    "queue-size": { type: "string", default: "256" },
    json: { type: "boolean", default: false },
  },
}).values;
const seconds = Number(args.duration);
const rounds = Number(args.rounds);
const size = Number(args.size);
const queueSize = Number(args["queue-size"]);

if (testpmdPath() === null) {
  console.error("dpdk-testpmd not found; install: sudo apt-get install dpdk-dev");
  Deno.exit(1);
}

interface Sample {
  sender: string;
  ring: string;
  mpps: number;
  received: number;
  sent: number;
}

const dir = await Deno.makeTempDir({ prefix: "versus-dpdk-" });
const sock = `${dir}/vhost.sock`;
const samples: Sample[] = [];

/** One measurement: a fresh receiver, one sender for `seconds`, exact counts. */
async function measure(sender: "ts" | "c", packed: boolean): Promise<Sample> {
  await using rx = await Testpmd.start({
    vdev: `net_vhost0,iface=${sock},queues=1`,
    forwardMode: "rxonly",
    cpu: 1,
  });
  await rx.startForwarding();
  let sent: number;
  let active: number;
  if (sender === "ts") {
    const out = await new Deno.Command("taskset", {
      args: [
        "-c",
        "0",
        Deno.execPath(),
        "run",
        "-A",
        new URL("../examples/pktgen.ts", import.meta.url).pathname,
        "--path",
        sock,
        "--duration",
        String(seconds),
        "--size",
        String(size),
        "--queue-size",
        String(queueSize),
        "--json",
        ...(packed ? [] : ["--split"]),
      ],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const report = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
    sent = report.tx_packets;
    active = report.seconds;
  } else {
    await using tx = await Testpmd.start({
      vdev: `net_virtio_user0,path=${sock},queues=1,packed_vq=${packed ? 1 : 0},` +
        `queue_size=${queueSize}`,
      forwardMode: "txonly",
      txpkts: size,
      cpu: 0,
    });
    const t0 = performance.now();
    await tx.startForwarding();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const counts = await tx.stopForwarding();
    active = (performance.now() - t0) / 1000;
    sent = counts.txPackets;
  }
  const received = (await rx.stopForwarding()).rxPackets;
  return {
    sender: sender === "ts" ? "TypeScript pktgen" : "DPDK C virtio-user",
    ring: packed ? "packed" : "split",
    mpps: received / active / 1e6,
    received,
    sent,
  };
}

try {
  for (const packed of [true, false]) {
    for (let r = 0; r < rounds; r++) {
      for (const sender of ["ts", "c"] as const) {
        const s = await measure(sender, packed);
        samples.push(s);
        console.error(
          `${s.ring.padEnd(6)} ${s.sender.padEnd(20)} ${s.mpps.toFixed(2).padStart(6)} Mpps ` +
            `(received ${s.received}, sent ${s.sent})`,
        );
      }
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}

const median = (xs: number[]) => xs.toSorted((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(
  `\n${size}-byte frames, ${seconds} s per run, ${rounds} rounds, queue size ${queueSize}`,
);
console.log("ring    TypeScript  DPDK C   ratio (TS/C), median Mpps");
const summary: Record<string, unknown>[] = [];
for (const ring of ["packed", "split"]) {
  const ts = median(
    samples.filter((s) => s.ring === ring && s.sender.startsWith("Type")).map((s) => s.mpps),
  );
  const c = median(
    samples.filter((s) => s.ring === ring && s.sender.startsWith("DPDK")).map((s) => s.mpps),
  );
  console.log(
    `${ring.padEnd(6)}  ${ts.toFixed(2).padStart(8)}  ${c.toFixed(2).padStart(7)}   ${
      (ts / c).toFixed(2)
    }`,
  );
  summary.push({ ring, ts_mpps: ts, c_mpps: c, ratio: ts / c });
}
if (args.json) console.log(JSON.stringify({ size, seconds, rounds, summary, samples }));
