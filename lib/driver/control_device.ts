/**
 * The device side of the control virtqueue, emulated in the driver's process as DPDK's
 * virtio-user does (`virtio_user_handle_cq`): vhost-user and vhost-net backends have no control
 * queue (VIRTIO_NET_F_CTRL_VQ is never sent to them), so the commands the driver posts are
 * answered here, over the transport, when the driver notifies the queue.
 *
 * ```
 *   ControlQueue.send ─notify─► ControlDevice.serve: pop chain ─► readCtrlCommand ─► handle(cmd)
 *                                   ack byte ◄── OK / ERR ◄────────┘   (VQ_PAIRS_SET: rings
 *                                   used entry, published                enabled over the transport)
 * ```
 *
 * @module
 */

import { CtrlCommand, NET_ERR, readCtrlCommand } from "../virtio/net_ctrl.ts";
import { type AddressTranslator, DescriptorChain, type DeviceQueue } from "../virtio/virtqueue.ts";

/**
 * Carries out one well-formed command and returns the ack (VIRTIO_NET_OK or VIRTIO_NET_ERR);
 * on ERR it may leave the reason in {@linkcode ControlDevice.reason}.
 */
export type ControlHandler = (command: CtrlCommand, device: ControlDevice) => number;

/**
 * Answers every command waiting in a control queue.
 *
 * @example
 * ```ts ignore
 * import { ControlDevice } from "./control_device.ts";
 * import { NET_OK } from "../virtio/net_ctrl.ts";
 * const device = new ControlDevice(queue, memory, () => NET_OK);
 * device.serve();
 * ```
 */
export class ControlDevice {
  /** Why the last command was answered VIRTIO_NET_ERR ("" after an OK). */
  reason = "";
  readonly #queue: DeviceQueue;
  readonly #memory: AddressTranslator;
  readonly #handle: ControlHandler;
  readonly #chain: DescriptorChain;
  readonly #command = new CtrlCommand();

  /**
   * Serves `queue` (its descriptors translated by `memory`) with `handle`.
   *
   * @example
   * ```ts ignore
   * const device = new ControlDevice(deviceQueueAt(memory, at, true, 8, "ctrl"), local, handler);
   * ```
   */
  constructor(queue: DeviceQueue, memory: AddressTranslator, handle: ControlHandler) {
    this.#queue = queue;
    this.#memory = memory;
    this.#handle = handle;
    this.#chain = new DescriptorChain(queue.size);
  }

  /**
   * Takes every available command, answers it (a malformed one VIRTIO_NET_ERR, §5.1.6.5) and
   * publishes the used entries; returns how many. Throws `VirtqueueError` when the ring itself
   * is broken.
   *
   * @example
   * ```ts ignore
   * const answered = device.serve();
   * ```
   */
  serve(): number {
    const queue = this.#queue, chain = this.#chain, cmd = this.#command;
    let n = 0;
    while (queue.pop(chain)) {
      const rule = readCtrlCommand(chain, this.#memory, cmd);
      let written = 0;
      if (cmd.ackRegion >= 0) {
        this.reason = "";
        let ack = NET_ERR;
        if (rule !== null) this.reason = `malformed command: ${rule}`;
        else ack = this.#handle(cmd, this);
        this.#memory.bytes(cmd.ackRegion)[cmd.ackOffset] = ack;
        written = 1;
      }
      // The ack byte is written before publishUsed's release store makes the entry visible.
      queue.pushUsed(chain.id, written);
      n++;
    }
    if (n > 0) queue.publishUsed();
    return n;
  }
}
