/**
 * Per-packet cost of writing the changing fields into frames, in one thread: what pktgen adds
 * per frame with `--flows`, `--size` ranges and `--latency` (checksums updated per RFC 1624).
 * One iteration = 32 frames of a 1024-buffer pool, each patched in place.
 *
 * ```
 *   FieldSweep.apply / PacketTemplate.setSize / patch32 ──► frame in pool memory (+ checksums)
 * ```
 *
 * Run: `deno bench bench/packet_bench.ts`. ns per frame = time per iteration / 32. The groups
 * time one field at a time, and a new source address with the checksums updated incrementally
 * (RFC 1624) against recomputed in full (the IPv4 header, the UDP datagram with its
 * pseudo-header), for 64- and 1514-byte frames.
 *
 * @module
 */

import { FieldSweep, PacketTemplate } from "../lib/packet/template.ts";
import { parseFrame, VIEW_SIZE } from "../lib/packet/frame_view.ts";
import { IpProtocol, writeIpv4 } from "../lib/packet/ipv4.ts";
import { writeUdp } from "../lib/packet/udp.ts";

const BURST = 32, BUFFERS = 1024, SLOT = 2048;
const GROUP = "flows and stamps, 32 frames (ns/frame = time / 32)";
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
Deno.bench(
  { name: "IPv4/UDP: src-ip flow (IPv4 + UDP checksums), 32 frames", group: GROUP },
  () => {
    for (let i = 0; i < BURST; i++) srcIp.apply(pool, next());
  },
);

const dstPort = new FieldSweep(v4, "dst-port", 9, 1000, "random");
Deno.bench(
  { name: "IPv4/UDP: src-ip flow + random dst-port + size, 32 frames", group: GROUP },
  () => {
    for (let i = 0; i < BURST; i++) {
      const off = next();
      v4.setSize(pool, off, 60 + (i << 4));
      srcIp.apply(pool, off);
      dstPort.apply(pool, off);
    }
  },
);

const v6 = setup({ ipv6: true, vlan: 10 });
const v6src = new FieldSweep(v6, "src-ip", FieldSweep.baseOf(v6, "src-ip"), 65536);
Deno.bench({ name: "IPv6/UDP/VLAN: src-ip flow, 32 frames", group: GROUP }, () => {
  for (let i = 0; i < BURST; i++) v6src.apply(pool, next());
});

Deno.bench({ name: "IPv4/UDP: latency stamp (4 fields), 32 frames", group: GROUP }, () => {
  for (let i = 0; i < BURST; i++) {
    const off = next();
    v4.patch32(pool, off, v4.payload, 0x76646c74);
    v4.patch32(pool, off, v4.payload + 4, i);
    v4.patch32(pool, off, v4.payload + 8, 0);
    v4.patch32(pool, off, v4.payload + 12, i * 1000);
  }
});

const view = new Int32Array(VIEW_SIZE);
Deno.bench(
  { name: "parseFrame + verify checksums of 64-byte frames, 32 frames", group: GROUP },
  () => {
    for (let i = 0; i < BURST; i++) {
      const off = next();
      v4.setSize(pool, off, 64);
      parseFrame(pool, off, 64, view);
    }
  },
);

// --- Per frame, one field at a time: ns/frame = time / 32 -----------------------------------

const FIELD_GROUP = "template patch, one field of 32 frames (ns/frame = time / 32)";
const dstMac = new FieldSweep(v4, "dst-mac", FieldSweep.baseOf(v4, "dst-mac"), 65536);
const srcPort = new FieldSweep(v4, "src-port", 9, 1000);
Deno.bench({ name: "dst-mac (no checksum) x32", group: FIELD_GROUP, baseline: true }, () => {
  for (let i = 0; i < BURST; i++) dstMac.apply(pool, next());
});
Deno.bench({ name: "src-port (UDP checksum) x32", group: FIELD_GROUP }, () => {
  for (let i = 0; i < BURST; i++) srcPort.apply(pool, next());
});
Deno.bench({ name: "src-ip (IPv4 + UDP checksums) x32", group: FIELD_GROUP }, () => {
  for (let i = 0; i < BURST; i++) srcIp.apply(pool, next());
});
Deno.bench({ name: "size 64 <-> 128 (lengths, both checksums) x32", group: FIELD_GROUP }, () => {
  for (let i = 0; i < BURST; i++) v4.setSize(pool, next(), (i & 1) === 0 ? 64 : 128);
});
Deno.bench({ name: "latency probe stamp (4 x 32-bit words) x32", group: FIELD_GROUP }, () => {
  for (let i = 0; i < BURST; i++) {
    const off = next(), p = v4.payload;
    v4.patch32Words(pool, off, p, 0x7664, 0x6c74);
    v4.patch32Words(pool, off, p + 4, 0, i);
    v4.patch32Words(pool, off, p + 8, 0, 0);
    v4.patch32Words(pool, off, p + 12, i, i * 7);
  }
});

// --- A new source address: incremental checksum update (RFC 1624) vs full recompute ---------

for (const size of [64, 1514]) {
  const group = `new src-ip in a ${size}-byte frame, 32 frames (ns/frame = time / 32)`;
  const t = new PacketTemplate({});
  const frames = new Uint8Array(BURST * SLOT);
  for (let i = 0; i < BURST; i++) t.write(frames, i * SLOT, size);
  let ip = 0xc6120001;
  Deno.bench({ name: `incremental (RFC 1624), ${size} B x32`, group, baseline: true }, () => {
    ip = (ip + 1) >>> 0;
    for (let i = 0; i < BURST; i++) {
      t.patch32Words(frames, i * SLOT, t.l3 + 12, ip >>> 16, (ip + i) & 0xffff);
    }
  });
  Deno.bench({ name: `full recompute (IPv4 header + UDP datagram), ${size} B x32`, group }, () => {
    ip = (ip + 1) >>> 0;
    for (let i = 0; i < BURST; i++) {
      const off = i * SLOT, l3 = off + t.l3, l4 = off + t.l4;
      writeIpv4(frames, l3, IpProtocol.UDP, size - t.l3, (ip + i) >>> 0, 0xc6120002);
      writeUdp(frames, l3, l4, 9, 9, size - t.l4);
    }
  });
}
