/**
 * The Worker module of {@linkcode PairWorkers}: serves one queue pair of a vhost-user session
 * whose protocol runs on another thread. It maps the frontend's memory from fds of its own,
 * rebuilds the pair's two vrings where the session left them, and busy-polls them with a
 * {@linkcode NetDevicePath} of its own (no lock: nothing else touches these rings meanwhile).
 *
 * ```
 *   {type:"start", mailbox, handle, counters, options} ──► {type:"ready"}
 *   idle:     Atomics.wait(request) ── ATTACH ──► map memory, build rx/tx vrings ──► ack
 *   running:  path.poll() ×64, then: publish counters, look at the request word
 *             ── DETACH ──► positions into the handle, unmap, close fds ──► ack
 *   a rule the frontend broke ──► state FAULTED + error text (the session thread ends it)
 * ```
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { GuestMemory } from "../vhost_user/guest_memory.ts";
import { VhostUserRequest } from "../vhost_user/message.ts";
import { Vring } from "../vhost_user/vring.ts";
import { CONTROL_SLOTS, COUNTER_FIELDS, publishCounters } from "./device_thread.ts";
import { NetDevicePath } from "./net_device.ts";
import {
  PAIR_ERROR_BYTES,
  PAIR_WORDS,
  PairCommand,
  type PairRing,
  PairState,
  PairWord,
  type PairWorkerStart,
  readHandle,
  stoppedAt,
} from "./pair_handle.ts";
import { EMPTY_MEMORY, VringPair } from "./vring_pair.ts";

/** Polls between looks at the mailbox (and counter publishes). */
const POLLS_PER_CHECK = 64;

function serve(start: PairWorkerStart): void {
  const words = new Int32Array(start.mailbox, 0, PAIR_WORDS);
  const errorText = new Uint8Array(start.mailbox, 4 * PAIR_WORDS);
  const slots = new Float64Array(start.handle);
  const control = new Int32Array(start.counters, 0, CONTROL_SLOTS);
  const counters = new Float64Array(start.counters, 8, COUNTER_FIELDS.length);
  const path = new NetDevicePath(EMPTY_MEMORY, start.options);
  const name = `device queue pair ${start.index}`;
  let memory: GuestMemory | null = null;
  const rings = [new Vring(2 * start.index), new Vring(2 * start.index + 1)];

  const fault = (e: unknown) => {
    // "Name\nmessage": the session thread rebuilds the error as the ring had thrown it there.
    const text = new TextEncoder().encode(
      e instanceof Error ? `${e.name}\n${e.message}` : `Error\n${name}: ${String(e)}`,
    ).subarray(0, PAIR_ERROR_BYTES);
    errorText.set(text);
    Atomics.store(words, PairWord.ERROR_LENGTH, text.length);
    Atomics.store(words, PairWord.STATE, PairState.FAULTED); // after the text: it is complete
  };
  const detach = () => {
    path.detachAll();
    if (rings[0].queue !== null) stoppedAt(slots, 0, rings[0].queue.vringBase);
    if (rings[1].queue !== null) stoppedAt(slots, 1, rings[1].queue.vringBase);
    for (const v of rings) v.reset(); // closes the call fds this Worker owned
    memory?.close();
    memory = null;
    publishCounters(control, counters, path.stats);
  };
  const attach = () => {
    const h = readHandle(slots);
    // The session's name for its rings came in the error area (see PairWorkers.attach).
    const session = new TextDecoder().decode(
      errorText.slice(0, Atomics.load(words, PairWord.ERROR_LENGTH)),
    );
    stoppedAt(slots, 0, -1);
    stoppedAt(slots, 1, -1);
    // The call fds are the rings' from here on (closed by Vring.reset), the memory fds the
    // mapping's (closed by GuestMemory.map when it fails, else by close).
    rings[0].callFd = h.rx.callFd;
    rings[1].callFd = h.tx.callFd;
    try {
      memory = GuestMemory.map(
        h.regions.map((r) => ({
          guestPhysAddr: BigInt(r.guestPhysAddr),
          memorySize: BigInt(r.size),
          userspaceAddr: BigInt(r.userspaceAddr),
          mmapOffset: BigInt(r.mmapOffset),
        })),
        h.regions.map((r) => r.fd),
      );
      [h.rx, h.tx].forEach((ring: PairRing, k) => {
        const v = rings[k];
        v.callSet = true;
        v.size = ring.size;
        v.addresses = { desc: ring.desc, driver: ring.driver, device: ring.device };
        v.start(
          VhostUserRequest.SET_VRING_KICK,
          memory,
          h.packed,
          h.eventIdx,
          ring.base,
          `${session} vring ${v.index} (${k === 0 ? "rx" : "tx"}${start.index})`,
          h.inOrder,
        );
      });
      path.setMemory(memory);
      path.mergeable = h.mergeable;
      path.attach(new VringPair(rings[0].queue!, rings[1].queue!, rings[0], rings[1]));
      Atomics.store(words, PairWord.STATE, PairState.RUNNING);
    } catch (e) {
      detach();
      fault(e);
    }
  };

  self.postMessage({ type: "ready" });
  let seen = 0; // requests are numbered from 1: one made before this line is still served
  for (;;) {
    const request = Atomics.load(words, PairWord.REQUEST);
    if (request === seen) {
      if (Atomics.load(words, PairWord.STATE) !== PairState.RUNNING) {
        Atomics.wait(words, PairWord.REQUEST, seen, 1000); // idle: sleep until a request
        continue;
      }
      try {
        for (let i = 0; i < POLLS_PER_CHECK; i++) path.poll();
      } catch (e) {
        detach(); // a rule the frontend broke: stop here, the session thread ends the session
        fault(e);
      }
      publishCounters(control, counters, path.stats);
      continue;
    }
    seen = request;
    const command = Atomics.load(words, PairWord.COMMAND);
    if (command === PairCommand.ATTACH) {
      Atomics.store(words, PairWord.STATE, PairState.DETACHED);
      attach();
    } else {
      detach();
      if (Atomics.load(words, PairWord.STATE) === PairState.RUNNING) {
        Atomics.store(words, PairWord.STATE, PairState.DETACHED);
      }
    }
    // The positions, counters and state above are written: acknowledge (seq_cst store).
    Atomics.store(words, PairWord.ACK, seen);
    Atomics.notify(words, PairWord.ACK);
    if (command === PairCommand.EXIT) return;
  }
}

self.onmessage = (e: MessageEvent<PairWorkerStart>) => {
  self.onmessage = null; // one pair per Worker
  try {
    serve(e.data);
  } catch (err) {
    self.postMessage({ type: "failed", error: err instanceof Error ? err.message : String(err) });
  }
  self.close();
};
