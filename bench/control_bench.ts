/**
 * Cost of one control command (virtio 1.2 §5.1.6.5) from the caller's side: post the indirect
 * table, notify the emulated device, which answers in the same call, dequeue the ack. PROMISC
 * stays in the process (the vhost-user backend cannot filter); VQ_PAIRS_SET adds two
 * SET_VRING_ENABLE round trips over the socket (REPLY_ACK) to the TS device on another thread.
 *
 * ```
 *   setPromiscuous ─► ctrl ring ─► ControlDevice ─► ack            (in-process)
 *   setQueuePairs  ─► ctrl ring ─► ControlDevice ─► SET_VRING_ENABLE ×2 ─► TS device ─► ack
 * ```
 *
 * Run: `deno bench -A --unstable-ffi bench/control_bench.ts`.
 *
 * @module
 */

import { DeviceThread } from "../lib/device/device_thread.ts";
import { VirtioNet } from "../lib/driver/virtio_net.ts";

const device = await DeviceThread.start({ mode: "sink", queuePairs: 2 });
const port = VirtioNet.open({ path: device.path, queuePairs: 2, hugepages: false });
let on = false;
let pairs = 1;

Deno.bench("control: setPromiscuous (in-process emulated device)", () => {
  port.setPromiscuous(on = !on);
});

Deno.bench("control: setQueuePairs 1 <-> 2 (2 SET_VRING_ENABLE round trips)", () => {
  port.setQueuePairs(pairs = 3 - pairs);
});

globalThis.addEventListener("unload", () => {
  port.close();
  void device.stop();
});
