/**
 * `examples/device.ts --mode forward`: the TypeScript device forwarding between two vhost-user
 * ports (lib/device/forward.ts), against real drivers on both sides:
 *
 * ```
 *   VirtioNet A (10240 B buffers) ──A──► device forward ──B──► VirtioNet B (2048 B, MRG_RXBUF)
 *     60..9000 B frames, each compared byte for byte (a 9000 B frame spans 5 of B's buffers)
 *   VirtioNet A ◄──A── device forward ◄──B── VirtioNet B: 60..1514 B frames compared
 *   testpmd virtio-user txonly ──A──► device forward ──B──► testpmd virtio-user rxonly
 *     B's RX-packets == the device's forwarded count; taken == A's TX-packets - never taken
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { VirtioNet } from "../lib/driver/virtio_net.ts";
import { UDP_HEADERS, writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { requireTestpmd } from "./peers.ts";
import { Testpmd, type TestpmdOptions } from "./testpmd.ts";

const STALL_MS = 5000;

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The forward report (`--json`). */
interface ForwardReport {
  a_to_b_packets: number;
  a_to_b_bytes: number;
  a_to_b_dropped: number;
  b_to_a_packets: number;
  b_to_a_bytes: number;
  b_to_a_dropped: number;
  shared_arena: boolean;
  errors: string[];
}

/** Starts `device.ts --mode forward` on two fresh sockets; `finish` sends SIGINT, reads the report. */
async function startForward(dir: string) {
  const a = `${dir}/a.sock`, b = `${dir}/b.sock`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...["run", "-A", "--no-check", new URL("../examples/device.ts", import.meta.url).pathname],
      ...["--mode", "forward", "--path", a, "--peer-path", b, "--json"],
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const exists = async (p: string) => await Deno.stat(p).then(() => true, () => false);
  try {
    await waitFor("both sockets", async () => await exists(a) && await exists(b));
  } catch (e) {
    child.kill("SIGKILL");
    await child.output();
    throw e;
  }
  return {
    a,
    b,
    async finish(): Promise<ForwardReport> {
      child.kill("SIGINT");
      const out = await child.output();
      const stdout = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 130, new TextDecoder().decode(out.stderr));
      return JSON.parse(stdout.trim().split("\n").at(-1)!);
    },
  };
}

/** Frame `seq` of `sizes`: a UDP frame whose payload is the sequence number, then a pattern. */
function writeFrame(bytes: Uint8Array, at: number, seq: number, sizes: number[]): number {
  const size = sizes[seq % sizes.length];
  writeUdpFrame(bytes, at, size);
  const p = at + UDP_HEADERS;
  bytes[p] = seq >>> 8;
  bytes[p + 1] = seq & 0xff;
  for (let i = p + 2; i < at + size; i++) bytes[i] = (seq * 7 + i - at) & 0xff;
  return size;
}

/**
 * Sends `count` frames from `src` with at most 32 in flight and receives each on `dst`
 * (rxFrames: a frame may span several buffers), comparing every byte. Returns the bytes.
 */
function pump(src: VirtioNet, dst: VirtioNet, count: number, sizes: number[]): number {
  const sp = src.pool, dp = dst.pool;
  const bufs = new Uint32Array(32), lens = new Uint32Array(32);
  const rb = new Uint32Array(256), rl = new Uint32Array(256), segs = new Uint32Array(256);
  const expected = new Uint8Array(9100);
  let sent = 0, received = 0, bytes = 0, progress = performance.now();
  while (received < count) {
    const room = Math.min(32 - (sent - received), count - sent);
    if (room > 0) {
      const k = sp.alloc(bufs, 0, room);
      for (let i = 0; i < k; i++) {
        lens[i] = writeFrame(sp.bytes, sp.dataOffset(bufs[i]), sent + i, sizes);
      }
      const s = src.txBurst(bufs, lens, k);
      sp.free(bufs, s, k - s);
      sent += s;
    }
    const n = dst.rxFrames(rb, rl, segs, rb.length);
    for (let f = 0, j = 0; f < n; j += segs[f++]) {
      const seq = received + f;
      const len = writeFrame(expected, 0, seq, sizes);
      let at = 0;
      for (let i = 0; i < segs[f]; i++) {
        const from = i === 0 ? dp.dataOffset(rb[j + i]) : dp.headerOffset(rb[j + i]);
        const piece = dp.bytes.subarray(from, from + rl[j + i]);
        for (let k = 0; k < piece.length; k++) {
          if (piece[k] !== expected[at + k]) {
            assert.fail(`frame ${seq} (${len} B): byte ${at + k} differs (in order, none lost)`);
          }
        }
        at += rl[j + i];
      }
      assert.equal(at, len, `frame ${seq}: length`);
      bytes += len;
      dp.free(rb, j, segs[f]);
    }
    received += n;
    if (n > 0) progress = performance.now();
    else if (performance.now() - progress > STALL_MS) {
      assert.fail(`no frame for ${STALL_MS} ms: ${received} of ${count} received, ${sent} sent`);
    }
  }
  assert.equal(src.txDrain(STALL_MS), 0);
  return bytes;
}

for (const packed of [true, false]) {
  const rings = packed ? "packed" : "split";
  Deno.test(`forward ${rings}: TS driver A <-> device forward <-> TS driver B, every byte, jumbo over merged buffers`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "forward-" });
    const fwd = await startForward(dir);
    let report: ForwardReport;
    let ab = 0, ba = 0;
    const AB = 3000, BA = 2000;
    try {
      const a = VirtioNet.open({ path: fwd.a, packed, bufferSize: 10240, mergeable: true });
      try {
        const b = VirtioNet.open({ path: fwd.b, packed, mergeable: true });
        try {
          assert.ok(b.mergeable, "MRG_RXBUF negotiated on B");
          ab = pump(a, b, AB, [60, 64, 128, 1000, 1514, 4000, 9000]);
          ba = pump(b, a, BA, [60, 100, 512, 1514]);
        } finally {
          b.close();
        }
      } finally {
        a.close();
      }
    } finally {
      report = await fwd.finish();
      await Deno.remove(dir, { recursive: true });
    }
    console.log(`  ${rings}: A->B ${AB} frames (${ab} B), B->A ${BA} frames (${ba} B)`);
    assert.deepEqual(report.errors, []);
    assert.equal(report.a_to_b_packets, AB);
    assert.equal(report.a_to_b_bytes, ab);
    assert.equal(report.b_to_a_packets, BA);
    assert.equal(report.b_to_a_bytes, ba);
    assert.equal(report.a_to_b_dropped + report.b_to_a_dropped, 0);
    assert.equal(report.shared_arena, true, "both ports mapped into one MemoryArena");
  });
}

/**
 * testpmd's frames per size: 64 B in 2 KB mbufs; 9000 B sent from 10 KB mbufs and received
 * into 2 KB ones chained by MRG_RXBUF (five receive buffers a frame, `--enable-scatter`), so the
 * forwarder spreads each frame over B's buffers while B posts buffers only as it gets them back,
 * and A stops with a frame half copied (its chains stay the device's: B gets no short frame).
 */
const TESTPMD_FRAMES: { size: number; tx: Partial<TestpmdOptions>; rx: Partial<TestpmdOptions> }[] =
  [
    { size: 64, tx: {}, rx: {} },
    {
      size: 9000,
      tx: {
        memMb: 512,
        totalNumMbufs: 8192,
        extraArgs: ["--max-pkt-len=9018", "--mbuf-size=10240", "--txpkts=9000"],
      },
      rx: { extraArgs: ["--max-pkt-len=9018", "--enable-scatter"] },
    },
  ];

for (const { size, tx: txOptions, rx: rxOptions } of TESTPMD_FRAMES) {
  Deno.test({
    name: `forward: testpmd virtio-user txonly ${size} B -> device forward -> testpmd ` +
      "virtio-user rxonly: exact",
    ignore: requireTestpmd(2),
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "forward-" });
      const fwd = await startForward(dir);
      let report: ForwardReport | null = null;
      try {
        const vdev = (sock: string) =>
          `net_virtio_user0,path=${sock},queues=1,queue_size=256,mrg_rxbuf=1`;
        await using rx = await Testpmd.start({
          vdev: vdev(fwd.b),
          forwardMode: "rxonly",
          cpu: 1,
          ...rxOptions,
        });
        await rx.startForwarding();
        {
          await using tx = await Testpmd.start({
            vdev: vdev(fwd.a),
            forwardMode: "txonly",
            cpu: 0,
            ...txOptions,
          });
          await tx.startForwarding();
          await new Promise((r) => setTimeout(r, 300));
          const sent = await tx.stopForwarding();
          assert.ok(sent.txPackets > 0);
          await tx.stop(); // A's rings stop: the device takes no more from them
        }
        report = await fwd.finish();
        // Every frame the device forwarded is in B's ring; testpmd drains it.
        const forwarded = report.a_to_b_packets;
        await waitFor(
          "testpmd B to receive every frame",
          async () => (await rx.stats()).rxPackets >= forwarded,
        );
        const got = await rx.stopForwarding();
        const port = await rx.stats();
        console.log(`  ${size} B: forwarded ${forwarded}, dropped ${report.a_to_b_dropped}`);
        assert.ok(forwarded > 0);
        assert.equal(got.rxPackets, forwarded, "testpmd B RX-packets == device forwarded");
        assert.equal(port.rxBytes, size * forwarded, `${size}-byte frames`);
        assert.equal(report.a_to_b_bytes, size * forwarded);
        assert.deepEqual(report.errors, []);
      } finally {
        if (report === null) await fwd.finish().catch(() => {});
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
