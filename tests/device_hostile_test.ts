/**
 * The TypeScript vhost-user device ({@linkcode DeviceThread}, echo mode) against a hostile
 * frontend that breaks one ring or descriptor rule per test. For each: the device reports the
 * error naming the rule, ends that session and closes every fd of it, keeps listening, and a
 * well-behaved driver ({@linkcode VirtioNet}) then moves frames through the same device.
 *
 * ```
 *   HostileFrontend ──socket + memfd (rings written by hand)──► DeviceThread (worker, echo)
 *        └─ device ends the session: EOF here, errors[0] names the rule, fds back to baseline
 *   VirtioNet ──tx──► same DeviceThread ──echo──► VirtioNet rx    (the process is healthy)
 * ```
 *
 * Malformed vhost-user messages are covered in vhost_user_test.ts; these cases are about rings
 * and descriptors (plus the memory table and ring placement as the device maps them).
 *
 * @module
 */

import assert from "node:assert/strict";
import { openFds } from "./helpers.ts";
import { featureMask } from "../lib/virtio/features.ts";
import { VirtioNet } from "../lib/driver/virtio_net.ts";
import { DeviceThread } from "../lib/device/device_thread.ts";
import {
  DESC_F_INDIRECT,
  DESC_F_NEXT,
  DESC_F_WRITE,
  HostileFrontend,
  type PackedRingWriter,
  type SplitRingWriter,
} from "./hostile_frontend.ts";

const SIZE = 256;
/** Byte offsets in the frontend's memory: receiveq ring, transmitq ring, buffers. */
const RX_AT = 0x0000;
const TX_AT = 0x8000;
const BUF_AT = 0x10000;
/** A 64-byte frame plus the 12-byte virtio-net header. */
const FRAME = 12 + 64;
/** Frames the healthy driver sends through the device after each violation. */
const HEALTHY_FRAMES = 64;

/** Waits (a few ms at a time) until the fd count is `want`; returns the last count seen. */
async function settleFds(want: number, timeoutMs = 3000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let n = openFds();
  while (n !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
    n = openFds();
  }
  return n;
}

type Rings = { packed: true; rx: PackedRingWriter; tx: PackedRingWriter } | {
  packed: false;
  rx: SplitRingWriter;
  tx: SplitRingWriter;
};

/**
 * The usual bring-up with `fill` run on the rings before they are announced: negotiation, memory
 * table, both rings, DRIVER_OK. The device starts its data path at DRIVER_OK.
 */
function bringUp(fe: HostileFrontend, packed: boolean, fill: (r: Rings) => void): void {
  fe.negotiate(
    featureMask("F_VERSION_1", "RING_F_INDIRECT_DESC") |
      (packed ? featureMask("F_RING_PACKED") : 0n),
  );
  fe.setMemTable();
  const r: Rings = packed
    ? { packed, rx: fe.packedRing(0, RX_AT, SIZE), tx: fe.packedRing(1, TX_AT, SIZE) }
    : { packed, rx: fe.splitRing(0, RX_AT, SIZE), tx: fe.splitRing(1, TX_AT, SIZE) };
  fill(r);
  fe.startRings([r.rx, r.tx]);
  fe.driverOk();
}

/** Makes one transmitq chain of one descriptor available at slot/head 0 (id 0). */
function txOne(r: Rings, addr: number, len: number, flags = 0): void {
  if (r.packed) r.tx.desc(0, addr, len, 0, flags);
  else {
    r.tx.desc(0, addr, len, flags, 0);
    r.tx.makeAvailable(0);
  }
}

/** Writes an indirect table of descriptors `{addr, len, flags, next}` at byte `at`. */
function indirectTable(
  fe: HostileFrontend,
  at: number,
  entries: { addr: number; len: number; flags: number; next?: number }[],
  packed: boolean,
): void {
  entries.forEach((e, k) => {
    // Split: {addr, len, flags, next}; packed: {addr, len, id, flags} (§2.7.5, §2.8.13).
    if (packed) fe.writeDesc(at + 16 * k, e.addr, e.len, 0, e.flags);
    else fe.writeDesc(at + 16 * k, e.addr, e.len, e.flags, e.next ?? 0);
  });
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** The error a refused vhost-user message ends the session with (`Name: message`). */
function protocolError(request: string, rule: string): RegExp {
  return new RegExp(`^VhostUserError: vhost-user ${request}: ${escape(rule)}$`);
}

/** The error of a ring rule broken in the transmitq (vring 1), named after its vring. */
function ringError(rule: string): RegExp {
  return new RegExp(
    `^VirtqueueError: virtqueue vhost-user \\S+ vring 1 \\(tx0\\): ${escape(rule)}$`,
  );
}

/** The error of a virtio-net data path rule (frame layout in a queue). */
function pathError(queue: "transmitq" | "receiveq", rule: string): RegExp {
  return new RegExp(`^VirtqueueError: virtqueue ${queue}: ${escape(rule)}$`);
}

interface Case {
  name: string;
  /** Ring layout the frontend uses (also the healthy driver's). */
  packed: boolean;
  /** Breaks the rule; the device must then end the session (unless `frontendCloses`). */
  body(fe: HostileFrontend): void;
  /** What the device's error says; null when the session must end without error. */
  error: RegExp | null;
  /** Frames the device legitimately took from this frontend before the fault (default 0). */
  frames?: number;
  /** The frontend, not the device, ends the session (the runner just closes the socket). */
  frontendCloses?: boolean;
}

/** Busy-waits (the device runs on its own thread) until `cond()` holds. */
function spinUntil(what: string, cond: () => boolean, timeoutMs = 5000): void {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

/** Makes `n` valid 64-byte frames available in a split transmitq, from entry `first` on. */
function splitFrames(fe: HostileFrontend, tx: SplitRingWriter, first: number, n: number): void {
  for (let i = first; i < first + n; i++) {
    tx.desc(i, fe.addr(BUF_AT + 0x100 * i), FRAME, 0, 0);
    tx.makeAvailable(i);
  }
}

const CASES: Case[] = [];

// --- memory table and ring placement ---------------------------------------------------------

CASES.push({
  name: "memory table: mmap_offset beyond the end of the file",
  packed: true,
  body(fe) {
    fe.negotiate(featureMask("F_VERSION_1", "F_RING_PACKED"));
    assert.throws(
      () =>
        fe.setMemTable([{
          guestPhysAddr: BigInt(fe.base),
          memorySize: 4096n,
          userspaceAddr: BigInt(fe.base),
          mmapOffset: BigInt(fe.size), // the region starts where the file ends
        }]),
      /refused request 5 \(ack 1\)/,
    );
  },
  error: protocolError(
    "SET_MEM_TABLE",
    "memory table: region 0: mmap_offset + memory_size = 1052672 bytes, but its file has only 1048576",
  ),
});

CASES.push({
  name: "memory table: a region of size 0",
  packed: false,
  body(fe) {
    fe.negotiate(featureMask("F_VERSION_1"));
    assert.throws(
      () =>
        fe.setMemTable([{
          guestPhysAddr: BigInt(fe.base),
          memorySize: 0n,
          userspaceAddr: BigInt(fe.base),
          mmapOffset: 0n,
        }]),
      /refused request 5/,
    );
  },
  error: protocolError("SET_MEM_TABLE", "memory table: region 0 has size 0"),
});

CASES.push({
  name: "a descriptor ring placed partly outside the memory table",
  packed: true,
  body(fe) {
    fe.negotiate(featureMask("F_VERSION_1", "F_RING_PACKED"));
    fe.setMemTable();
    const tx = fe.packedRing(1, TX_AT, SIZE);
    tx.placement.desc = fe.addr(fe.size - 2048); // 4096 bytes of descriptors: half outside
    assert.throws(() => fe.startRings([tx]), /refused request 9 \(ack 1\)/);
  },
  error: protocolError(
    "SET_VRING_ADDR",
    "vring 1: descriptor ring at 0x1000ff800 (4096 bytes) is outside the memory table",
  ),
});

// --- descriptors ------------------------------------------------------------------------------

for (const packed of [false, true]) {
  const layout = packed ? "packed" : "split";

  CASES.push({
    name: `${layout}: a descriptor pointing past the end of memory`,
    packed,
    body(fe) {
      bringUp(fe, packed, (r) => txOne(r, fe.addr(fe.size - 32), FRAME));
    },
    error: ringError("descriptor 0: address 0x1000fffe0 len 76 is outside the memory table"),
  });

  CASES.push({
    name: `${layout}: a descriptor pointing below the memory table`,
    packed,
    body(fe) {
      bringUp(fe, packed, (r) => txOne(r, 0x1000, FRAME));
    },
    error: ringError("descriptor 0: address 0x1000 len 76 is outside the memory table"),
  });

  CASES.push({
    name: `${layout}: a transmitted frame shorter than the virtio-net header`,
    packed,
    body(fe) {
      bringUp(fe, packed, (r) => txOne(r, fe.addr(BUF_AT), 8));
    },
    error: pathError(
      "transmitq",
      "chain 0 holds 8 bytes, less than the 12-byte virtio-net header (§5.1.6.2)",
    ),
  });

  CASES.push({
    name: `${layout}: a nested indirect table`,
    packed,
    body(fe) {
      bringUp(fe, packed, (r) => {
        indirectTable(fe, BUF_AT, [
          { addr: fe.addr(BUF_AT + 0x1000), len: 12, flags: DESC_F_NEXT, next: 1 },
          { addr: fe.addr(BUF_AT + 0x2000), len: 32, flags: DESC_F_INDIRECT },
        ], packed);
        txOne(r, fe.addr(BUF_AT), 32, DESC_F_INDIRECT);
      });
    },
    error: ringError(
      `indirect descriptor 1 of descriptor 0: nested indirect table (§${
        packed ? "2.8.19" : "2.7.5.3.1"
      })`,
    ),
  });

  CASES.push({
    name: `${layout}: an indirect table whose length is not a multiple of 16`,
    packed,
    body(fe) {
      bringUp(fe, packed, (r) => {
        indirectTable(
          fe,
          BUF_AT,
          [{ addr: fe.addr(BUF_AT + 0x1000), len: FRAME, flags: 0 }],
          packed,
        );
        txOne(r, fe.addr(BUF_AT), 24, DESC_F_INDIRECT);
      });
    },
    error: ringError(
      "descriptor 0: indirect table length 24 is not a non-zero multiple of 16 " +
        `(§${packed ? "2.8.7" : "2.7.5.3"})`,
    ),
  });

  CASES.push({
    name: `${layout}: a device-writable buffer in the transmitq`,
    packed,
    body(fe) {
      bringUp(fe, packed, (r) => txOne(r, fe.addr(BUF_AT), FRAME, DESC_F_WRITE));
    },
    error: pathError(
      "transmitq",
      "chain 0: segment 0 is device-writable in a transmit queue (§5.1.6.2)",
    ),
  });

  CASES.push({
    name: `${layout}: a receive buffer too small for the echoed frame`,
    packed,
    body(fe) {
      bringUp(fe, packed, (r) => {
        if (r.packed) r.rx.desc(0, fe.addr(BUF_AT + 0x1000), 20, 0, DESC_F_WRITE);
        else {
          r.rx.desc(0, fe.addr(BUF_AT + 0x1000), 20, DESC_F_WRITE, 0);
          r.rx.makeAvailable(0);
        }
        txOne(r, fe.addr(BUF_AT), FRAME);
      });
    },
    error: pathError(
      "receiveq",
      "receive buffer 0 holds 20 bytes, frame needs 76 " +
        "(§5.1.6.3.1: buffers must fit a full frame without MRG_RXBUF)",
    ),
  });
}

CASES.push({
  name: "split: a looping chain (0 -> 1 -> 0)",
  packed: false,
  body(fe) {
    bringUp(fe, false, (r) => {
      const tx = r.tx as SplitRingWriter;
      tx.desc(0, fe.addr(BUF_AT), 12, DESC_F_NEXT, 1);
      tx.desc(1, fe.addr(BUF_AT + 0x100), 64, DESC_F_NEXT, 0);
      tx.makeAvailable(0);
    });
  },
  error: ringError("chain at head 0 is longer than the queue size 256 (a loop?) (§2.7.5.2)"),
});

CASES.push({
  name: "split: avail idx more than the queue size ahead",
  packed: false,
  body(fe) {
    bringUp(fe, false, (r) => {
      const tx = r.tx as SplitRingWriter;
      tx.desc(0, fe.addr(BUF_AT), FRAME, 0, 0);
      tx.setAvailIdx(SIZE + 44);
    });
  },
  error: ringError("avail idx 300 is 300 entries ahead of 0, more than the queue size 256"),
});

CASES.push({
  name: "split: an avail ring entry naming a head beyond the table",
  packed: false,
  body(fe) {
    bringUp(fe, false, (r) => (r.tx as SplitRingWriter).makeAvailable(SIZE + 44));
  },
  error: ringError("avail ring entry 0: head 300 is out of range (queue size 256)"),
});

CASES.push({
  name: "split: a next index beyond the table",
  packed: false,
  body(fe) {
    bringUp(fe, false, (r) => {
      const tx = r.tx as SplitRingWriter;
      tx.desc(0, fe.addr(BUF_AT), FRAME, DESC_F_NEXT, 4000);
      tx.makeAvailable(0);
    });
  },
  error: ringError("descriptor 0: next 4000 is out of range (queue size 256)"),
});

CASES.push({
  name: "packed: a chain longer than the queue",
  packed: true,
  body(fe) {
    bringUp(fe, true, (r) => {
      const tx = r.tx as PackedRingWriter;
      // Every slot says NEXT; written last to first so slot 0's flags go last (§2.8.21.2).
      for (let s = SIZE - 1; s >= 0; s--) tx.desc(s, fe.addr(BUF_AT + 16 * s), 16, 0, DESC_F_NEXT);
    });
  },
  error: ringError("chain at descriptor 0 is longer than the queue size 256 (§2.8.6)"),
});

CASES.push({
  name: "packed: an indirect table longer than the queue",
  packed: true,
  body(fe) {
    bringUp(fe, true, (r) => {
      const entries = Array.from({ length: SIZE + 1 }, () => ({
        addr: fe.addr(BUF_AT + 0x8000),
        len: 16,
        flags: 0,
      }));
      indirectTable(fe, BUF_AT, entries, true);
      txOne(r, fe.addr(BUF_AT), 16 * (SIZE + 1), DESC_F_INDIRECT);
    });
  },
  error: ringError(
    "descriptor 0: chain with an indirect table of 257 descriptors is longer than the queue " +
      "size 256",
  ),
});

CASES.push({
  name: "packed: a buffer id beyond the queue size",
  packed: true,
  body(fe) {
    bringUp(fe, true, (r) => (r.tx as PackedRingWriter).desc(0, fe.addr(BUF_AT), FRAME, 300, 0));
  },
  error: ringError("chain at descriptor 0: buffer id 300 is out of range (queue size 256)"),
});

CASES.push({
  name: "packed: a buffer id already in flight",
  packed: true,
  body(fe) {
    bringUp(fe, true, (r) => {
      const tx = r.tx as PackedRingWriter;
      tx.desc(1, fe.addr(BUF_AT + 0x100), FRAME, 5, 0);
      tx.desc(0, fe.addr(BUF_AT), FRAME, 5, 0);
    });
  },
  error: ringError("chain at descriptor 1: buffer id 5 is already in flight"),
});

CASES.push({
  name: "split: INDIRECT and NEXT on the same descriptor",
  packed: false,
  body(fe) {
    bringUp(fe, false, (r) => {
      indirectTable(fe, BUF_AT, [{ addr: fe.addr(BUF_AT + 0x1000), len: FRAME, flags: 0 }], false);
      txOne(r, fe.addr(BUF_AT), 16, DESC_F_INDIRECT | DESC_F_NEXT);
    });
  },
  error: ringError("descriptor 0: INDIRECT and NEXT are both set (§2.7.5.3.1)"),
});

// --- session lifecycle ----------------------------------------------------------------------------

CASES.push({
  name: "split: the frontend hangs up while its rings run",
  packed: false,
  frames: 4,
  frontendCloses: true,
  body(fe) {
    let tx: SplitRingWriter | null = null;
    bringUp(fe, false, (r) => {
      tx = r.tx as SplitRingWriter;
      splitFrames(fe, tx, 0, 4);
    });
    spinUntil("the device to use 4 frames", () => tx!.usedIdx === 4);
    // The runner closes the socket now: no GET_VRING_BASE, the memory simply goes away.
  },
  error: null,
});

CASES.push({
  name: "split: a new memory table while the rings run (the device follows it)",
  packed: false,
  frames: 8,
  frontendCloses: true,
  body(fe) {
    let tx: SplitRingWriter | null = null;
    bringUp(fe, false, (r) => {
      tx = r.tx as SplitRingWriter;
      splitFrames(fe, tx, 0, 4);
    });
    spinUntil("the device to use 4 frames", () => tx!.usedIdx === 4);
    fe.setMemTable(); // same memfd, mapped again; the rings keep their positions
    splitFrames(fe, tx!, 4, 4);
    spinUntil("the device to use 4 more frames", () => tx!.usedIdx === 8);
  },
  error: null,
});

CASES.push({
  name: "packed: a new memory table that no longer holds the running rings",
  packed: true,
  frames: 4,
  body(fe) {
    let tx: PackedRingWriter | null = null;
    bringUp(fe, true, (r) => {
      tx = r.tx as PackedRingWriter;
      for (let s = 3; s >= 0; s--) tx.desc(s, fe.addr(BUF_AT + 0x100 * s), FRAME, s, 0);
    });
    spinUntil("the device to use 4 frames", () => tx!.used(3));
    const moved = BigInt(fe.base + 0x1000_0000);
    assert.throws(
      () =>
        fe.setMemTable([{
          guestPhysAddr: moved,
          memorySize: BigInt(fe.size),
          userspaceAddr: moved,
          mmapOffset: 0n,
        }]),
      /refused request 5 \(ack 1\)/,
    );
  },
  error: protocolError(
    "SET_MEM_TABLE",
    "vring 0: descriptor ring at 0x100000000 (4096 bytes) is outside the memory table",
  ),
});

CASES.push({
  name: "split: an indirect chain longer than the queue",
  packed: false,
  body(fe) {
    bringUp(fe, false, (r) => {
      const n = SIZE + 44;
      const entries = Array.from({ length: n }, (_, k) => ({
        addr: fe.addr(BUF_AT + 0x8000),
        len: 16,
        flags: k < n - 1 ? DESC_F_NEXT : 0,
        next: k + 1,
      }));
      indirectTable(fe, BUF_AT, entries, false);
      txOne(r, fe.addr(BUF_AT), 16 * n, DESC_F_INDIRECT);
    });
  },
  error: ringError(
    "indirect table of descriptor 0: chain is longer than the table (300) or the queue size " +
      "(256) (a loop?)",
  ),
});

// --- the runner ---------------------------------------------------------------------------------

/**
 * A well-behaved driver on the same device: `HEALTHY_FRAMES` frames with distinct payloads go
 * out and come back byte-identical through the echo.
 */
function healthyDriver(path: string, packed: boolean): void {
  using port = VirtioNet.open({ path, packed, queueSize: SIZE, hugepages: false, timeoutMs: 3000 });
  const { pool } = port;
  const bufs = new Uint32Array(HEALTHY_FRAMES), lens = new Uint32Array(HEALTHY_FRAMES);
  const n = pool.alloc(bufs, 0, HEALTHY_FRAMES);
  assert.equal(n, HEALTHY_FRAMES);
  const sent: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const len = 60 + i;
    const at = pool.dataOffset(bufs[i]);
    for (let k = 0; k < len; k++) pool.bytes[at + k] = (i * 7 + k) & 0xff;
    pool.bytes[at] = i; // first byte: the frame's number
    lens[i] = len;
    sent.push(pool.bytes.slice(at, at + len));
  }
  assert.equal(port.txBurst(bufs, lens, n), n);
  const got = new Array<Uint8Array | null>(n).fill(null);
  let received = 0;
  const deadline = performance.now() + 5000;
  while (received < n) {
    const k = port.rxBurst(bufs, lens, n);
    for (let j = 0; j < k; j++) {
      const at = pool.dataOffset(bufs[j]);
      const frame = pool.bytes.slice(at, at + lens[j]);
      got[frame[0]] = frame;
    }
    pool.free(bufs, 0, k);
    received += k;
    if (performance.now() > deadline) {
      throw new Error(`healthy driver: ${received} of ${n} frames came back within 5 s`);
    }
  }
  for (let i = 0; i < n; i++) assert.deepEqual(got[i], sent[i], `frame ${i} echoed intact`);
  assert.equal(port.txDrain(2000), 0, "the device returned every transmit buffer");
}

/**
 * The first Worker of a process leaves a few runtime fds open for good (an eventfd, an epoll fd,
 * a socket pair): start and stop one device before any fd is counted.
 */
let warmedUp: Promise<void> | null = null;
function warmUp(): Promise<void> {
  warmedUp ??= (async () => {
    const d = await DeviceThread.start();
    await d.stop();
    // A terminated worker's runtime closes its own fds a little later: wait until none change.
    let last = openFds();
    for (let quiet = 0; quiet < 20;) {
      await new Promise((r) => setTimeout(r, 5));
      const n = openFds();
      quiet = n === last ? quiet + 1 : 0;
      last = n;
    }
  })();
  return warmedUp;
}

for (const workers of [false, true]) {
  for (const c of CASES) {
    const on = workers ? " (a Worker per pair)" : "";
    Deno.test(`device vs hostile frontend${on}: ${c.name}`, async () => {
      await warmUp();
      const before = openFds();
      const device = await DeviceThread.start({ mode: "echo", workers });
      try {
        const listening = openFds();
        {
          using fe = HostileFrontend.connect(device.path);
          c.body(fe);
          if (!c.frontendCloses) fe.waitHangUp(); // the device ended the session
        }
        assert.equal(await settleFds(listening), listening, "the session's fds were all closed");
        const hostile = device.stats;
        assert.equal(
          hostile.fromDriverPackets,
          c.frames ?? 0,
          "frames counted from the hostile session",
        );

        healthyDriver(device.path, c.packed);
        assert.equal(await settleFds(listening), listening, "the healthy session's fds closed");

        const result = await device.stop();
        const expected = c.error === null ? 0 : 1;
        assert.equal(
          result.errors.length,
          expected,
          `${expected} session-ending error(s): ${result.errors.join("; ")}`,
        );
        if (c.error !== null) assert.match(result.errors[0], c.error);
        const { stats } = result;
        assert.equal(stats.fromDriverPackets - hostile.fromDriverPackets, HEALTHY_FRAMES);
        assert.equal(stats.toDriverPackets - hostile.toDriverPackets, HEALTHY_FRAMES);
        assert.equal(
          stats.toDriverDropped - hostile.toDriverDropped,
          0,
          "no echo dropped for the healthy driver",
        );
      } finally {
        await device.stop();
      }
      assert.equal(await settleFds(before), before, "no fd left open");
    });
  }
}
