/**
 * Reads pcap files with Wireshark's `tshark`, checksum validation on, into one row of fields per
 * frame: what the packet tests compare the builders' bytes against.
 *
 * ```
 *   frames ──PcapWriter──► file.pcap ──tshark -T fields -e ... -o *.check_checksum:TRUE──► rows
 * ```
 *
 * @module
 */

import { runBounded } from "./helpers.ts";
import { tsharkPath } from "./peers.ts";

/** Preferences that make tshark verify every checksum it can. */
const CHECKSUM_PREFS = [
  "ip.check_checksum:TRUE",
  "udp.check_checksum:TRUE",
  "tcp.check_checksum:TRUE",
].flatMap((p) => ["-o", p]);

/**
 * Runs `tshark -r file` printing `fields` (one row per frame, fields separated by tabs); never
 * hangs (killed after 60 s). Throws with tshark's stderr when it fails.
 */
export async function tsharkFields(file: string, fields: string[]): Promise<string[][]> {
  const bin = tsharkPath();
  if (bin === null) throw new Error("tshark not found");
  const args = ["-n", "-r", file, ...CHECKSUM_PREFS, "-T", "fields", "-E", "occurrence=f"];
  for (const f of fields) args.push("-e", f);
  const run = await runBounded(bin, args, { timeoutMs: 60_000 });
  if (run.timedOut || run.code !== 0) {
    throw new Error(`tshark ${args.join(" ")} failed (${run.code}):\n${run.stderr}`);
  }
  return run.stdout.split("\n").filter((l) => l !== "").map((l) => l.split("\t"));
}

/** The status fields tshark sets when it validated a checksum (1 = Good). */
export const CHECKSUM_STATUS = [
  "ip.checksum.status",
  "udp.checksum.status",
  "tcp.checksum.status",
  "icmp.checksum.status",
  "icmpv6.checksum.status",
];
