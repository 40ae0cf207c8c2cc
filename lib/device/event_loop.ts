/**
 * The device's event-driven loop, beside its busy loop (`VhostUserDevice.run`): the device side
 * of an interrupt mode. While frames move it polls as `run` does; once `idlePolls` polls in a
 * row moved nothing it asks the driver for kicks on the rings that bring it work (device event
 * suppression, virtio 1.2 §2.7.10 / §2.8.10), looks once more, and sleeps in poll(2) on the kick
 * eventfds and the vhost-user socket, on one of Deno's FFI threads, so the thread's event loop
 * runs and an idle device costs no CPU; woken, it turns kicks off again and polls.
 *
 * ```
 *   busy: device.poll() … idlePolls empty polls ──► arm kicks, hasAvail()? ──yes──► busy
 *                                                        │ no
 *   sleep: await poll([socket, kick fds]) ◄──────────────┘ ──kick / message──► disarm ──► busy
 * ```
 *
 * @module
 */

import { eventfdDrain } from "../../ffi/eventfd.ts";
import { pollFd, POLLIN, pollInAsync } from "../../ffi/poll.ts";
import type { DeviceQueue } from "../virtio/virtqueue.ts";
import type { VhostUserDevice } from "./vhost_user_device.ts";

/** Options of {@linkcode runEventDriven}. */
export interface EventLoopOptions {
  /** Return when `Atomics.load(stop, 0) !== 0` (checked between busy phases and sleeps). */
  stop?: Int32Array;
  /** Empty polls in a row before sleeping (default 1024: a few tens of µs of spinning). */
  idlePolls?: number;
  /** Longest sleep, ms, so `stop` is noticed (default 100). */
  maxSleepMs?: number;
  /** Called after each busy phase, e.g. to publish counters. */
  onIdle?: (device: VhostUserDevice) => void;
}

/** What {@linkcode runEventDriven} did. */
export interface EventLoopResult {
  /** Why it returned. */
  end: "stop" | "closed";
  /** Times it slept in poll(2). */
  sleeps: number;
  /** Times a kick (not the socket or the timeout) ended a sleep. */
  kicks: number;
}

/**
 * Serves `device` event-driven until `stop` or the device closes (see the module doc).
 *
 * @example
 * ```ts ignore
 * import { runEventDriven } from "./event_loop.ts";
 * const device = VhostUserDevice.listen("/run/vhost.sock", { mode: "echo" });
 * const { sleeps } = await runEventDriven(device, { stop });
 * ```
 */
export async function runEventDriven(
  device: VhostUserDevice,
  options: EventLoopOptions = {},
): Promise<EventLoopResult> {
  const idlePolls = options.idlePolls ?? 1024;
  const maxSleepMs = options.maxSleepMs ?? 100;
  const stop = options.stop;
  const b = device.backend;
  const armed: DeviceQueue[] = [];
  const kickFds: number[] = [];
  let sleeps = 0, kicks = 0;
  for (;;) {
    for (let idle = 0; idle < idlePolls;) {
      idle = device.poll() > 0 ? 0 : idle + 1;
      if (b.closed) return { end: "closed", sleeps, kicks };
    }
    options.onIdle?.(device);
    if (stop !== undefined && Atomics.load(stop, 0) !== 0) return { end: "stop", sleeps, kicks };
    // Arm: ask for a kick on every running ring that brings work (the transmitqs, 2i+1; for a
    // source, the receiveqs, 2i, whose posted buffers it fills), then look once more: a chain
    // made available before the driver saw the change raises no kick (the seq_cst store in
    // setNotifications orders hasAvail's load after it).
    armed.length = 0;
    kickFds.length = 0;
    let pending = false;
    const parity = device.mode === "source" ? 0 : 1;
    for (const i of b.running) {
      if ((i & 1) !== parity) continue;
      const q = b.queue(i);
      if (q === null) continue;
      q.setNotifications(true);
      armed.push(q);
      if (b.vrings[i].kickFd >= 0) kickFds.push(b.vrings[i].kickFd);
      if (q.hasAvail()) pending = true;
    }
    if (!pending) {
      const socket = b.connectionFd >= 0 ? b.connectionFd : b.listenFd;
      const fds = socket >= 0 ? [socket, ...kickFds] : kickFds;
      if (fds.length > 0) {
        sleeps++;
        if (await pollInAsync(fds, maxSleepMs) >= (socket >= 0 ? 1 : 0)) kicks++;
      }
    }
    // Frames flow again (or a message came): no more kicks while polling finds work.
    for (const q of armed) q.setNotifications(false);
    for (const fd of kickFds) {
      if ((pollFd(fd, POLLIN, 0) & POLLIN) !== 0) eventfdDrain(fd);
    }
  }
}
