/**
 * pktgen's pacing and latency against DPDK's counters, one core each side:
 *
 * ```
 *   rate:    pktgen.ts --rate R --duration S (CPU 0) ──► testpmd net_vhost0 rxonly (CPU 1)
 *            error = testpmd RX-packets / pktgen's send time / R - 1
 *   latency: pktgen.ts --latency --rate R (CPU 0) ──► testpmd net_vhost0 io (CPU 1) ──► back
 * ```
 *
 * Figures, not assertions: a shared machine moves them. Run:
 * `deno run -A bench/pktgen_rate.ts [--duration 10] [--rates 0.1M,1M,5M,10M]
 * [--latency-rates 0.1M,1M,5M] [--only rate|latency] [--json]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Testpmd } from "../tests/testpmd.ts";
import { testpmdPath } from "../tests/peers.ts";

const args = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    rates: { type: "string", default: "0.1M,1M,5M,10M" },
    "latency-rates": { type: "string", default: "0.1M,1M,5M" },
    only: { type: "string" },
    json: { type: "boolean", default: false },
  },
}).values;
if (testpmdPath() === null) {
  console.error("dpdk-testpmd not found; install: sudo apt-get install dpdk-dev");
  Deno.exit(1);
}
const seconds = Number(args.duration);
const dir = await Deno.makeTempDir({ prefix: "pktgen-rate-" });
const sock = `${dir}/vhost.sock`;
const pktgen = new URL("../examples/pktgen.ts", import.meta.url).pathname;

/** pktgen pinned to CPU 0 against testpmd in `mode` on CPU 1; pktgen's JSON and the counts. */
async function run(mode: "rxonly" | "io", extra: string[]) {
  await using tp = await Testpmd.start({
    vdev: `net_vhost0,iface=${sock},queues=1`,
    forwardMode: mode,
    cpu: 1,
    rxd: 1024,
    txd: 1024,
  });
  await tp.waitForSocket(sock);
  await tp.startForwarding();
  const out = await new Deno.Command("taskset", {
    args: ["-c", "0", Deno.execPath(), "run", "-A", pktgen, "--path", sock, "--json", ...extra],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const report = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  const counts = await tp.stopForwarding();
  return { report, counts };
}

const results: Record<string, unknown>[] = [];
try {
  if (args.only !== "latency") {
    console.log(`rate accuracy: ${seconds} s per rate, 64-byte frames, testpmd rxonly counts`);
    console.log("  target Mpps   pktgen sent   testpmd got   achieved Mpps   error");
    for (const rate of args.rates.split(",")) {
      const { report, counts } = await run("rxonly", [
        ...["--rate", rate, "--duration", String(seconds), "--queue-size", "1024"],
      ]);
      const target = report.target_pps as number;
      const achieved = counts.rxPackets / report.seconds;
      const error = (achieved / target - 1) * 100;
      results.push({
        kind: "rate",
        target,
        sent: report.tx_packets,
        got: counts.rxPackets,
        achieved,
        error_pct: error,
      });
      console.log(
        `  ${(target / 1e6).toFixed(2).padStart(11)}   ${
          String(report.tx_packets).padStart(11)
        }   ` +
          `${String(counts.rxPackets).padStart(11)}   ${
            (achieved / 1e6).toFixed(4).padStart(13)
          }   ` +
          `${error >= 0 ? "+" : ""}${error.toFixed(3)}%`,
      );
    }
  }
  if (args.only !== "rate") {
    console.log(`\nlatency through testpmd io: ${seconds} s per rate, 64-byte frames, µs`);
    console.log(
      "  rate Mpps   sent Mpps  probes     lost   min      p50      p90      p99      p99.9    max",
    );
    for (const rate of args["latency-rates"].split(",")) {
      const { report } = await run("io", [
        ...["--rate", rate, "--duration", String(seconds), "--latency", "--queue-size", "1024"],
      ]);
      const l = report.latency_us as Record<string, number>;
      results.push({
        kind: "latency",
        rate,
        ...l,
        probes: report.probes_sent,
        lost: report.lost,
        rx_mpps: report.rx_mpps,
      });
      const f = (v: number) => v.toFixed(1).padStart(8);
      console.log(
        `  ${String(rate).padStart(9)}   ${String(report.mpps.toFixed(3)).padStart(9)}  ` +
          `${String(report.probes_sent).padStart(6)}   ` +
          `${String(report.lost).padStart(6)} ${f(l.min)} ${f(l.p50)} ${f(l.p90)} ${f(l.p99)} ` +
          `${f(l["p99.9"])} ${f(l.max)}`,
      );
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
if (args.json) console.log(JSON.stringify(results));
