/**
 * This stack side by side with DPDK 22.11's C PMDs: each TypeScript program and its C twin do the
 * same job on one core each against the same testpmd peer (rows in `matrix.ts`), in rounds.
 *
 * ```
 *   round r, row p:  TS ─ C ─ C ─ TS   (ABBA)   ──► ratio_r = mean(TS) / mean(C)
 *   all rounds:      min / median / max of ratio_r (never a ratio of medians)
 * ```
 *
 * Rates are the receiver's exact counts over the sender's active window (`peers.ts` says which
 * window each row uses). Gbps counts frame bytes without FCS.
 *
 * Run:
 * `deno run -A bench/versus_dpdk.ts [--rounds 7] [--duration 4] [--order abba|ab]
 * [--sizes 64,1518] [--rings packed,split] [--only driver-tx,device-rx] [--sweep [--rings packed]]
 * [--json] [--markdown] [--svg FILE] [--from results.json]`
 *
 * `--json` prints one JSON object (options, every run, every row's summary) as the only stdout;
 * `--from FILE --markdown` turns it into the README's Performance table without running anything,
 * `--from FILE --svg chart.svg` into the chart.
 *
 * ## Why runs of the same pair vary here
 *
 * On the shared 2-core KVM guest the same pair ranged 17–60 Mpps between runs. Small experiments
 * (1–2 s runs, 2–3 rounds, while other engineers' tests loaded the machine):
 *
 * - Steal time, read from `/proc/stat` around every run (the `steal` column of each sample), was
 *   the dominant factor: runs taken while another guest or process wanted the host CPUs show
 *   steal of 5–40 % on a vCPU, and the rate falls with it. Both sides busy-poll, so a vCPU that is
 *   descheduled stalls the ring for the other side too: steal hurts a pair more than either
 *   program alone. Every sample records its steal share and the 1-minute load average, so a
 *   reader can drop or flag noisy rounds instead of guessing.
 * - Foreign load inside the guest: with other processes runnable (load average above 2 on 2
 *   CPUs), the pinned pollers share their CPU with them and rates halve; `taskset` pins our
 *   processes but cannot keep others off those CPUs.
 * - vCPU placement: the guest sees 2 vCPUs with one thread per core and one shared L3
 *   (`lscpu`); which host cores they land on is not visible from inside and can change between
 *   runs, which is one reason the same pair moves by 2× from run to run on an otherwise idle
 *   guest. Pairing TS and C inside a round is what makes the ratio hold while absolute figures
 *   drift.
 * - Pinning testpmd's main lcore and forwarding lcore to the same CPU (`--lcores 0@N,1@N`, the
 *   default here) versus main on the other CPU (`--lcores 0@M,1@N`) made no difference beyond
 *   the noise: the main lcore sleeps in the command line.
 * - The ring's shared cache lines: the pair's rate depends on the two vCPUs exchanging
 *   descriptor-ring lines; both sides sit on different cores by design (one core each), so this
 *   cost is the same for TS and C and shows as the common drift.
 * - Start/stop timing: testpmd windows are measured between command midpoints (`Window` in
 *   `peers.ts`); a command round trip is a few ms, under 1 % of a 1-second run.
 * - Ring size: 256 vs 1024 descriptors changed the level but not the spread (see `--sweep`).
 *
 * So: compare ratios from paired rounds, run at least 7 rounds, and look at the steal column.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { testpmdPath } from "../tests/peers.ts";
import { type Job, matrix, type Pair } from "./matrix.ts";
import { noiseNote, noisy, type PairResult, runRounds, type RunSample } from "./rounds.ts";
import { cpus } from "./peers.ts";
import { sweep } from "./sweep.ts";
import { ratioChart, sweepChart } from "./svg.ts";
import { markdownTable, textTable } from "./tables.ts";

const args = parseArgs({
  options: {
    duration: { type: "string", default: "4" },
    rounds: { type: "string", default: "7" },
    order: { type: "string", default: "abba" },
    sizes: { type: "string", default: "64,1518" },
    rings: { type: "string", default: "packed,split" },
    "queue-size": { type: "string", default: "256" },
    flows: { type: "string", default: "256" },
    only: { type: "string" },
    sweep: { type: "boolean", default: false },
    lcores: { type: "string" },
    cpus: { type: "string", default: "0,1" },
    json: { type: "boolean", default: false },
    markdown: { type: "boolean", default: false },
    svg: { type: "string" },
    from: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
  strict: true,
}).values;

if (args.help) {
  console.log(
    "usage: versus_dpdk.ts [--rounds N] [--duration S] [--order abba|ab] [--sizes 64,1518]\n" +
      "  [--rings packed,split] [--queue-size N] [--flows N] [--only JOB,...] [--sweep]\n" +
      "  [--lcores L] [--cpus DRIVER,DEVICE] [--json] [--markdown] [--svg FILE] [--from FILE.json]\n" +
      "jobs: driver-tx driver-tx-flows driver-rx device-rx device-tx forward latency",
  );
  Deno.exit(0);
}

interface Output {
  options: Record<string, unknown>;
  results: PairResult[];
  samples: RunSample[];
}

/** Runs the matrix or the sweep; progress on stderr. */
async function run(): Promise<Output> {
  if (testpmdPath() === null) {
    console.error("dpdk-testpmd not found; install: sudo apt-get install dpdk-dev");
    Deno.exit(1);
  }
  [cpus.driver, cpus.device] = args.cpus.split(",").map(Number);
  const rounds = Number(args.rounds), seconds = Number(args.duration);
  const order = args.order === "ab" ? "ab" : "abba";
  const rings = args.rings.split(",") as ("packed" | "split")[];
  let pairs: Pair[];
  if (args.sweep) {
    pairs = [];
    for (const ring of rings) pairs.push(...await sweep(ring === "packed"));
  } else {
    pairs = matrix({
      queueSize: Number(args["queue-size"]),
      sizes: args.sizes.split(",").map(Number),
      rings,
      flows: Number(args.flows),
    });
  }
  if (args.only !== undefined) {
    const jobs = new Set(args.only.split(",") as Job[]);
    pairs = pairs.filter((p) => jobs.has(p.job));
  }
  const dir = await Deno.makeTempDir({ prefix: "versus-dpdk-" });
  const started = new Date().toISOString();
  try {
    const { samples, results } = await runRounds(pairs, {
      rounds,
      seconds,
      order,
      dir,
      lcores: args.lcores,
      onSample: (s) =>
        console.error(
          `r${s.round} ${s.id.padEnd(28)} ${s.side.padEnd(2)} ` +
            (s.error !== undefined
              ? `FAILED: ${s.error}`
              : `${s.mpps.toFixed(2).padStart(6)} Mpps ${s.gbps.toFixed(2).padStart(6)} Gbps ` +
                `(${s.packets} in ${s.seconds.toFixed(3)} s) steal ${
                  (s.steal * 100).toFixed(0)
                }% ` +
                `runnable ${s.runnable.toFixed(1)} load ${s.load}${noisy(s) ? " NOISY" : ""}`),
        ),
    });
    const options = {
      started,
      rounds,
      seconds,
      order,
      rings,
      sweep: args.sweep,
      lcores: args.lcores,
    };
    return { options, results, samples };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const out: Output = args.from !== undefined
  ? JSON.parse(await Deno.readTextFile(args.from))
  : await run();
const o = out.options;
const caption = `${o.rounds} rounds of ${o.seconds} s per run, ${o.order} order, one core each ` +
  `side; Mpps medians over all runs, ratio from each round's own runs.` + noiseNote(out.samples);
if (args.svg !== undefined) {
  const chart = o.sweep ? sweepChart(out.results, caption) : ratioChart(out.results, caption);
  await Deno.writeTextFile(args.svg, chart);
}
if (args.json) console.log(JSON.stringify(out));
else if (args.markdown) console.log(markdownTable(out.results, caption));
else console.log(`\n${caption}\n${textTable(out.results)}`);
