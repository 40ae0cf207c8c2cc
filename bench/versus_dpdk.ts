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
 * [--sizes 64,1518] [--rings packed,split] [--only driver-tx,device-rx/split] [--sweep [--rings packed]]
 * [--json] [--markdown] [--svg FILE] [--from results.json]`
 *
 * `--json` prints one JSON object (options, every run, every row's summary) as the only stdout;
 * `--from FILE --markdown` turns it into the README's Performance table without running anything,
 * `--from FILE --svg chart.svg` into the chart.
 *
 * ## Why runs of the same pair vary here
 *
 * Quiet, this 2-core KVM guest gave the same pair 17–60 Mpps from run to run. What small
 * experiments found (1-second runs, 3 rounds, `driver-tx/packed/64`, taken while other
 * engineers' CPU-heavy tests shared the guest; every run records `steal` and `runnable`):
 *
 * - Other work inside the guest, not the hypervisor. `/proc/stat` steal stayed at 0–4 % on both
 *   vCPUs in every run, while the mean count of runnable threads (`procs_running`; a run's own
 *   pollers and the sampler make 3) was 11–19, with a load average of 5–13. The pinned pollers
 *   then get a fraction of their CPU each, and rates fell 10–50× below the quiet figures.
 * - A pair pays the product of two CPU shares. Frames move only while both sides are on-CPU at
 *   once (a 256-descriptor ring fills or drains in microseconds), so the same pair ranged 2–7×
 *   within one 3-round session (DPDK's C txonly: 0.40–2.68 Mpps), more than either program's
 *   CPU share varies. When the load changed during a session the rate followed it (correlation
 *   of Mpps with the runnable count −0.65 to −0.95; pktgen 0.24 Mpps at 10 runnable threads, 6.2
 *   at 5); when it stayed high the correlation was anywhere from −0.5 to +0.8: then what counts
 *   is when the scheduler co-runs the two, not the mean load. Under such load the paired
 *   per-round ratio still spread 0.5–2.5, but its median stayed near 1.0–1.5 for this row while
 *   single rates moved 3–26×.
 * - vCPU placement and the cache lines the two sides share. `cacheline_pingpong.ts` (two threads
 *   bouncing one line between the CPUs) measured a best round trip of 136 ns (median 192 ns) in a
 *   quieter minute and 225 ns under full load: ~70 ns one way, an upper bound since the best
 *   round still includes some preemption. On an EPYC host, cores sharing an L3 exchange a line in
 *   a few tens of ns and cores on different L3 slices in about 100 ns. Every descriptor handoff pays that transfer, and the host may place and move
 *   the two vCPUs differently from one run to the next (the guest cannot see or pin it; it shows
 *   one flat socket), so the cost of each handoff can change severalfold between runs. That is
 *   the likely cause of 17–60 Mpps on an otherwise idle guest. Inferred, not shown: the guest was
 *   never idle during these experiments; run the ping-pong before and after a bench session and
 *   compare its best figure.
 * - Which CPU each side gets (`--cpus 1,0` against `0,1`): no asymmetry beyond the noise (C side
 *   0.27–3.17 against 0.22–2.68 Mpps over two sessions each).
 * - testpmd's main lcore with its forwarding lcore on one CPU (`--lcores 0@0,1@0`, the default)
 *   or on the other (`--lcores 0@1,1@0`): no difference beyond the noise (C side 0.53–2.54
 *   Mpps); the main lcore sleeps in its command line.
 * - Ring size: 1024 descriptors instead of 256 left the spread as wide (C side max/min 6.2
 *   against 6.7).
 * - Start/stop timing: testpmd windows run between the midpoints of its `start` and `stop`
 *   commands (`forwardFor` in `peers.ts`); 1-second runs measured 1.00–1.10 s windows under load, so
 *   counts and windows stay consistent; the examples time themselves.
 * - CPU frequency: the guest sees a constant TSC and no cpufreq; host frequency is invisible.
 *
 * Hence: rounds are round-major (a noisy minute hits one round of many rows, not all rounds of
 * one row), ABBA within a round, ratios per round, and every run flagged NOISY when other
 * threads were runnable or steal exceeded 2 %. Final figures want a quiet machine: no NOISY runs.
 *
 * The forwarding row's loop: testpmd io between two net_vhost ports used to be fed by a
 * virtio-user txonly and drained by a virtio-user rxonly, both on the driver CPU: three pollers on
 * two CPUs. Feeder and drain then took turns in scheduler slices; while the drain was off-CPU its
 * ring filled in microseconds and port 1 refused the rest: 5–35 kframes/s, against 4–44 Mpps for
 * a single-hop txonly → rxonly in the same minutes. One testpmd with two virtio-user ports in io
 * mode, seeded by `start tx_first`, now closes the loop on one CPU (`loopThrough` in `peers.ts`):
 * C io forwarding measured 13–41 Mpps at 64 B and 4–11 Mpps (50–137 Gbps) at 1518 B in one
 * 2-round session.
 *
 * 9000-byte frames (`--sweep --only driver-tx/packed/9000,driver-tx/split/9000`): pktgen
 * `--size 9000` against testpmd virtio-user txonly `--txpkts 9000`, both into the same net_vhost
 * rxonly (`--max-pkt-len 9018 --mbuf-size 10240`), 7 ABBA rounds of 2 s on a loaded guest (every
 * run NOISY): TS/C 0.98 (0.27–2.71) packed and 1.45 (0.36–4.77) split; Gbps medians 18.0 / 18.9
 * packed and 21.7 / 22.8 split; best runs 153 Gbps (TS) and 206 Gbps (C).
 *
 * ## Where TypeScript trailed, and why (profiles)
 *
 * A quick matrix (3 rounds, 2 s, `--order ab`, 7–13 runnable threads from other work) put these
 * rows below 1.0: driver TX split 1518 B (0.41), driver RX 64 B (0.42 split, 0.45 packed),
 * driver TX packed 64 B (0.82), device TX packed 1518 B (0.79); per-round ranges ran 0.02–9.99,
 * so only repeated quiet runs can confirm them. This guest has no hardware counters (`perf stat
 * -e instructions` answers "not supported"), so profiles sample time: `perf record -e cpu-clock
 * -g` with `--v8-flags=--perf-basic-prof`, and `--cpu-prof`.
 *
 * - Driver TX, split, 1518 B: the ring is full much of the time (inferred: pktgen frees only
 *   frames the ring refused, and that free was hot). pktgen freed and reallocated the unsent
 *   burst on every spin: pool `free`/`#take` were 11–17 % of its samples. pktgen now keeps those
 *   frames for the next burst (fixed frames); they left the profile. Before/after ABBA, 1-s
 *   runs under load: 1.37 (0.71–2.86) over 8 rounds, 0.95 (0.35–1.41) over 6: no effect beyond
 *   the noise. Tried and reverted: `QueuePair.txBurst` taking nothing until 32 descriptors are
 *   free (fewer, larger handoffs of the ring's cache lines): no measurable gain, and it changes
 *   what every caller sees.
 * - Driver TX, 64 B: the clock read at the top of every burst (`performance.now()`: the vDSO
 *   plus Deno's op glue) was 36 % of pktgen's samples (split). An unpaced pktgen now takes the
 *   time the event loop read last (every 16 bursts, `EventLoop.clock`): 5.5 % left. Before/after,
 *   6 ABBA rounds of 1 s: 1.21× (0.90–2.91) split, 1.47× (0.92–1.73) packed; at 1518 B 1.01×
 *   (0.95–1.03), where the receiver's copy bounds the row.
 * - Driver RX, split, 64 B (sink at ~20 Mpps): one load in `rxBurst` takes 20 % of the
 *   samples (the used entry, a cache line the device core just wrote), and one builtin call in
 *   `refill` 14 % (where it publishes avail.idx: `Atomics.store` is sequentially consistent, an
 *   `xchg` on x86 that waits until the 32 descriptor and ring stores own their lines, where C
 *   needs only a release store, a plain `mov`). Both are the ring handoff itself; JavaScript
 *   has no release-only store. Not changed.
 * - Device RX, split, 64 B: 10 % of the device's samples are one call into the deno binary near
 *   the top of `pop`, where it loads avail.idx (`Atomics.load`; the samples say a builtin call,
 *   not inlined code) on an empty ring: the device waits for the C feeder, so the row is bound
 *   by the peer. Device TX, 1518 B: the template copy (`memmove`)
 *   is 5 %, `pop` 16 %; it too waits on its peer (ratio 0.97–1.00 split).
 * - Driver RX, 9000 B: sink `--mergeable` takes five 2048-byte buffers a frame, while DPDK's
 *   virtio-user with `--mbuf-size 10240` posted one 10 KB buffer a frame: five times less ring
 *   work for C (TS/C 0.45 packed, 0.73 split, 5 rounds). The C receiver now keeps 2 KB mbufs and
 *   chains them (`--enable-scatter`, `frameOptions` in `peers.ts`): like for like, 5 rounds
 *   under load gave TS/C 0.97 (0.24–1.17) packed and 1.17 (0.73–3.35) split, Gbps medians
 *   61.9 / 74.6 and 63.2 / 71.3.
 * - Device rows, unequal features: DPDK's virtio-user negotiated 0xd10008000 with net_vhost
 *   (VERSION_1, RING_PACKED, INDIRECT, MRG_RXBUF, IN_ORDER) but 0x510000000 with the TS device,
 *   and took other paths ("packed ring mergeable buffer Rx path" against "standard Rx path",
 *   its in-order Tx cleanup against the general one; `--log-level=pmd.net.virtio.*:debug`
 *   prints both). The TS device now offers IN_ORDER (it always used buffers in order; a packed
 *   ring's readable buffers get one used descriptor per publish, §2.8.20) and the bench runs it
 *   with `--mrg-rxbuf`: the same 0xd10008000 against both. Its source with MRG_RXBUF had copied
 *   the template with the scatter loop; a frame that fits the first buffer is now one `set()`
 *   (device TX packed 64 B with `--mrg-rxbuf`: 9.4–9.9 before, 18.5–18.8 Mpps after, three
 *   alternating 3-s runs each).
 * - Forwarding, 1518 B: the copy between the two frontends' memories was a loop over words
 *   (~250 ns for 1518 B; `copyWithin` does it in ~50 ns but only within one buffer). Both
 *   ports now map their frontends' regions into one reserved address range (`MemoryArena`), so
 *   every copy is one `copyWithin`. Relay alone (`ring_bench.ts`, one thread): 635 → 168 ns a
 *   frame at 1518 B, 116 ns at 64 B either way; the forwarding loop went from 1.4 to 5.2 Mpps
 *   at 1518 B (C: 11). At 64 B the relay's own instructions (116 ns a frame in one thread,
 *   against the ~28 ns C's two copies cost) bound the row: two pops with their translations,
 *   a fresh header, a 16-word copy, two pushes (`perf`: scatter 25 %, pop 19 %, header and
 *   bookkeeping 26 %).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { testpmdPath } from "../tests/peers.ts";
import { matrix, type Pair, selectRows } from "./matrix.ts";
import { noiseNote, noisy, type PairResult, runRounds, type RunSample } from "./rounds.ts";
import { cpus } from "./peers.ts";
import { sweep, SWEEP_DEFAULT_JOBS } from "./sweep.ts";
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
      "jobs: driver-tx driver-tx-flows driver-rx device-rx device-tx forward latency,\n" +
      "  or the start of row ids, e.g. --only driver-tx/packed/9000",
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
  const only = args.only ?? (args.sweep ? SWEEP_DEFAULT_JOBS.join(",") : undefined);
  pairs = selectRows(pairs, only);
  const dir = await Deno.makeTempDir({ prefix: "versus-dpdk-" });
  const started = new Date().toISOString();
  try {
    const { samples, results } = await runRounds(pairs, {
      rounds,
      seconds,
      order,
      dir,
      lcores: args.lcores,
      onPlan: (runs) =>
        console.error(
          `${pairs.length} rows, ${runs} runs of ${seconds} s: about ` +
            `${Math.ceil((runs * (seconds + 4)) / 60)} min (each run also starts its peers)`,
        ),
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
