/**
 * Test harness that runs DPDK's `dpdk-testpmd` as a peer: a vhost-user backend (`net_vhost`) or a
 * virtio-user frontend (`net_virtio_user`) driven in interactive mode (`-i`) over a kept-open
 * stdin, so tests choose when forwarding starts and stops and read exact packet counts.
 *
 * ```
 *   test ──stdin: "<command>\n" + "vdeno-sync\n"──► dpdk-testpmd ◄──vhost-user──► peer
 *        ◄──stdout+stderr, one pipe: output, then "Command not found\n" (the end marker)──
 * ```
 *
 * A command's reply ends where testpmd answers the unknown command sent right after it. The
 * prompt cannot serve as the end marker: DPDK's cmdline writes `testpmd> ` one byte per write(2)
 * while the vhost library logs from its own thread into the same stdout, so a log line can land
 * inside the prompt (`t` + `VHOST_CONFIG: ...` + `estpmd> `). "Command not found\n" is written by
 * one vdprintf, a single write of less than PIPE_BUF bytes, which a pipe never splits; commands are
 * serialized, so the first marker after a command's input is its own. stdout runs through
 * `stdbuf -oL`, so every printf line of the reply is flushed before the cmdline reads the marker
 * command.
 * By default memory is hugepage-backed but `--in-memory` (memfd, no files in hugetlbfs), so even
 * a killed testpmd leaves nothing behind; stale `<prefix>map_*` files and the runtime directory of
 * the instance's `--file-prefix` are removed after exit anyway.
 *
 * @module
 */

import { testpmdPath } from "./peers.ts";

/** testpmd forwarding engines used by the tests. */
export type ForwardMode = "rxonly" | "txonly" | "io" | "macswap" | "csum";

/** How a {@linkcode Testpmd} instance is launched. */
export interface TestpmdOptions {
  /** The `--vdev` argument, e.g. `net_vhost0,iface=SOCK,queues=1`. */
  vdev: string;
  /** Forwarding engine (default `io`). */
  forwardMode?: ForwardMode;
  /** CPU that both the main and the forwarding lcore are pinned to (default 1). */
  cpu?: number;
  /** Full `--lcores` value; overrides {@linkcode TestpmdOptions.cpu}. */
  lcores?: string;
  /** EAL memory in MB (`-m`, default 256). */
  memMb?: number;
  /** Use malloc'd memory instead of hugepages (`--no-huge`); default env `TESTPMD_NO_HUGE=1`. */
  noHuge?: boolean;
  /**
   * Hugepages without files (`--in-memory`); default true unless `noHuge` (EAL refuses the two
   * together).
   */
  inMemory?: boolean;
  /** `--file-prefix`; default unique per instance, starting with `vdeno-`. */
  fileprefix?: string;
  /** Frame length(s) for txonly (`--txpkts`), e.g. 64 or "64,64". */
  txpkts?: number | string;
  /** Packets per burst (`--burst`). */
  burst?: number;
  /** Number of RX queues (`--rxq`). */
  rxq?: number;
  /** Number of TX queues (`--txq`). */
  txq?: number;
  /** RX ring size (`--rxd`). */
  rxd?: number;
  /** TX ring size (`--txd`). */
  txd?: number;
  /** Mbuf pool size (`--total-num-mbufs`, default 16384: keeps memory small). */
  totalNumMbufs?: number;
  /** Vary the UDP source port per packet in txonly (`--txonly-multi-flow`). */
  txonlyMultiFlow?: boolean;
  /** More EAL arguments (before `--`). */
  extraEalArgs?: string[];
  /** More testpmd arguments (after `--`). */
  extraArgs?: string[];
  /** Socket files to remove after exit, besides the one this instance listens on. */
  removeFiles?: string[];
  /** Echo all output to stderr (default env `TESTPMD_VERBOSE=1`). */
  verbose?: boolean;
  /** Milliseconds to reach the first prompt (default 30000). */
  startTimeoutMs?: number;
  /** Milliseconds per interactive command (default 10000). */
  commandTimeoutMs?: number;
  /** testpmd binary (default {@linkcode testpmdPath}). */
  binary?: string;
}

/** Port counters from `show port stats N` (cumulative since the port started). */
export interface PortStats {
  /** Packets received. */
  rxPackets: number;
  /** Packets the port dropped for lack of descriptors. */
  rxMissed: number;
  /** Bytes received. */
  rxBytes: number;
  /** Receive errors. */
  rxErrors: number;
  /** Receive failures for lack of mbufs. */
  rxNombuf: number;
  /** Packets sent. */
  txPackets: number;
  /** Transmit errors. */
  txErrors: number;
  /** Bytes sent. */
  txBytes: number;
}

/** Forwarding counters since `start`, from the "Accumulated forward statistics" of `stop`. */
export interface ForwardStats {
  /** Packets the engine received. */
  rxPackets: number;
  /** Received packets the engine dropped. */
  rxDropped: number;
  /** rxPackets + rxDropped. */
  rxTotal: number;
  /** Packets the port accepted for transmission. */
  txPackets: number;
  /** Packets the port refused (ring full or link down). */
  txDropped: number;
  /** txPackets + txDropped. */
  txTotal: number;
  /** `csum` engine: received frames whose ol_flags said IP checksum bad (summed over ports). */
  badIpCsum: number;
  /** `csum` engine: received frames whose ol_flags said L4 checksum bad (summed over ports). */
  badL4Csum: number;
}

/** A command testpmd does not know; its answer, {@linkcode SYNC_REPLY}, ends each reply. */
const SYNC_COMMAND = "vdeno-sync";
/** DPDK cmdline's answer to an unknown command: one write(2), so never split by other output. */
const SYNC_REPLY = /Command not found\r?\n/;
const OUTPUT_CAP = 4 << 20; // characters kept; older output is dropped
const EXIT_TIMEOUT_MS = 5000;
let instances = 0;

/**
 * A running `dpdk-testpmd` in interactive mode. Always end it with {@linkcode Testpmd.stop} or
 * `await using`, which never hangs (SIGINT, then SIGKILL) and removes its files.
 *
 * @example
 * ```ts
 * const dir = await Deno.makeTempDir();
 * await using vhost = await Testpmd.start({
 *   vdev: `net_vhost0,iface=${dir}/vhost.sock,queues=1`,
 *   forwardMode: "rxonly",
 *   cpu: 0,
 * });
 * await vhost.startForwarding();
 * // ... connect a virtio-user driver to vhost.sock and send ...
 * const counts = await vhost.stop();
 * console.log(counts.rxPackets);
 * ```
 */
export class Testpmd {
  /** The `--file-prefix` of this instance. */
  readonly fileprefix: string;
  /** Arguments testpmd was started with (for error messages). */
  readonly args: readonly string[];

  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #verbose: boolean;
  #commandTimeoutMs: number;
  #cleanupFiles: string[];
  #text = ""; // output kept, starting at absolute offset #base
  #base = 0;
  #waiters = new Set<Waiter>();
  #exit: Deno.CommandStatus | null = null;
  #exited: Promise<Deno.CommandStatus>;
  #readers: Promise<void>;
  #queue: Promise<unknown> = Promise.resolve();
  #forwarding = false;
  #last: ForwardStats = zeroForwardStats();
  #stopped: Promise<ForwardStats> | null = null;

  private constructor(
    child: Deno.ChildProcess,
    args: string[],
    fileprefix: string,
    cleanupFiles: string[],
    verbose: boolean,
    commandTimeoutMs: number,
  ) {
    this.#child = child;
    this.args = args;
    this.fileprefix = fileprefix;
    this.#cleanupFiles = cleanupFiles;
    this.#verbose = verbose;
    this.#commandTimeoutMs = commandTimeoutMs;
    this.#writer = child.stdin.getWriter();
    this.#readers = this.#pump(child.stdout);
    this.#exited = child.status.then(async (status) => {
      await this.#readers; // all output is in before waiters learn of the exit
      this.#exit = status;
      for (const w of this.#waiters) w.check();
      return status;
    });
  }

  /**
   * Launches testpmd and waits for its first interactive prompt (ports configured, not forwarding).
   * Throws with the last 40 output lines when it exits or times out first.
   *
   * @example
   * ```ts
   * const tp = await Testpmd.start({ vdev: "net_vhost0,iface=/run/x.sock,queues=1" });
   * await tp.stop();
   * ```
   */
  static async start(opts: TestpmdOptions): Promise<Testpmd> {
    const binary = opts.binary ?? testpmdPath();
    if (binary === null) {
      throw new Error("dpdk-testpmd not found on PATH; install: sudo apt-get install dpdk-dev");
    }
    const fileprefix = opts.fileprefix ?? `vdeno-${Deno.pid}-${instances++}-`;
    const noHuge = opts.noHuge ?? envFlag("TESTPMD_NO_HUGE");
    const cpu = opts.cpu ?? 1;
    const eal = [
      "--lcores",
      opts.lcores ?? `0@${cpu},1@${cpu}`,
      "--no-pci",
      "-m",
      String(opts.memMb ?? 256),
      "--file-prefix",
      fileprefix,
    ];
    if (noHuge) eal.push("--no-huge");
    if (noHuge && opts.inMemory) {
      throw new Error("testpmd options noHuge and inMemory exclude each other (EAL refuses both)");
    }
    if (opts.inMemory ?? !noHuge) eal.push("--in-memory");
    // The virtio-user PMD shares at most 8 memory regions with the backend: one file per list.
    if (opts.vdev.startsWith("net_virtio_user") && !noHuge) eal.push("--single-file-segments");
    eal.push("--vdev", opts.vdev, ...(opts.extraEalArgs ?? []));

    const app = ["-i", `--forward-mode=${opts.forwardMode ?? "io"}`];
    app.push(`--total-num-mbufs=${opts.totalNumMbufs ?? 16384}`);
    if (opts.txpkts !== undefined) app.push(`--txpkts=${opts.txpkts}`);
    if (opts.burst !== undefined) app.push(`--burst=${opts.burst}`);
    if (opts.rxq !== undefined) app.push(`--rxq=${opts.rxq}`);
    if (opts.txq !== undefined) app.push(`--txq=${opts.txq}`);
    if (opts.rxd !== undefined) app.push(`--rxd=${opts.rxd}`);
    if (opts.txd !== undefined) app.push(`--txd=${opts.txd}`);
    if (opts.txonlyMultiFlow) app.push("--txonly-multi-flow");
    app.push(...(opts.extraArgs ?? []));

    const args = [...eal, "--", ...app];
    const cleanup = [...(opts.removeFiles ?? [])];
    const listening = listeningSocket(opts.vdev);
    if (listening !== null) cleanup.push(listening);

    // stdbuf makes testpmd's stdout line buffered, so responses are not stuck in a pipe buffer.
    // stderr joins stdout in one pipe, so error text stays next to the command that caused it.
    // Replies are delimited by the sync marker, not by position in the stream (module doc).
    // `exec` keeps testpmd's pid the child's, so signals reach it.
    const stdbuf = findOnPath("stdbuf");
    const command = stdbuf !== null ? [stdbuf, "-oL", binary, ...args] : [binary, ...args];
    const child = new Deno.Command("sh", {
      args: ["-c", 'exec "$@" 2>&1', "testpmd", ...command],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const tp = new Testpmd(
      child,
      args,
      fileprefix,
      cleanup,
      opts.verbose ?? envFlag("TESTPMD_VERBOSE"),
      opts.commandTimeoutMs ?? 10000,
    );
    try {
      await tp.#sync(0, opts.startTimeoutMs ?? 30000);
    } catch (e) {
      await tp.#kill();
      await tp.#removeFiles();
      throw e;
    }
    return tp;
  }

  /** All output kept so far (stdout and stderr interleaved as they arrived). */
  get output(): string {
    return this.#text;
  }

  /** Whether the process has exited. */
  get exited(): boolean {
    return this.#exit !== null;
  }

  /**
   * The last `n` lines of output, for error messages.
   *
   * @example
   * ```ts
   * console.error(tp.tail(20));
   * ```
   */
  tail(n = 40): string {
    const lines = this.#text.split("\n");
    return lines.slice(Math.max(0, lines.length - n)).join("\n");
  }

  /**
   * Waits until the output after absolute offset `from` (default: everything kept) matches
   * `pattern`; resolves with the match (`index` relative to the kept text) and the absolute end
   * offset. Throws on timeout or process exit, quoting the last 40 lines.
   *
   * @example
   * ```ts
   * await tp.waitForOutput(/virtio is now ready for processing/, 10000);
   * ```
   */
  waitForOutput(
    pattern: RegExp,
    timeoutMs: number,
    from = this.#base,
  ): Promise<{ match: RegExpExecArray; end: number }> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        check: () => {
          const start = Math.max(0, from - this.#base);
          const m = new RegExp(pattern.source, pattern.flags.replace("g", "")).exec(
            this.#text.slice(start),
          );
          if (m !== null) {
            m.index += start;
            done();
            resolve({ match: m, end: this.#base + m.index + m[0].length });
          } else if (this.#exit !== null) {
            done();
            reject(
              this.#error(`exited (code ${this.#exit.code}) before output matched ${pattern}`),
            );
          }
        },
      };
      const timer = setTimeout(() => {
        done();
        reject(this.#error(`no output matching ${pattern} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
      };
      this.#waiters.add(waiter);
      waiter.check();
    });
  }

  /**
   * Waits until `path` exists as a Unix socket (e.g. the vhost PMD's listening socket).
   *
   * @example
   * ```ts
   * await tp.waitForSocket(`${dir}/vhost.sock`);
   * ```
   */
  async waitForSocket(path: string, timeoutMs = 10000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        if ((await Deno.lstat(path)).isSocket) return;
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      if (this.#exit !== null) throw this.#error(`exited before socket ${path} appeared`);
      if (Date.now() > deadline) throw this.#error(`socket ${path} not created in ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  /**
   * Sends one interactive command and resolves with its output (up to the next prompt).
   * Commands are serialized.
   *
   * @example
   * ```ts
   * const info = await tp.command("show port info 0");
   * ```
   */
  command(line: string, timeoutMs = this.#commandTimeoutMs): Promise<string> {
    const run = async () => {
      if (this.#exit !== null) throw this.#error(`exited; cannot run "${line}"`);
      const from = this.#base + this.#text.length;
      await this.#writer.write(new TextEncoder().encode(line + "\n"));
      const end = await this.#sync(from, timeoutMs);
      return this.#text.slice(Math.max(0, from - this.#base), end - this.#base);
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => {});
    return p;
  }

  /**
   * Sends the end-marker command and waits for its answer after absolute offset `from`; returns
   * the absolute offset where the answer ends (see the module doc for why this cannot be split).
   */
  async #sync(from: number, timeoutMs: number): Promise<number> {
    await this.#writer.write(new TextEncoder().encode(`${SYNC_COMMAND}\n`));
    const { end } = await this.waitForOutput(SYNC_REPLY, timeoutMs, from);
    return end;
  }

  /**
   * Starts forwarding (`start`). testpmd first discards whatever waits in its RX queues, so for
   * exact counts start the receiving side before the sending side.
   *
   * @example
   * ```ts
   * await tp.startForwarding();
   * ```
   */
  async startForwarding(): Promise<void> {
    const out = await this.command("start");
    if (!/packet forwarding - ports=|already started/.test(out)) {
      throw this.#error(`"start" did not start forwarding: ${out.trim()}`);
    }
    this.#forwarding = true;
  }

  /**
   * Stops forwarding (`stop`) and returns the exact counts since `start`.
   *
   * @example
   * ```ts
   * const { txPackets } = await tp.stopForwarding();
   * ```
   */
  async stopForwarding(): Promise<ForwardStats> {
    const out = await this.command("stop");
    if (/Packet forwarding not started/.test(out)) {
      this.#forwarding = false;
      return this.#last;
    }
    const block = /Accumulated forward statistics[^\n]*\n([\s\S]*?)\+{20,}/.exec(out);
    if (block === null) throw this.#error(`"stop" printed no accumulated statistics`);
    const f = fields(block[1]);
    this.#last = {
      rxPackets: f("RX-packets"),
      rxDropped: f("RX-dropped"),
      rxTotal: f("RX-total"),
      txPackets: f("TX-packets"),
      txDropped: f("TX-dropped"),
      txTotal: f("TX-total"),
      badIpCsum: sumAll(out, /Bad-ipcsum:\s*(\d+)/g),
      badL4Csum: sumAll(out, /Bad-l4csum:\s*(\d+)/g),
    };
    this.#forwarding = false;
    return this.#last;
  }

  /**
   * Port counters (`show port stats N`), cumulative since the port started.
   *
   * @example
   * ```ts
   * const { rxPackets, rxBytes } = await tp.stats();
   * ```
   */
  async stats(port = 0): Promise<PortStats> {
    const out = await this.command(`show port stats ${port}`);
    const block = /NIC statistics for port \d+[^\n]*\n([\s\S]*?)Throughput/.exec(out);
    if (block === null) throw this.#error(`no statistics for port ${port}`);
    const f = fields(block[1]);
    return {
      rxPackets: f("RX-packets"),
      rxMissed: f("RX-missed"),
      rxBytes: f("RX-bytes"),
      rxErrors: f("RX-errors"),
      rxNombuf: f("RX-nombuf"),
      txPackets: f("TX-packets"),
      txErrors: f("TX-errors"),
      txBytes: f("TX-bytes"),
    };
  }

  /**
   * Whether port `port` reports link up (`show port info`): for the vhost PMD, a driver has
   * connected and set DRIVER_OK.
   *
   * @example
   * ```ts
   * if (await tp.linkUp()) console.log("connected");
   * ```
   */
  async linkUp(port = 0): Promise<boolean> {
    const out = await this.command(`show port info ${port}`);
    return /Link status: up/.test(out);
  }

  /**
   * Polls {@linkcode Testpmd.linkUp} until the link is up.
   *
   * @example
   * ```ts
   * await tp.waitForLinkUp(10000);
   * ```
   */
  async waitForLinkUp(timeoutMs = 10000, port = 0): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await this.linkUp(port))) {
      if (Date.now() > deadline) throw this.#error(`port ${port} link not up in ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  /**
   * Stops forwarding if running, quits, waits for exit (SIGINT then SIGKILL after timeouts),
   * removes the instance's files, and returns the final forwarding counts (zeros if forwarding
   * never started). Idempotent. Throws, after cleaning up, if testpmd had died unexpectedly.
   *
   * @example
   * ```ts
   * const final = await tp.stop();
   * console.log(final.rxPackets, final.txPackets);
   * ```
   */
  stop(): Promise<ForwardStats> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  /**
   * Kills testpmd with SIGKILL (no goodbye to its peers: their sockets just hang up), waits for
   * the exit and removes its files. Later {@linkcode Testpmd.stop} calls resolve to the last
   * counts read, without throwing.
   *
   * @example
   * ```ts ignore
   * await tp.killHard(); // the peer sees POLLHUP on its vhost-user socket
   * ```
   */
  async killHard(): Promise<void> {
    this.#stopped ??= (async () => {
      if (this.#exit === null) {
        try {
          this.#child.kill("SIGKILL");
        } catch { /* already gone */ }
      }
      await this.#writer.close().catch(() => {});
      await this.#exited;
      await this.#removeFiles();
      return this.#last;
    })();
    await this.#stopped;
  }

  /** Same as {@linkcode Testpmd.stop}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #stop(): Promise<ForwardStats> {
    let failure: Error | null = null;
    try {
      if (this.#exit !== null) {
        throw this.#error(`exited unexpectedly (code ${this.#exit.code})`);
      }
      if (this.#forwarding) await this.stopForwarding();
      await this.#writer.write(new TextEncoder().encode("quit\n")).catch(() => {});
      if (!(await this.#waitExit(EXIT_TIMEOUT_MS))) {
        failure = this.#error(`did not exit ${EXIT_TIMEOUT_MS} ms after "quit"`);
      }
    } catch (e) {
      failure = e instanceof Error ? e : new Error(String(e));
    } finally {
      await this.#kill();
      await this.#removeFiles();
    }
    if (failure !== null) throw failure;
    return this.#last;
  }

  /** Ends the process for sure: SIGINT, then SIGKILL; closes stdin and drains output. */
  async #kill(): Promise<void> {
    if (this.#exit === null) {
      try {
        this.#child.kill("SIGINT");
      } catch { /* already gone */ }
      if (!(await this.#waitExit(EXIT_TIMEOUT_MS))) {
        try {
          this.#child.kill("SIGKILL");
        } catch { /* already gone */ }
      }
    }
    await this.#writer.close().catch(() => {});
    await this.#exited;
  }

  async #waitExit(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((r) => timer = setTimeout(() => r(false), ms));
    const ok = await Promise.race([this.#exited.then(() => true), timeout]);
    clearTimeout(timer);
    return ok;
  }

  async #removeFiles(): Promise<void> {
    const paths = [...this.#cleanupFiles, runtimeDir(this.fileprefix)];
    for (const dir of hugetlbfsMounts()) {
      try {
        for await (const e of Deno.readDir(dir)) {
          if (e.name.startsWith(`${this.fileprefix}map_`)) paths.push(`${dir}/${e.name}`);
        }
      } catch { /* unreadable mount: nothing of ours there */ }
    }
    for (const p of paths) {
      await Deno.remove(p, { recursive: true }).catch(() => {});
    }
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      const s = decoder.decode(chunk, { stream: true });
      if (this.#verbose) Deno.stderr.writeSync(chunk);
      this.#text += s;
      if (this.#text.length > OUTPUT_CAP) {
        const drop = this.#text.length - OUTPUT_CAP / 2;
        this.#text = this.#text.slice(drop);
        this.#base += drop;
      }
      for (const w of this.#waiters) w.check();
    }
  }

  #error(what: string): Error {
    return new Error(
      `dpdk-testpmd (${this.fileprefix}) ${what}\n` +
        `  args: ${this.args.join(" ")}\n  last output lines:\n${this.tail(40)}`,
    );
  }
}

interface Waiter {
  check(): void;
}

/** Reads integer counters named like `RX-packets: 123` from a testpmd statistics block. */
function fields(block: string): (name: string) => number {
  return (name) => {
    const m = new RegExp(`${name}:\\s+(\\d+)`).exec(block);
    if (m === null) throw new Error(`testpmd statistics lack ${name}:\n${block}`);
    return Number(m[1]);
  };
}

function zeroForwardStats(): ForwardStats {
  return {
    rxPackets: 0,
    rxDropped: 0,
    rxTotal: 0,
    txPackets: 0,
    txDropped: 0,
    txTotal: 0,
    badIpCsum: 0,
    badL4Csum: 0,
  };
}

/**
 * The sum of every match's number: the csum engine prints Bad-ipcsum / Bad-l4csum once per
 * port of the "Forward statistics for port N" blocks (0 when absent: another engine).
 */
function sumAll(text: string, re: RegExp): number {
  let sum = 0;
  for (const m of text.matchAll(re)) sum += Number(m[1]);
  return sum;
}

/** The socket path this vdev listens on (vhost PMD without client=1, virtio-user with server=1). */
function listeningSocket(vdev: string): string | null {
  const kv = new Map<string, string>();
  for (const part of vdev.split(",").slice(1)) {
    const eq = part.indexOf("=");
    if (eq > 0) kv.set(part.slice(0, eq), part.slice(eq + 1));
  }
  if (vdev.startsWith("net_vhost") && kv.get("client") !== "1") return kv.get("iface") ?? null;
  if (vdev.startsWith("net_virtio_user") && kv.get("server") === "1") {
    return kv.get("path") ?? null;
  }
  return null;
}

/** DPDK's runtime directory for a file prefix (eal_get_runtime_dir). */
function runtimeDir(prefix: string): string {
  const base = Deno.uid() === 0 ? "/var/run" : (Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp");
  return `${base}/dpdk/${prefix}`;
}

function hugetlbfsMounts(): string[] {
  try {
    return Deno.readTextFileSync("/proc/mounts").split("\n")
      .map((l) => l.split(" "))
      .filter((f) => f[2] === "hugetlbfs")
      .map((f) => f[1]);
  } catch {
    return [];
  }
}

function findOnPath(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir === "") continue;
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return null;
}

function envFlag(name: string): boolean {
  return Deno.env.get(name) === "1";
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * testpmd's per-queue counters of port 0 (`show port xstats 0`), e.g. `rx_q1_packets` (vhost
 * PMD) or `tx_q0_good_packets` (virtio PMD).
 */
export async function xstats(tp: Testpmd): Promise<Map<string, number>> {
  const out = await tp.command("show port xstats 0");
  const m = new Map<string, number>();
  for (const [, name, value] of out.matchAll(/^\s*(\w+):\s+(\d+)\s*$/gm)) m.set(name, +value);
  return m;
}

/** One counter of {@linkcode xstats}; throws naming the ones there are when it is missing. */
export function counter(x: Map<string, number>, name: string): number {
  const v = x.get(name);
  if (v === undefined) throw new Error(`testpmd xstats lack ${name}: ${[...x.keys()].join(" ")}`);
  return v;
}
