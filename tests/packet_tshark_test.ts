/**
 * The packet library's frames, dissected by Wireshark's `tshark` with checksum validation on:
 * every address, port, VLAN tag and flag it reports must be the one built, and every checksum
 * "Good".
 *
 * ```
 *   buildSamples() ──PcapWriter──► samples.pcap ──tshark -T fields──► fields == expected
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { PcapWriter } from "../lib/packet/pcap.ts";
import { requireTshark } from "./peers.ts";
import { buildSamples } from "./packet_samples.ts";
import { CHECKSUM_STATUS, tsharkFields } from "./tshark.ts";

const ignore = requireTshark();

for (const nanoseconds of [false, true]) {
  Deno.test({
    name: `tshark dissects every built frame as built, checksums Good (${
      nanoseconds ? "ns" : "µs"
    } pcap)`,
    ignore,
    async fn() {
      const samples = buildSamples();
      const dir = await Deno.makeTempDir({ prefix: "packet-tshark-" });
      try {
        const file = `${dir}/samples.pcap`;
        {
          using w = PcapWriter.create(file, { nanoseconds });
          samples.forEach((s, i) => w.write(s.frame, 0, s.frame.length, 1_700_000_000, i * 1001));
        }
        const names = [...new Set(samples.flatMap((s) => Object.keys(s.fields)))];
        const fields = ["frame.len", "frame.time_epoch", ...CHECKSUM_STATUS, ...names];
        const rows = await tsharkFields(file, fields);
        assert.equal(rows.length, samples.length, "tshark frame count");
        samples.forEach((s, i) => {
          const row = rows[i];
          const get = (f: string) => row[fields.indexOf(f)];
          assert.equal(get("frame.len"), String(s.frame.length), `${s.name}: frame.len`);
          const ns = nanoseconds ? i * 1001 : Math.floor(i * 1.001) * 1000;
          assert.equal(get("frame.time_epoch"), `1700000000.${String(ns).padStart(9, "0")}`);
          for (const [f, want] of Object.entries(s.fields)) {
            assert.equal(get(f), want, `${s.name}: ${f}`);
          }
          const statuses = CHECKSUM_STATUS.map(get).filter((v) => v !== "");
          if (s.ipv4) assert.equal(get("ip.checksum.status"), "1", `${s.name}: IPv4 checksum`);
          if (s.l4) assert.ok(statuses.length >= (s.ipv4 ? 2 : 1), `${s.name}: ${statuses}`);
          for (const st of statuses) assert.equal(st, "1", `${s.name}: checksum status ${row}`);
        });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
