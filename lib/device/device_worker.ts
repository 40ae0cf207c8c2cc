/**
 * The Worker module of {@linkcode DeviceThread}: builds a {@linkcode VhostUserDevice} from the
 * start message and runs it in a busy loop until a limit or the stop command.
 *
 * ```
 *   {type:"start"} ──► listen/connect ──► {type:"ready"} ──► run() ──► {type:"done", stats}
 *     counters SharedArrayBuffer ◄── publishCounters() every ~1 ms       │ (frames stop moving)
 *   control word STOP/PAUSE ──► run() returns      answer the frontend until it leaves or STOP
 *                                                   ──► close ──► {type:"closed", errors}
 * ```
 *
 * @module
 */

/// <reference lib="deno.worker" />

import {
  CONTROL_COMMAND,
  CONTROL_LINK,
  DeviceCommand,
  type DeviceWorkerReply,
  type DeviceWorkerStart,
  publishCounters,
} from "./device_thread.ts";
import type { FrameHook, NetDeviceStats } from "./net_device.ts";
import { writeUdpFrame } from "../packet/udp_frame.ts";
import { VhostUserDevice } from "./vhost_user_device.ts";
import { PairWorkers } from "./pair_workers.ts";

/** How often a paused device looks at the control words, ms. */
const ANSWER_SLICE_MS = 5;

function post(reply: DeviceWorkerReply): void {
  self.postMessage(reply);
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** What a hook module exports (see `DeviceThreadOptions.hook`). */
interface HookModule {
  hook?: FrameHook;
  result?: () => unknown;
}

function serve(
  start: DeviceWorkerStart,
  hookModule: HookModule,
  workers: PairWorkers | undefined,
): void {
  const { path, options } = start;
  const control = new Int32Array(start.control);
  const counters = new Float64Array(start.counters);
  const errors: string[] = [];
  let device: VhostUserDevice | null = null;
  let stats: NetDeviceStats = {
    fromDriverPackets: 0,
    fromDriverBytes: 0,
    toDriverPackets: 0,
    toDriverBytes: 0,
    toDriverDropped: 0,
    calls: 0,
  };
  let reported = false;
  const allErrors = () => [...(device?.errors.map(describe) ?? []), ...errors];
  let queues: NetDeviceStats[] | undefined;
  try {
    const frame = sourceFrame(start);
    const deviceOptions = {
      workers,
      mode: options.mode,
      macSwap: options.macSwap,
      frame,
      queuePairs: options.queuePairs,
      features: options.features,
      protocolFeatures: options.protocolFeatures,
      mac: options.mac,
      mtu: options.mtu,
      hook: hookModule.hook,
    };
    device = options.connect
      ? VhostUserDevice.connect(path, deviceOptions)
      : VhostUserDevice.listen(path, deviceOptions);
    stats = device.stats;
    post({ type: "ready" });
    const d = device;
    const syncLink = () => {
      const up = Atomics.load(control, CONTROL_LINK) !== 0; // DeviceThread.setLinkUp
      if (up !== d.linkUp) d.linkUp = up;
    };
    /** Paused: answers the frontend while `holding()`, asleep in poll(2) between its messages. */
    const answerWhile = (holding: () => boolean) => {
      while (holding()) {
        d.run({ sliceMs: ANSWER_SLICE_MS });
        syncLink();
      }
    };
    if (Atomics.load(control, CONTROL_COMMAND) === DeviceCommand.HOLD) {
      device.paused = true; // answer the frontend only, until resume() (or stop) changes HOLD
      answerWhile(() =>
        Atomics.load(control, CONTROL_COMMAND) === DeviceCommand.HOLD && !d.backend.closed
      );
      // Only RUN moves frames; PAUSE or STOP end run() at once below, still paused.
      if (Atomics.load(control, CONTROL_COMMAND) === DeviceCommand.RUN) device.paused = false;
    }
    const publish = (d: VhostUserDevice) => {
      publishCounters(control, counters, d.stats);
      syncLink();
    };
    const end = device.run({
      count: options.count,
      durationMs: options.durationMs,
      untilDisconnect: options.untilDisconnect,
      stop: control,
      onTick: publish,
      tickMs: 1,
    });
    publish(device);
    const pausing = end === "stop" &&
      Atomics.load(control, CONTROL_COMMAND) === DeviceCommand.PAUSE;
    if (end !== "stop" || pausing) {
      // No more frames move, so the counters are final; keep answering the frontend (it stops
      // its rings with GET_VRING_BASE and disconnects) rather than cut it off mid-shutdown.
      device.paused = true;
      if (pausing) {
        post({ type: "paused", stats: { ...stats } });
      } else {
        post({ type: "done", stats: { ...stats }, errors: allErrors() });
        reported = true;
      }
      answerWhile(() => {
        const command = Atomics.load(control, CONTROL_COMMAND);
        if (command === DeviceCommand.STOP || d.backend.closed) return false;
        return command === DeviceCommand.PAUSE || d.backend.connected;
      });
    }
  } catch (e) {
    errors.push(describe(e));
  } finally {
    try {
      if (device === null) workers?.close();
      device?.close();
      if (workers !== undefined && device !== null) {
        queues = Array.from({ length: workers.count }, (_, i) => device!.queueStats(i)!);
      }
    } catch (e) {
      errors.push(describe(e));
    }
  }
  publishCounters(control, counters, stats);
  if (!reported) post({ type: "done", stats: { ...stats }, errors: allErrors() });
  let hookResult: unknown;
  try {
    hookResult = hookModule.result?.();
  } catch (e) {
    errors.push(`hook result(): ${describe(e)}`);
  }
  post({ type: "closed", errors: allErrors(), hookResult, queues });
}

/** Source mode's UDP frame (`frameSize`, default 64), else undefined. */
function sourceFrame(start: DeviceWorkerStart): Uint8Array | undefined {
  if (start.options.mode !== "source") return undefined;
  const size = start.options.frameSize ?? 64;
  const frame = new Uint8Array(size);
  writeUdpFrame(frame, 0, size);
  return frame;
}

self.onmessage = async (e: MessageEvent<DeviceWorkerStart>) => {
  self.onmessage = null; // one run per worker
  try {
    const { hook, workers, queuePairs, mode, macSwap } = e.data.options;
    const pairs = workers === true
      ? await PairWorkers.start(queuePairs ?? 1, { mode, macSwap, frame: sourceFrame(e.data) })
      : undefined;
    serve(e.data, hook === undefined ? {} : await import(hook), pairs);
  } catch (err) {
    // serve() reports its own errors; this is only for a failure while reporting.
    post({ type: "closed", errors: [describe(err)] });
  }
  self.close();
};
