/**
 * The control virtqueue (virtio 1.2 §5.1.6.5) over real rings in one process, packed and split:
 * the driver side (ControlQueue) against the emulated device (ControlDevice) and against
 * device sides written here that misbehave: a command never returned (bounded timeout, then the
 * queue refuses at once), an ack byte that is neither OK nor ERR, no ack written, a used id
 * that is not in flight; and the device side against malformed commands.
 *
 * ```
 *   ControlQueue.send ─► ctrl ring (indirect table) ─► ControlDevice / hostile device ─► ack
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  CONTROL_QUEUE_SIZE,
  ControlCommandError,
  ControlQueue,
} from "../lib/driver/control_queue.ts";
import { ControlDevice } from "../lib/driver/control_device.ts";
import { deviceQueueAt } from "../lib/driver/driver_queue.ts";
import { SharedMemory } from "../lib/driver/shared_memory.ts";
import { packedRingLayout } from "../lib/virtio/packed_ring.ts";
import { splitRingLayout } from "../lib/virtio/split_ring.ts";
import {
  type CtrlCommand,
  CtrlCommand as Command,
  NET_ERR,
  NET_OK,
  NetCtrl,
  readCtrlCommand,
} from "../lib/virtio/net_ctrl.ts";
import {
  DescriptorChain,
  type DeviceQueue,
  LocalMemory,
  VirtqueueError,
} from "../lib/virtio/virtqueue.ts";

interface Rig {
  memory: SharedMemory;
  local: LocalMemory;
  device: DeviceQueue;
  cvq: ControlQueue;
}

/** A control queue whose notify runs `onNotify(rig)`. */
function rig(packed: boolean, onNotify: (r: Rig) => void, reason?: () => string): Rig {
  const memory = SharedMemory.create(1 << 16, { hugepages: false });
  const local = new LocalMemory(memory.bytes, memory.addr);
  const r = {} as Rig;
  r.memory = memory;
  r.local = local;
  r.cvq = new ControlQueue({ memory, packed, notify: () => onNotify(r), timeoutMs: 50, reason });
  r.device = deviceQueueAt(memory, r.cvq.ringAt, packed, CONTROL_QUEUE_SIZE, "ctrl", local);
  return r;
}

/** Takes the next command and writes `ack` into it (no ack byte when `ack` is null). */
function answer(r: Rig, ack: number | null): void {
  const chain = new DescriptorChain(CONTROL_QUEUE_SIZE);
  assert.ok(r.device.pop(chain), "a command is available");
  const cmd = new Command();
  assert.equal(readCtrlCommand(chain, r.local, cmd), null);
  if (ack !== null) r.local.bytes(cmd.ackRegion)[cmd.ackOffset] = ack;
  r.device.pushUsed(chain.id, ack === null ? 0 : 1);
  r.device.publishUsed();
}

/** Answers the first command OK, then rewrites the id of its used entry to `id`. */
function answerWithId(r: Rig, packed: boolean, id: number): void {
  answer(r, NET_OK);
  const at = r.cvq.ringAt;
  const where = packed
    ? at + packedRingLayout(CONTROL_QUEUE_SIZE).descOffset + 12 // used descriptor 0: id
    : at + splitRingLayout(CONTROL_QUEUE_SIZE).deviceOffset + 4; // used ring entry 0: id
  new DataView(r.memory.buffer).setUint16(where, id, true);
}

const ON = Uint8Array.of(1);

for (const packed of [true, false]) {
  const rings = packed ? "packed" : "split";

  Deno.test(`control queue ${rings}: commands reach the device intact, OK and ERR come back`, () => {
    const seen: string[] = [];
    const at: { device?: ControlDevice } = {};
    const r = rig(packed, () => at.device!.serve(), () => at.device!.reason);
    at.device = new ControlDevice(r.device, r.local, (cmd: CtrlCommand, d) => {
      seen.push(`${cmd.cls}/${cmd.command}:${[...cmd.data.subarray(0, cmd.dataLength)]}`);
      if (cmd.cls === NetCtrl.MQ) {
        d.reason = "only 1 pair";
        return NET_ERR;
      }
      return NET_OK;
    });
    try {
      // More commands than the ring has descriptors: each slot comes back and is reused.
      for (let i = 0; i < 3 * CONTROL_QUEUE_SIZE; i++) {
        r.cvq.send(NetCtrl.RX, NetCtrl.RX_ALLMULTI, Uint8Array.of(i & 1));
      }
      r.cvq.send(NetCtrl.MAC, NetCtrl.MAC_ADDR_SET, Uint8Array.of(2, 0, 0, 0, 0, 0x42));
      assert.throws(
        () => r.cvq.send(NetCtrl.MQ, NetCtrl.MQ_VQ_PAIRS_SET, Uint8Array.of(2, 0)),
        (e: unknown) =>
          e instanceof ControlCommandError && e.ack === NET_ERR &&
          e.message ===
            "VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: the device answered VIRTIO_NET_ERR: only 1 pair",
      );
      assert.equal(seen.length, 3 * CONTROL_QUEUE_SIZE + 2);
      assert.equal(seen[0], "0/1:0");
      assert.equal(seen[1], "0/1:1");
      assert.equal(seen.at(-2), "1/1:2,0,0,0,0,66");
      assert.equal(seen.at(-1), "4/0:2,0");
      // The queue still works after an ERR.
      r.cvq.send(NetCtrl.RX, NetCtrl.RX_PROMISC, ON);
      assert.equal(seen.at(-1), "0/0:1");
    } finally {
      r.memory.close();
    }
  });

  Deno.test(`control queue ${rings}: a command never returned times out, then the queue refuses`, () => {
    let notified = 0;
    const r = rig(packed, () => notified++);
    try {
      assert.throws(
        () => r.cvq.send(NetCtrl.RX, NetCtrl.RX_PROMISC, ON),
        (e: unknown) =>
          e instanceof ControlCommandError && e.ack === -1 &&
          /VIRTIO_NET_CTRL_RX_PROMISC: the device returned no answer within 50 ms; the control queue is unusable/
            .test(e.message),
      );
      assert.equal(notified, 1, "the device was notified once");
      assert.throws(
        () => r.cvq.send(NetCtrl.RX, NetCtrl.RX_ALLMULTI, ON),
        /VIRTIO_NET_CTRL_RX_ALLMULTI: not sent: VIRTIO_NET_CTRL_RX_PROMISC was never returned by the device; reopen the port$/,
      );
      assert.equal(notified, 1, "a refused command is not posted");
    } finally {
      r.memory.close();
    }
  });

  Deno.test(`control queue ${rings}: an ack byte that is neither OK nor ERR is named`, () => {
    const r = rig(packed, (r) => answer(r, 0x5a));
    try {
      assert.throws(
        () => r.cvq.send(NetCtrl.MAC, NetCtrl.MAC_ADDR_SET, new Uint8Array(6)),
        (e: unknown) =>
          e instanceof ControlCommandError && e.ack === 0x5a &&
          e.message ===
            "VIRTIO_NET_CTRL_MAC_ADDR_SET: ack byte 0x5a is neither VIRTIO_NET_OK (0) nor " +
              "VIRTIO_NET_ERR (1)",
      );
    } finally {
      r.memory.close();
    }
  });

  Deno.test(`control queue ${rings}: a command returned without an ack is an error`, () => {
    const r = rig(packed, (r) => answer(r, null));
    try {
      assert.throws(
        () => r.cvq.send(NetCtrl.RX, NetCtrl.RX_PROMISC, ON),
        /VIRTIO_NET_CTRL_RX_PROMISC: the device returned the command without an ack$/,
      );
    } finally {
      r.memory.close();
    }
  });

  Deno.test(`control queue ${rings}: a used id not in flight breaks the ring, named`, () => {
    const r = rig(packed, (r) => answerWithId(r, packed, 5));
    try {
      assert.throws(
        () => r.cvq.send(NetCtrl.RX, NetCtrl.RX_PROMISC, ON),
        (e: unknown) => e instanceof VirtqueueError && /virtqueue ctrl: .*id 5/.test(e.message),
      );
      assert.throws(
        () => r.cvq.send(NetCtrl.RX, NetCtrl.RX_PROMISC, ON),
        /not sent: the device broke a ring rule on VIRTIO_NET_CTRL_RX_PROMISC/,
      );
    } finally {
      r.memory.close();
    }
  });
}

Deno.test("control device: malformed commands are answered VIRTIO_NET_ERR, naming the rule", () => {
  const mem = new Uint8Array(64);
  const local = new LocalMemory(mem, 0);
  const chain = new DescriptorChain(4);
  const cmd = new Command();
  const set = (segs: [number, number, number][]) => {
    chain.count = segs.length;
    segs.forEach(([offset, len, w], i) => {
      chain.region[i] = 0;
      chain.offset[i] = offset;
      chain.len[i] = len;
      chain.writable[i] = w;
    });
    return readCtrlCommand(chain, local, cmd);
  };
  mem.set([4, 0, 2, 0], 0);
  assert.match(set([[0, 4, 0]])!, /no device-writable byte for the ack/);
  assert.match(set([[0, 1, 0], [8, 1, 1]])!, /1 readable bytes, class and command need 2/);
  assert.match(set([[8, 1, 1], [0, 4, 0]])!, /a device-readable segment follows the ack/);
  // Split anywhere: class in one segment, command and data in another.
  assert.equal(set([[0, 1, 0], [1, 3, 0], [8, 1, 1]]), null);
  assert.deepEqual([cmd.cls, cmd.command, cmd.dataLength, cmd.data[0], cmd.ackOffset], [
    4,
    0,
    2,
    2,
    8,
  ]);
});
