/**
 * Per-packet cost of writing the changing fields into frames, in one thread: what pktgen adds
 * per frame with `--flows`, `--size` ranges and `--latency` (checksums updated per RFC 1624).
 * One iteration = 32 frames of a 1024-buffer pool, each patched in place.
 *
 * ```
 *   FieldSweep.apply / PacketTemplate.setSize / patch32 ──► frame in pool memory (+ checksums)
 * ```
 *
 * Run: `deno bench bench/packet_bench.ts`. ns per frame = time per iteration / 32.
 *
 * @module
 */

import { FieldSweep, PacketTemplate } from "../lib/packet/template.ts";
import { parseFrame, VIEW_SIZE } from "../lib/packet/frame_view.ts";

const BURST = 32, BUFFERS = 1024, SLOT = 2048;
const pool = new Uint8Array(BUFFERS * SLOT);

function setup(options: ConstructorParameters<typeof PacketTemplate>[0]): PacketTemplate {
  const t = new PacketTemplate(options);
  for (let n = 0; n < BUFFERS; n++) t.write(pool, n * SLOT, 1514);
  return t;
}

let at = 0;
const next = () => {
  const off = at * SLOT;
  at = (at + 1) & (BUFFERS - 1);
  return off;
};

const v4 = setup({});
const srcIp = new FieldSweep(v4, "src-ip", FieldSweep.baseOf(v4, "src-ip"), 65536);
Deno.bench("IPv4/UDP: src-ip flow (IPv4 + UDP checksums), 32 frames", () => {
  for (let i = 0; i < BURST; i++) srcIp.apply(pool, next());
});

const dstPort = new FieldSweep(v4, "dst-port", 9, 1000, "random");
Deno.bench("IPv4/UDP: src-ip flow + random dst-port + size, 32 frames", () => {
  for (let i = 0; i < BURST; i++) {
    const off = next();
    v4.setSize(pool, off, 60 + (i << 4));
    srcIp.apply(pool, off);
    dstPort.apply(pool, off);
  }
});

const v6 = setup({ ipv6: true, vlan: 10 });
const v6src = new FieldSweep(v6, "src-ip", FieldSweep.baseOf(v6, "src-ip"), 65536);
Deno.bench("IPv6/UDP/VLAN: src-ip flow, 32 frames", () => {
  for (let i = 0; i < BURST; i++) v6src.apply(pool, next());
});

Deno.bench("IPv4/UDP: latency stamp (4 fields), 32 frames", () => {
  for (let i = 0; i < BURST; i++) {
    const off = next();
    v4.patch32(pool, off, v4.payload, 0x76646c74);
    v4.patch32(pool, off, v4.payload + 4, i);
    v4.patch32(pool, off, v4.payload + 8, 0);
    v4.patch32(pool, off, v4.payload + 12, i * 1000);
  }
});

const view = new Int32Array(VIEW_SIZE);
Deno.bench("parseFrame + verify checksums of 64-byte frames, 32 frames", () => {
  for (let i = 0; i < BURST; i++) {
    const off = next();
    v4.setSize(pool, off, 64);
    parseFrame(pool, off, 64, view);
  }
});
