/**
 * The sweep (`--sweep`): one parameter varied at a time, the others at their defaults (64 B,
 * burst 32, 256 descriptors), for each job of the matrix's first four (driver TX and RX, device
 * RX and TX) against its C twin. By default only driver TX (pktgen.ts vs testpmd virtio-user
 * txonly) and device RX (device.ts sink vs testpmd vhost rxonly) run; `--only` picks others.
 *
 * ```
 *   frame size  64 .. 9000 B   (above 2036 B: testpmd --max-pkt-len 9018 --mbuf-size 10240,
 *                               pktgen in 10240-byte buffers, sink --mergeable; device rows n/a
 *                               above the device's --size limit)
 *   burst       1 .. 128       (the measured side's burst; the peer keeps 32)
 *   queue size  64 .. 1024     (both sides' rings: the driver sets it, the device follows)
 * ```
 *
 * @module
 */

import { FEATURES, maxFrameSize } from "./features.ts";
import { type Pair, pair } from "./matrix.ts";

/** Frame sizes swept (bytes without FCS). */
export const SWEEP_SIZES = [64, 128, 256, 512, 1024, 1518, 2036, 4096, 9000];
/** Burst sizes swept. */
export const SWEEP_BURSTS = [1, 4, 8, 16, 32, 64, 128];
/** Queue sizes swept. */
export const SWEEP_QUEUES = [64, 128, 256, 512, 1024];

/** The TypeScript program of each swept job (whose usage says the largest frame it takes). */
const PROGRAMS = {
  "driver-tx": "pktgen",
  "driver-rx": "sink",
  "device-rx": "device",
  "device-tx": "device",
} as const;

/** Jobs the sweep covers when `--only` names none. */
export const SWEEP_DEFAULT_JOBS = ["driver-tx", "device-rx"];

/** The sweep's rows for ring layout `packed`, every job (filter with `--only`). */
export async function sweep(packed: boolean): Promise<Pair[]> {
  const out: Pair[] = [];
  const base = { packed, size: 64, queueSize: 256, flows: 0 };
  for (const job of ["driver-tx", "driver-rx", "device-rx", "device-tx"] as const) {
    const program = PROGRAMS[job];
    const limit = await maxFrameSize(program);
    for (const size of SWEEP_SIZES) {
      const p = pair(job, { ...base, size }, "/size");
      p.axis = { name: "size", value: size };
      if (size > limit) p.na = `needs frames above ${limit} B in ${program}.ts`;
      out.push(p);
    }
    for (const burst of SWEEP_BURSTS) {
      const p = pair(job, { ...base, burst }, `/burst${burst}`);
      p.axis = { name: "burst", value: burst };
      if (job.startsWith("device")) p.needs = [FEATURES.deviceBurst];
      out.push(p);
    }
    for (const queueSize of SWEEP_QUEUES) {
      const p = pair(job, { ...base, queueSize }, `/queue${queueSize}`);
      p.axis = { name: "queue", value: queueSize };
      out.push(p);
    }
  }
  return out;
}
