/**
 * Side by side with DPDK, one core each side, rounds interleaved, 64-byte frames by default.
 *
 * Drivers: this stack's pktgen vs DPDK's C virtio-user PMD (testpmd txonly), each sending into
 * the same DPDK vhost port (testpmd rxonly):
 * ```
 *   pktgen.ts | testpmd virtio-user txonly (CPU 0) ─► testpmd net_vhost0 rxonly (CPU 1)
 * ```
 * Devices: DPDK's C virtio-user txonly sending into this stack's device (examples/device.ts,
 * sink) vs into DPDK's vhost PMD (rxonly):
 * ```
 *   testpmd virtio-user txonly (CPU 0) ─► device.ts sink | testpmd net_vhost0 rxonly (CPU 1)
 * ```
 *
 * Rates are the receiver's exact counts over the sender's active time. Run:
 * `deno run -A bench/versus_dpdk.ts [--duration 5] [--rounds 3] [--size 64] [--queue-size 256]
 * [--only drivers|devices]`
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
    only: { type: "string" },
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
  /** "drivers" (who sends, into DPDK vhost) or "devices" (who receives, from DPDK virtio-user). */
  kind: "drivers" | "devices";
  /** "TypeScript" or "DPDK C". */
  who: string;
  ring: string;
  mpps: number;
  received: number;
  sent: number;
}

const dir = await Deno.makeTempDir({ prefix: "versus-dpdk-" });
const sock = `${dir}/vhost.sock`;
const samples: Sample[] = [];

/** Jumbo frames (`--size` above 2036): 10240-byte mbufs; --txpkts must follow --mbuf-size. */
const JUMBO = size > 2036
  ? { memMb: 512, totalNumMbufs: 8192, args: ["--max-pkt-len=9018", "--mbuf-size=10240"] }
  : null;

/** DPDK's vhost PMD counting what arrives (rxonly), forwarding started, on CPU 1. */
async function vhostReceiver(): Promise<Testpmd> {
  const rx = await Testpmd.start({
    vdev: `net_vhost0,iface=${sock},queues=1`,
    forwardMode: "rxonly",
    cpu: 1,
    ...(JUMBO && { memMb: JUMBO.memMb, totalNumMbufs: JUMBO.totalNumMbufs, extraArgs: JUMBO.args }),
  });
  await rx.startForwarding();
  return rx;
}

/** DPDK's C virtio-user PMD sending (txonly) for `seconds` on CPU 0: frames sent, seconds active. */
async function cSender(packed: boolean): Promise<{ sent: number; active: number }> {
  await using tx = await Testpmd.start({
    vdev: `net_virtio_user0,path=${sock},queues=1,packed_vq=${packed ? 1 : 0},` +
      `queue_size=${queueSize}`,
    forwardMode: "txonly",
    cpu: 0,
    ...(JUMBO
      ? {
        memMb: JUMBO.memMb,
        totalNumMbufs: JUMBO.totalNumMbufs,
        extraArgs: [...JUMBO.args, `--txpkts=${size}`],
      }
      : { txpkts: size }),
  });
  const t0 = performance.now();
  await tx.startForwarding();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const sent = (await tx.stopForwarding()).txPackets;
  return { sent, active: (performance.now() - t0) / 1000 };
}

/** `deno run -A examples/NAME.ts ARGS` pinned to `cpu`, stdout piped. */
function example(name: string, cpu: number, args: string[]): Deno.Command {
  const file = new URL(`../examples/${name}.ts`, import.meta.url).pathname;
  return new Deno.Command("taskset", {
    args: ["-c", String(cpu), Deno.execPath(), "run", "-A", file, ...args],
    stdout: "piped",
    stderr: "inherit",
  });
}

/** The final `--json` line an example printed. */
function report(stdout: Uint8Array): Record<string, number> {
  return JSON.parse(new TextDecoder().decode(stdout).trim().split("\n").at(-1)!);
}

function sample(
  kind: Sample["kind"],
  ts: boolean,
  packed: boolean,
  received: number,
  sent: number,
  active: number,
): Sample {
  const who = ts ? "TypeScript" : "DPDK C";
  return {
    kind,
    who,
    ring: packed ? "packed" : "split",
    mpps: received / active / 1e6,
    received,
    sent,
  };
}

/** Drivers: this stack's pktgen or DPDK's virtio-user, sending into DPDK's vhost PMD. */
async function measure(sender: "ts" | "c", packed: boolean): Promise<Sample> {
  await using rx = await vhostReceiver();
  let run: { sent: number; active: number };
  if (sender === "ts") {
    const out = await example("pktgen", 0, [
      ...["--path", sock, "--duration", String(seconds), "--size", String(size)],
      ...["--queue-size", String(queueSize), "--json", ...(packed ? [] : ["--split"])],
    ]).output();
    const r = report(out.stdout);
    run = { sent: r.tx_packets, active: r.seconds };
  } else {
    run = await cSender(packed);
  }
  const received = (await rx.stopForwarding()).rxPackets;
  return sample("drivers", sender === "ts", packed, received, run.sent, run.active);
}

/** Devices: DPDK's virtio-user sending into this stack's device (sink) or DPDK's vhost PMD. */
async function measureDevice(receiver: "ts" | "c", packed: boolean): Promise<Sample> {
  if (receiver === "c") {
    await using rx = await vhostReceiver();
    const run = await cSender(packed);
    const received = (await rx.stopForwarding()).rxPackets;
    return sample("devices", false, packed, received, run.sent, run.active);
  }
  const device = example("device", 1, ["--path", sock, "--mode", "sink", "--json"]).spawn();
  let run: { sent: number; active: number };
  try {
    for (let i = 0; i < 200; i++) {
      if ((await Deno.lstat(sock).catch(() => null))?.isSocket) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    run = await cSender(packed);
    await new Promise((r) => setTimeout(r, 200)); // the device drains the ring
  } finally {
    device.kill("SIGINT");
  }
  const received = report((await device.output()).stdout).from_driver_packets;
  return sample("devices", true, packed, received, run.sent, run.active);
}

const kinds = args.only === undefined ? ["drivers", "devices"] : [args.only];
try {
  for (const kind of kinds) {
    for (const packed of [true, false]) {
      for (let r = 0; r < rounds; r++) {
        for (const who of ["ts", "c"] as const) {
          const s = kind === "drivers"
            ? await measure(who, packed)
            : await measureDevice(who, packed);
          samples.push(s);
          console.error(
            `${s.kind.padEnd(8)} ${s.ring.padEnd(6)} ${s.who.padEnd(10)} ` +
              `${s.mpps.toFixed(2).padStart(6)} Mpps ${
                (s.mpps * size * 8 / 1e3).toFixed(2).padStart(6)
              } Gbps (received ${s.received}, sent ${s.sent})`,
          );
        }
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
console.log(
  "drivers: who sends into DPDK vhost rxonly; devices: who receives DPDK virtio-user txonly",
);
console.log("          ring    TypeScript  DPDK C   TS/C   (median Mpps)");
const summary: Record<string, unknown>[] = [];
for (const kind of kinds) {
  for (const ring of ["packed", "split"]) {
    const pick = (who: string) =>
      median(
        samples.filter((s) => s.kind === kind && s.ring === ring && s.who === who).map((s) =>
          s.mpps
        ),
      );
    const ts = pick("TypeScript"), c = pick("DPDK C");
    console.log(
      `${kind.padEnd(8)}  ${ring.padEnd(6)}  ${ts.toFixed(2).padStart(8)}  ${
        c.toFixed(2).padStart(7)
      }   ${(ts / c).toFixed(2)}`,
    );
    summary.push({ kind, ring, ts_mpps: ts, c_mpps: c, ratio: ts / c });
  }
}
if (args.json) console.log(JSON.stringify({ size, seconds, rounds, summary, samples }));
