/**
 * The pairs the bench compares: each row is one TypeScript program and its C twin in DPDK 22.11,
 * doing the same job on one core each against the same peer. Rows whose TypeScript side needs a
 * feature not merged yet carry a `needs` list and print "n/a: needs …".
 *
 * ```
 *   driver TX   pktgen.ts            | testpmd virtio-user txonly ─► testpmd vhost rxonly
 *   driver RX   sink.ts              | testpmd virtio-user rxonly ◄─ testpmd vhost txonly
 *   device RX   device.ts sink       | testpmd vhost rxonly       ◄─ testpmd virtio-user txonly
 *   device TX   device.ts source     | testpmd vhost txonly       ─► testpmd virtio-user rxonly
 *   forwarding  device.ts forward    | testpmd io (2 vhost ports)  ◄─► testpmd virtio-user io
 *                                                                   (2 ports, one loop)
 *   latency     pktgen.ts --latency through testpmd io (TypeScript only)
 * ```
 *
 * @module
 */

import { type Feature, FEATURES } from "./features.ts";
import {
  cDriverRx,
  cDriverTx,
  cForward,
  type Counted,
  type RunConfig,
  tsDeviceRx,
  tsDeviceTx,
  tsDriverRx,
  tsDriverTx,
  tsForward,
  tsLatency,
} from "./peers.ts";

/** One side of a pair: runs once and returns the receiver's count and its window. */
export type Runner = (cfg: RunConfig) => Promise<Counted>;

/** The jobs a row can measure. */
export type Job =
  | "driver-tx"
  | "driver-tx-flows"
  | "driver-rx"
  | "device-rx"
  | "device-tx"
  | "forward"
  | "latency";

/** A row of the matrix or the sweep. */
export interface Pair {
  /** Unique key, e.g. `driver-tx/packed/64`. */
  id: string;
  /** What is measured. */
  job: Job;
  /** Ring layout, frame size and other options of every run of this row. */
  cfg: Omit<RunConfig, "sock" | "seconds">;
  /** The TypeScript side. */
  ts: Runner;
  /** The C side (null: a TypeScript-only row, e.g. latency). */
  c: Runner | null;
  /** Features the TypeScript side needs. */
  needs: Feature[];
  /** Why the row cannot run at all, when known before running (e.g. "mergeable buffers"). */
  na?: string;
  /** Run the C side even when the TypeScript side is n/a (its figure is still worth having). */
  cAlone?: boolean;
  /** The varied parameter in a sweep (for tables and charts). */
  axis?: { name: "size" | "burst" | "queue"; value: number };
}

/** What each job compares, for tables: the TypeScript program and the C twin. */
export const JOBS: Record<Job, { title: string; ts: string; c: string }> = {
  "driver-tx": {
    title: "driver TX",
    ts: "`pktgen.ts`",
    c: "testpmd `net_virtio_user` txonly, both into testpmd `net_vhost` rxonly",
  },
  "driver-tx-flows": {
    title: "driver TX, per-packet flows",
    ts: "`pktgen.ts --flows 256`",
    c: "testpmd `net_virtio_user` txonly `--txonly-multi-flow`, both into testpmd `net_vhost` rxonly",
  },
  "driver-rx": {
    title: "driver RX",
    ts: "`sink.ts`",
    c: "testpmd `net_virtio_user` rxonly, both fed by testpmd `net_vhost` txonly",
  },
  "device-rx": {
    title: "device RX",
    ts: "`device.ts --mode sink`",
    c: "testpmd `net_vhost` rxonly, both fed by testpmd `net_virtio_user` txonly",
  },
  "device-tx": {
    title: "device TX",
    ts: "`device.ts --mode source`",
    c: "testpmd `net_vhost` txonly, both drained by testpmd `net_virtio_user` rxonly",
  },
  "forward": {
    title: "forwarding",
    ts: "`device.ts` forwarding between two vhost-user ports",
    c: "testpmd io between two `net_vhost` ports; both looped back by one testpmd `net_virtio_user` io",
  },
  "latency": {
    title: "round-trip latency",
    ts: "`pktgen.ts --latency` through testpmd io",
    c: "(none)",
  },
};

const RUNNERS: Record<Exclude<Job, "latency">, { ts: Runner; c: Runner; needs: Feature[] }> = {
  "driver-tx": { ts: tsDriverTx, c: (cfg) => cDriverTx(cfg), needs: [] },
  "driver-tx-flows": { ts: tsDriverTx, c: (cfg) => cDriverTx(cfg), needs: [FEATURES.flows] },
  "driver-rx": { ts: tsDriverRx, c: (cfg) => cDriverRx(cfg), needs: [] },
  "device-rx": { ts: tsDeviceRx, c: (cfg) => cDriverTx(cfg, false), needs: [] },
  "device-tx": { ts: tsDeviceTx, c: (cfg) => cDriverRx(cfg, false), needs: [] },
  "forward": { ts: tsForward, c: cForward, needs: [FEATURES.forward] },
};

/** Options shared by every row of one bench invocation. */
export interface MatrixOptions {
  /** Descriptors per ring (default 256). */
  queueSize: number;
  /** Frame sizes (default 64 and 1518). */
  sizes: number[];
  /** Ring layouts (default packed and split). */
  rings: ("packed" | "split")[];
  /** Flows for the per-packet-flow rows. */
  flows: number;
}

/**
 * One row of job `job` with the given options.
 *
 * @example
 * ```ts
 * const p = pair("driver-tx", { packed: true, size: 64, queueSize: 256, flows: 0 });
 * console.log(p.id); // driver-tx/packed/64
 * ```
 */
export function pair(job: Exclude<Job, "latency">, cfg: Pair["cfg"], tag = ""): Pair {
  const r = RUNNERS[job];
  return {
    id: `${job}/${cfg.packed ? "packed" : "split"}/${cfg.size}${tag}`,
    job,
    cfg,
    ts: r.ts,
    c: r.c,
    needs: r.needs,
    cAlone: job === "forward",
  };
}

/** The latency rows: pktgen's latency mode at `mpps` through testpmd io. */
export function latencyPair(mpps: number, cfg: Pair["cfg"]): Pair {
  return {
    id: `latency/${cfg.packed ? "packed" : "split"}/${cfg.size}@${mpps}Mpps`,
    job: "latency",
    cfg,
    ts: (run) => tsLatency(run, mpps),
    c: null,
    needs: [FEATURES.latency],
  };
}

/** Every row of the matrix, in the order tables print them. */
export function matrix(opts: MatrixOptions): Pair[] {
  const out: Pair[] = [];
  const jobs = ["driver-tx", "driver-tx-flows", "driver-rx", "device-rx", "device-tx", "forward"];
  for (const job of jobs as Exclude<Job, "latency">[]) {
    for (const size of opts.sizes) {
      for (const ring of opts.rings) {
        const flows = job === "driver-tx-flows" ? opts.flows : 0;
        out.push(pair(job, { packed: ring === "packed", size, queueSize: opts.queueSize, flows }));
      }
    }
  }
  for (const ring of opts.rings) {
    for (const mpps of [0.1, 1, 5]) {
      const packed = ring === "packed";
      out.push(latencyPair(mpps, { packed, size: 64, queueSize: opts.queueSize, flows: 0 }));
    }
  }
  return out;
}

/**
 * The rows `only` names: jobs (`driver-tx`) or the start of row ids (`driver-tx/packed/9000`),
 * comma-separated; every row when `only` is undefined.
 *
 * @example
 * ```ts
 * const rows = selectRows(matrix({ queueSize: 256, sizes: [64], rings: ["packed"], flows: 0 }), "forward");
 * console.log(rows.map((p) => p.id)); // ["forward/packed/64"]
 * ```
 */
export function selectRows(pairs: Pair[], only: string | undefined): Pair[] {
  if (only === undefined) return pairs;
  const picks = only.split(",");
  return pairs.filter((p) =>
    picks.some((j) => p.job === j || p.id === j || p.id.startsWith(`${j}/`))
  );
}
