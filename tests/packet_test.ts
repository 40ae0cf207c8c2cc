/**
 * Unit tests of the packet library: checksums against full recomputation after every
 * incremental patch, parsing of what the builders write, IPv6 text forms, pcap round trips.
 *
 * @module
 */

import assert from "node:assert/strict";
import { internetChecksum, updateChecksum16, updateChecksum32 } from "../lib/packet/checksum.ts";
import {
  FrameFlag,
  parseFrame,
  VIEW_L4,
  VIEW_PAYLOAD,
  VIEW_SIZE,
  VIEW_VLAN,
} from "../lib/packet/frame_view.ts";
import { ipv4Checksum, writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { ipv4HeaderValid } from "../lib/packet/ipv4.ts";
import { formatIpv6, parseIpv6 } from "../lib/packet/ipv6.ts";
import { PcapWriter, readPcap } from "../lib/packet/pcap.ts";
import { FieldSweep, PacketTemplate, type SweepField } from "../lib/packet/template.ts";
import { udpChecksumValid } from "../lib/packet/udp.ts";
import { tcpChecksumValid } from "../lib/packet/tcp.ts";
import { buildSamples } from "./packet_samples.ts";

const ALL_OK = FrameFlag.L4_CHECKSUM_OK;

Deno.test("RFC 1624: incremental updates equal recomputation for every word pair tried", () => {
  const b = new Uint8Array(20);
  let x = 12345;
  const rnd = () => (x = (x * 1103515245 + 12345) >>> 0) >>> 16;
  for (let round = 0; round < 2000; round++) {
    for (let i = 0; i < 20; i++) b[i] = rnd() & 0xff;
    b[10] = b[11] = 0;
    const check = internetChecksum(b, 0, 20);
    const old = (b[4] << 8) | b[5], now = rnd();
    b[4] = now >> 8;
    b[5] = now;
    const full = internetChecksum(b, 0, 20);
    const inc = updateChecksum16(check, old, now);
    // 0x0000 and 0xffff are the same one's complement number.
    assert.ok(inc === full || (inc ^ full) === 0xffff, `round ${round}: ${inc} vs ${full}`);
    const old32 = ((b[12] << 24) | (b[13] << 16) | (b[14] << 8) | b[15]) >>> 0;
    const now32 = (rnd() << 16 | rnd()) >>> 0;
    b[12] = now32 >>> 24;
    b[13] = now32 >>> 16;
    b[14] = now32 >>> 8;
    b[15] = now32;
    const full32 = internetChecksum(b, 0, 20);
    const inc32 = updateChecksum32(full, old32, now32);
    assert.ok(inc32 === full32 || (inc32 ^ full32) === 0xffff, `round ${round} (32-bit)`);
  }
});

Deno.test("writeUdpFrame still writes the frame its callers expect", () => {
  const f = new Uint8Array(64);
  writeUdpFrame(f, 0, 64, { srcPort: 1234 });
  assert.ok(ipv4HeaderValid(f, 14));
  assert.equal(ipv4Checksum(f, 14), (f[24] << 8) | f[25]);
  assert.equal((f[34] << 8) | f[35], 1234);
  assert.equal(f[38] << 8 | f[39], 30); // UDP length
  assert.equal(f[42], 0);
  assert.equal(f[63], 21);
});

for (const ipv6 of [false, true]) {
  for (const transport of ["udp", "tcp"] as const) {
    for (const vlan of [undefined, 42]) {
      const what = `${ipv6 ? "IPv6" : "IPv4"}/${transport}${vlan ? "/VLAN" : ""}`;
      Deno.test(`template ${what}: sizes and sweeps keep every checksum valid`, () => {
        const t = new PacketTemplate({ ipv6, transport, vlan, payloadReserve: 16 });
        const buf = new Uint8Array(4096);
        const view = new Int32Array(VIEW_SIZE);
        const fields: SweepField[] = ["src-ip", "dst-ip", "src-port", "dst-port", "src-mac"];
        const sweeps = fields.map((f, i) =>
          new FieldSweep(t, f, FieldSweep.baseOf(t, f), 1000 + i, i % 2 ? "random" : "counter")
        );
        t.write(buf, 100, t.minSize);
        const sizes = [t.minSize, 1514, 128, t.minSize + 1, 999, 2036, 60 + 40];
        for (let k = 0; k < 500; k++) {
          const size = Math.max(sizes[k % sizes.length], t.minSize);
          t.setSize(buf, 100, size);
          sweeps[k % sweeps.length].apply(buf, 100);
          t.patch32(buf, 100, t.payload + 4, k * 2654435761);
          t.patch16(buf, 100, t.payload + 8, k);
          const flags = parseFrame(buf, 100, size, view);
          assert.equal(flags & FrameFlag.TRUNCATED, 0, `packet ${k}: truncated`);
          assert.equal(flags & ALL_OK, ALL_OK, `packet ${k} (size ${size}): L4 checksum`);
          if (!ipv6) assert.ok(flags & FrameFlag.IP_CHECKSUM_OK, `packet ${k}: IPv4 checksum`);
          assert.equal(view[VIEW_VLAN], vlan ?? -1);
          assert.equal(view[VIEW_PAYLOAD] - 100, t.payload);
          const l3 = 100 + t.l3, l4 = view[VIEW_L4];
          if (transport === "udp") assert.ok(udpChecksumValid(buf, l3, l4));
          else assert.ok(tcpChecksumValid(buf, l3, l4, size - t.l4));
        }
      });
    }
  }
}

Deno.test("every sample frame parses with good checksums", () => {
  const view = new Int32Array(VIEW_SIZE);
  for (const s of buildSamples()) {
    const flags = parseFrame(s.frame, 0, s.frame.length, view);
    if (s.l4) assert.equal(flags & ALL_OK, ALL_OK, `${s.name}: L4 checksum`);
    if (s.ipv4) assert.ok(flags & FrameFlag.IP_CHECKSUM_OK, `${s.name}: IPv4 checksum`);
  }
});

Deno.test("a corrupted byte fails the checksums", () => {
  const t = new PacketTemplate({});
  const buf = new Uint8Array(128), view = new Int32Array(VIEW_SIZE);
  t.write(buf, 0, 100);
  buf[80] ^= 1;
  assert.equal(parseFrame(buf, 0, 100, view) & ALL_OK, 0);
  buf[80] ^= 1;
  buf[22] ^= 1; // TTL
  assert.equal(parseFrame(buf, 0, 100, view) & FrameFlag.IP_CHECKSUM_OK, 0);
});

Deno.test("IPv6 text forms (RFC 4291 §2.2, RFC 5952)", () => {
  assert.equal(
    formatIpv6(parseIpv6("2001:DB8:0:0:8:800:200C:417A"), 0),
    "2001:db8::8:800:200c:417a",
  );
  assert.equal(formatIpv6(parseIpv6("::1"), 0), "::1");
  assert.equal(formatIpv6(parseIpv6("::"), 0), "::");
  assert.equal(formatIpv6(parseIpv6("fe80::1:0:0:1"), 0), "fe80::1:0:0:1");
  assert.throws(() => parseIpv6("1::2::3"), TypeError);
  assert.throws(() => parseIpv6("1:2:3"), TypeError);
});

Deno.test("pcap: written frames read back byte-identical with their timestamps (µs and ns)", () => {
  for (const nanoseconds of [false, true]) {
    const path = Deno.makeTempFileSync({ suffix: ".pcap" });
    try {
      const frames = buildSamples().map((s) => s.frame);
      {
        using w = PcapWriter.create(path, { nanoseconds, bufferSize: 256 });
        frames.forEach((f, i) => w.write(f, 0, f.length, 1_700_000_000 + i, i * 1234567));
      }
      const cap = readPcap(Deno.readFileSync(path));
      assert.equal(cap.count, frames.length);
      assert.equal(cap.nanoseconds, nanoseconds);
      assert.equal(cap.linkType, 1);
      frames.forEach((f, i) => {
        const at = cap.offsets[i];
        assert.deepEqual(cap.data.subarray(at, at + cap.lengths[i]), f);
        assert.equal(cap.seconds[i], 1_700_000_000 + i);
        assert.equal(cap.nanos[i], nanoseconds ? i * 1234567 : Math.floor(i * 1234.567) * 1000);
      });
    } finally {
      Deno.removeSync(path);
    }
  }
});

Deno.test("pcap: a truncated file names the broken record", () => {
  const path = Deno.makeTempFileSync({ suffix: ".pcap" });
  try {
    {
      using w = PcapWriter.create(path);
      w.write(new Uint8Array(60), 0, 60, 0, 0);
    }
    const data = Deno.readFileSync(path);
    assert.throws(() => readPcap(data.subarray(0, data.length - 1)), /record 0/);
  } finally {
    Deno.removeSync(path);
  }
});
