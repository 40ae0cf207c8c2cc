// Real syscalls, no mocks: memfd/mmap, hugepages, eventfd, AF_UNIX fd passing, poll, ioctl.
import assert from "node:assert/strict";
import { openFds } from "./helpers.ts";
import { errnoName } from "../ffi/errno.ts";
import { eventfd, eventfdDrain, eventfdSignal } from "../ffi/eventfd.ts";
import { close, closeQuietly, O_CLOEXEC, O_CREAT, O_RDWR, openFile, unlink } from "../ffi/fd.ts";
import { ioctl } from "../ffi/ioctl.ts";
import { errno, fail, libc, SyscallError } from "../ffi/libc.ts";
import {
  freeHugePages,
  ftruncate,
  hugePageSize,
  type Mapping,
  memfdCreate,
  MFD_CLOEXEC,
  MFD_HUGETLB,
  mmapShared,
  munmap,
} from "../ffi/memory.ts";
import { pollIn } from "../ffi/poll.ts";
import {
  MAX_MSG_FDS,
  recvExact,
  recvMsg,
  sendMsg,
  setNonBlocking,
  unixAccept,
  unixConnect,
  unixListen,
} from "../ffi/unix_socket.ts";

const TCGETS = 0x5401;
const FIONBIO = 0x5421;
const F_GETFD = 1;
const FD_CLOEXEC = 1;

/** Runs `fn` and asserts it leaves the process's fd count unchanged. */
function noFdLeak(fn: () => void): () => void {
  return () => {
    const before = openFds();
    fn();
    assert.equal(openFds(), before, "fds leaked");
  };
}

function meminfo(name: string): number {
  const m = Deno.readTextFileSync("/proc/meminfo").match(new RegExp(`^${name}:\\s+(\\d+)`, "m"));
  return m ? Number(m[1]) : 0;
}

function withTempDir(fn: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "ffi_test_" });
  try {
    fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("errnoName covers the Linux table", () => {
  assert.equal(errnoName(1), "EPERM");
  assert.equal(errnoName(11), "EAGAIN");
  assert.equal(errnoName(12), "ENOMEM");
  assert.equal(errnoName(25), "ENOTTY");
  assert.equal(errnoName(111), "ECONNREFUSED");
  assert.equal(errnoName(133), "EHWPOISON");
  assert.equal(errnoName(41), "errno 41");
  assert.equal(errnoName(0), "errno 0");
  assert.equal(errnoName(134), "errno 134");
});

Deno.test("fail reads errno and builds an actionable message", () => {
  assert.equal(libc.symbols.close(-1), -1);
  assert.equal(errno(), 9);
  let e: unknown;
  try {
    if (libc.symbols.close(-1) < 0) fail("close(-1)", "was it closed twice?");
  } catch (err) {
    e = err;
  }
  assert.ok(e instanceof SyscallError);
  assert.equal(e.message, "close(-1) failed: EBADF (Bad file descriptor); was it closed twice?");
  assert.equal(e.code, "EBADF");
  assert.equal(e.errno, 9);
  assert.equal(e.call, "close(-1)");
  assert.equal(
    new SyscallError("mmap(MAP_HUGETLB)", 12, "reserve hugepages or pass hugepages:false").message,
    "mmap(MAP_HUGETLB) failed: ENOMEM (Cannot allocate memory); " +
      "reserve hugepages or pass hugepages:false",
  );
});

Deno.test(
  "openFile, close, unlink",
  noFdLeak(() => {
    withTempDir((dir) => {
      const path = `${dir}/f`;
      const fd = openFile(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640);
      assert.equal(libc.symbols.fcntl(fd, F_GETFD, 0) & FD_CLOEXEC, FD_CLOEXEC);
      close(fd);
      assert.throws(() => close(fd), /close\(\d+\) failed: EBADF/);
      closeQuietly(fd); // safe in cleanup paths
      closeQuietly(-1);
      assert.equal(Deno.statSync(path).mode! & 0o777, 0o640 & ~Deno.umask());
      unlink(path);
      unlink(path, true);
      assert.throws(() => unlink(path), /unlink\(.*\/f\) failed: ENOENT/);
      assert.throws(
        () => openFile(`${dir}/missing`, O_RDWR, 0, "create it first"),
        (e: unknown) =>
          e instanceof SyscallError && e.code === "ENOENT" &&
          e.message.includes(`${dir}/missing`) && e.message.endsWith("; create it first"),
      );
    });
  }),
);

Deno.test(
  "memfd: a write through one mapping is read through a second mapping",
  noFdLeak(() => {
    const size = 64 * 1024;
    const fd = memfdCreate("ffi-test", MFD_CLOEXEC);
    let a: Mapping | undefined, b: Mapping | undefined;
    try {
      ftruncate(fd, size);
      a = mmapShared(fd, size);
      b = mmapShared(fd, size);
      assert.notEqual(a.addr, b.addr);
      assert.equal(a.addr % 4096, 0);
      assert.equal(a.addr, Number(Deno.UnsafePointer.value(a.ptr)));
      assert.equal(a.buffer.byteLength, size);
      const wa = new Uint32Array(a.buffer);
      const rb = new Uint32Array(b.buffer);
      for (let i = 0; i < wa.length; i++) wa[i] = i * 2654435761;
      for (let i = 0; i < rb.length; i++) assert.equal(rb[i], (i * 2654435761) >>> 0);
      // Offset mapping sees the second page of the file.
      const c = mmapShared(fd, 4096, 4096);
      assert.equal(new Uint32Array(c.buffer)[0], wa[1024]);
      munmap(c);
    } finally {
      if (a) munmap(a);
      if (b) munmap(b);
      close(fd);
    }
  }),
);

Deno.test(
  "mmap of a bad fd fails with the hint",
  noFdLeak(() => {
    assert.throws(
      () => mmapShared(-1, 4096, 0, "is the memfd still open?"),
      /^SyscallError: mmap failed: EBADF \(Bad file descriptor\); is the memfd still open\?$/,
    );
    assert.throws(() => mmapShared(-1, 0), RangeError);
  }),
);

Deno.test(
  "hugetlb memfd: ENOMEM at mmap without free hugepages, a working mapping with them",
  noFdLeak(() => {
    const page = hugePageSize();
    assert.ok(page >= 2 * 1024 * 1024 && (page & (page - 1)) === 0, `hugepage size ${page}`);
    const hint = "reserve hugepages or pass hugepages:false";
    let fd: number;
    try {
      fd = memfdCreate("ffi-test-huge", MFD_CLOEXEC | MFD_HUGETLB);
    } catch (e) {
      // Kernels without hugetlbfs refuse at memfd_create; nothing else to test then.
      assert.ok(e instanceof SyscallError && e.code === "EINVAL", String(e));
      return;
    }
    try {
      ftruncate(fd, page); // succeeds with 0 free pages: nothing is reserved yet
      if (freeHugePages() === 0) {
        assert.throws(
          () => mmapShared(fd, page, 0, hint),
          (e: unknown) =>
            e instanceof SyscallError && e.code === "ENOMEM" && e.message.includes("ENOMEM") &&
            e.message.endsWith(hint),
        );
      } else {
        const m = mmapShared(fd, page, 0, hint);
        try {
          assert.equal(m.addr % page, 0);
          const v = new Uint8Array(m.buffer);
          v[0] = 0xab;
          v[page - 1] = 0xcd;
          assert.equal(v[0] + v[page - 1], 0xab + 0xcd);
        } finally {
          munmap(m);
        }
      }
      // More pages than the pool holds: ENOMEM whatever is free (unless overcommit is allowed).
      const overcommit = Number(Deno.readTextFileSync("/proc/sys/vm/nr_overcommit_hugepages"));
      if (overcommit === 0) {
        const tooMany = (meminfo("HugePages_Total") + 1) * page;
        ftruncate(fd, tooMany);
        assert.throws(
          () => mmapShared(fd, tooMany, 0, hint),
          (e: unknown) => e instanceof SyscallError && e.message.includes("ENOMEM"),
        );
      }
    } finally {
      close(fd);
    }
  }),
);

Deno.test(
  "eventfd: signal and drain count",
  noFdLeak(() => {
    const fd = eventfd();
    try {
      assert.equal(libc.symbols.fcntl(fd, F_GETFD, 0) & FD_CLOEXEC, FD_CLOEXEC);
      assert.equal(eventfdDrain(fd), 0);
      eventfdSignal(fd);
      eventfdSignal(fd);
      eventfdSignal(fd);
      assert.equal(eventfdDrain(fd), 3);
      assert.equal(eventfdDrain(fd), 0);
      for (let i = 0; i < 1000; i++) eventfdSignal(fd);
      assert.equal(eventfdDrain(fd), 1000);
    } finally {
      close(fd);
    }
    assert.throws(() => eventfdSignal(fd), /EBADF/);
    assert.throws(() => eventfdDrain(fd), /EBADF/);
  }),
);

Deno.test(
  "pollIn returns the readable fd's index, -1 on timeout",
  noFdLeak(() => {
    const a = eventfd(), b = eventfd();
    try {
      assert.equal(pollIn([a, b], 0), -1);
      const t0 = performance.now();
      assert.equal(pollIn([a, b], 30), -1);
      assert.ok(performance.now() - t0 >= 25);
      eventfdSignal(b);
      assert.equal(pollIn([a, b], 1000), 1);
      eventfdSignal(a);
      assert.equal(pollIn([a, b], -1), 0);
      assert.throws(() => pollIn(new Array(65).fill(a), 0), RangeError);
    } finally {
      close(a);
      close(b);
    }
  }),
);

Deno.test(
  "unix socket: listen, connect, accept, pass an eventfd and a memfd",
  noFdLeak(() => {
    withTempDir((dir) => {
      const path = `${dir}/vhost.sock`;
      const l = unixListen(path);
      const c = unixConnect(path);
      const a = unixAccept(l);
      const efd = eventfd();
      const mfd = memfdCreate("ffi-test-pass", MFD_CLOEXEC);
      const got: number[] = [];
      let mine: Mapping | undefined, theirs: Mapping | undefined;
      try {
        assert.ok(Deno.lstatSync(path).isSocket);
        assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
        ftruncate(mfd, 4096);
        mine = mmapShared(mfd, 4096);
        new Uint8Array(mine.buffer).set([1, 2, 3, 4], 100);

        const msg = new Uint8Array(64).map((_, i) => i + 1);
        sendMsg(c, msg, 20, [efd, mfd]);
        const buf = new Uint8Array(64);
        const n = recvMsg(a, buf, 64, got);
        assert.equal(n, 20);
        assert.deepEqual(buf.subarray(0, 20), msg.subarray(0, 20));
        assert.equal(got.length, 2);
        assert.ok(!got.includes(efd) && !got.includes(mfd));
        for (const f of got) {
          assert.equal(libc.symbols.fcntl(f, F_GETFD, 0) & FD_CLOEXEC, FD_CLOEXEC);
        }
        // Same eventfd object: signal the received one, drain the original.
        eventfdSignal(got[0]);
        eventfdSignal(got[0]);
        assert.equal(eventfdDrain(efd), 2);
        // Same memory: the received memfd maps the bytes written through the original.
        theirs = mmapShared(got[1], 4096);
        assert.deepEqual([...new Uint8Array(theirs.buffer, 100, 4)], [1, 2, 3, 4]);
        new Uint8Array(theirs.buffer)[200] = 42;
        assert.equal(new Uint8Array(mine.buffer)[200], 42);

        // Messages without fds, both directions.
        sendMsg(a, msg, 64, []);
        const none: number[] = [];
        assert.equal(recvMsg(c, buf, 64, none), 64);
        assert.equal(none.length, 0);
        assert.deepEqual(buf, msg);
      } finally {
        if (mine) munmap(mine);
        if (theirs) munmap(theirs);
        for (const f of got) close(f);
        close(efd);
        close(mfd);
        close(a);
        close(c);
        close(l);
      }
    });
  }),
);

Deno.test(
  "unix socket: dontwait, recvExact across sends, timeout, EOF",
  noFdLeak(() => {
    withTempDir((dir) => {
      const path = `${dir}/s.sock`;
      const l = unixListen(path);
      const c = unixConnect(path);
      const a = unixAccept(l);
      const efd = eventfd();
      const fds: number[] = [99];
      try {
        const buf = new Uint8Array(32);
        assert.equal(recvMsg(a, buf, 32, fds, true), -1);
        assert.equal(fds.length, 0);

        // A header then a payload, sent separately, read as one exact message.
        sendMsg(c, new Uint8Array([1, 2, 3, 4, 5]), 5, [efd]);
        sendMsg(c, new Uint8Array([6, 7, 8, 9, 10, 11, 12]), 7, []);
        recvExact(a, buf, 12, fds, 1000);
        assert.deepEqual([...buf.subarray(0, 12)], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert.equal(fds.length, 1);
        eventfdSignal(fds[0]);
        assert.equal(eventfdDrain(efd), 1);
        close(fds[0]);
        fds.length = 0;

        // Half a message, then silence: timeout, and the fd that came with it is closed.
        const before = openFds();
        sendMsg(c, new Uint8Array([1, 2, 3]), 3, [efd]);
        const t0 = performance.now();
        assert.throws(
          () => recvExact(a, buf, 12, fds, 50),
          (e: unknown) => e instanceof Deno.errors.TimedOut && /3 of 12 bytes/.test(e.message),
        );
        assert.ok(performance.now() - t0 >= 45);
        assert.equal(fds.length, 0);
        assert.equal(openFds(), before);

        // Peer closes: recvExact names it, recvMsg returns 0.
        sendMsg(c, new Uint8Array([1, 2]), 2, []);
        close(c);
        assert.throws(
          () => recvExact(a, buf, 12, fds, 1000),
          (e: unknown) =>
            e instanceof Deno.errors.UnexpectedEof &&
            e.message.includes("peer closed the connection"),
        );
        assert.equal(recvMsg(a, buf, 32, fds), 0);
        assert.equal(recvMsg(a, buf, 32, fds, true), 0);
        // Writing to a closed peer: EPIPE, no SIGPIPE.
        assert.throws(() => sendMsg(a, buf, 4, []), /sendmsg\(fd \d+\) failed: EPIPE.*peer closed/);
      } finally {
        close(efd);
        closeQuietly(c);
        close(a);
        close(l);
      }
    });
  }),
);

Deno.test(
  "unix socket: more fds than the control buffer holds are closed and reported",
  noFdLeak(() => {
    withTempDir((dir) => {
      const path = `${dir}/s.sock`;
      const l = unixListen(path);
      const c = unixConnect(path);
      const a = unixAccept(l);
      const efds = Array.from({ length: MAX_MSG_FDS + 4 }, () => eventfd());
      try {
        assert.throws(() => sendMsg(c, new Uint8Array(1), 1, efds), RangeError);
        // Hand-built sendmsg with 20 fds (sendMsg itself refuses more than MAX_MSG_FDS).
        const n = efds.length;
        const ctrl = new ArrayBuffer(16 + ((4 * n + 7) & ~7));
        const cv = new DataView(ctrl);
        cv.setBigUint64(0, BigInt(16 + 4 * n), true);
        cv.setInt32(8, 1, true); // SOL_SOCKET
        cv.setInt32(12, 1, true); // SCM_RIGHTS
        efds.forEach((f, i) => cv.setInt32(16 + 4 * i, f, true));
        const data = new ArrayBuffer(8);
        const iov = new BigUint64Array([Deno.UnsafePointer.value(Deno.UnsafePointer.of(data)), 8n]);
        const hdr = new BigUint64Array(7);
        hdr[2] = Deno.UnsafePointer.value(Deno.UnsafePointer.of(iov));
        hdr[3] = 1n;
        hdr[4] = Deno.UnsafePointer.value(Deno.UnsafePointer.of(ctrl));
        hdr[5] = BigInt(ctrl.byteLength);
        assert.equal(libc.symbols.sendmsg(c, hdr, 0), 8);

        const before = openFds();
        const fds: number[] = [];
        assert.throws(() => recvMsg(a, new Uint8Array(8), 8, fds), /more than 16 fds/);
        assert.equal(fds.length, 0);
        assert.equal(openFds(), before);
      } finally {
        for (const f of efds) close(f);
        close(a);
        close(c);
        close(l);
      }
    });
  }),
);

Deno.test(
  "unix socket: non-blocking accept, stale socket file, refused paths",
  noFdLeak(() => {
    withTempDir((dir) => {
      const path = `${dir}/s.sock`;
      const l1 = unixListen(path, 0o660);
      assert.equal(Deno.statSync(path).mode! & 0o777, 0o660);
      close(l1); // leaves a stale socket file behind
      assert.throws(
        () => unixConnect(path),
        (e: unknown) =>
          e instanceof SyscallError && e.code === "ECONNREFUSED" && e.message.includes(path),
      );
      const l = unixListen(path); // removes the stale file
      try {
        setNonBlocking(l, true);
        assert.equal(unixAccept(l), -1);
        const c = unixConnect(path);
        const a = unixAccept(l, true);
        assert.ok(a >= 0);
        // The accepted fd is non-blocking: recvMsg returns -1 even without dontwait.
        assert.equal(recvMsg(a, new Uint8Array(4), 4, []), -1);
        setNonBlocking(a, false);
        setNonBlocking(l, false);
        close(a);
        close(c);
      } finally {
        close(l);
      }
      Deno.writeTextFileSync(`${dir}/file`, "x");
      assert.throws(() => unixListen(`${dir}/file`), /is not a socket/);
      assert.equal(Deno.readTextFileSync(`${dir}/file`), "x");
      assert.throws(() => unixListen(`${dir}/${"x".repeat(120)}`), /1 to 107 bytes/);
    });
  }),
);

Deno.test("unixConnect to a missing path names the path and ENOENT", () => {
  withTempDir((dir) => {
    const path = `${dir}/missing.sock`;
    assert.throws(
      () => unixConnect(path),
      (e: unknown) =>
        e instanceof SyscallError && e.message.includes("ENOENT") &&
        e.message.includes(`connect(${path})`) &&
        e.message.includes("is the vhost-user backend listening on this socket?"),
    );
  });
});

Deno.test(
  "ioctl: ENOTTY on a non-tty, success with an integer and a buffer argument",
  noFdLeak(() => {
    const fd = eventfd(false);
    try {
      assert.throws(
        () => ioctl(fd, TCGETS, new Uint8Array(64), "TCGETS"),
        (e: unknown) =>
          e instanceof SyscallError && e.message.startsWith("ioctl(TCGETS) failed: ENOTTY"),
      );
      assert.throws(() => ioctl(fd, TCGETS, 0, "TCGETS"), /ENOTTY/);
      // FIONBIO works on any fd: turns O_NONBLOCK on, as eventfdDrain then shows (0, no block).
      assert.equal(ioctl(fd, FIONBIO, new Uint8Array([1, 0, 0, 0]), "FIONBIO"), 0);
      assert.equal(eventfdDrain(fd), 0);
      // A request above 2^31 goes through as a u64 (vhost's VHOST_GET_VRING_BASE on an eventfd).
      assert.throws(
        () => ioctl(fd, 0xC008AF12, new Uint8Array(8), "VHOST_GET_VRING_BASE"),
        /ENOTTY/,
      );
    } finally {
      close(fd);
    }
  }),
);

Deno.test("unix socket: a 1 MiB message crosses in partial writes to a reader thread", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "ffi_test_" });
  const path = `${dir}/big.sock`;
  const l = unixListen(path);
  const efd = eventfd();
  const size = 1 << 20;
  const workerCode = `
    import { recvExact, unixConnect, recvMsg } from ${
    JSON.stringify(import.meta.resolve("../ffi/unix_socket.ts"))
  };
    import { eventfdSignal } from ${JSON.stringify(import.meta.resolve("../ffi/eventfd.ts"))};
    import { close } from ${JSON.stringify(import.meta.resolve("../ffi/fd.ts"))};
    self.onmessage = (e) => {
      const s = unixConnect(e.data.path);
      const empty = recvMsg(s, new Uint8Array(1), 1, [], true); // errno read on this thread
      const buf = new Uint8Array(e.data.size);
      const fds = [];
      recvExact(s, buf, buf.length, fds, 10000);
      let sum = 0;
      for (let i = 0; i < buf.length; i++) sum = (sum + buf[i] * (i + 1)) % 1000000007;
      eventfdSignal(fds[0]);
      for (const f of fds) close(f);
      close(s);
      self.postMessage({ sum, nfds: fds.length, empty });
    };
  `;
  // Plain JavaScript in a temp file: the worker runs on its own thread, with its own errno.
  const workerFile = `${dir}/reader.js`;
  Deno.writeTextFileSync(workerFile, workerCode);
  const worker = new Worker(new URL(`file://${workerFile}`), { type: "module" });
  try {
    const reply = new Promise<{ sum: number; nfds: number; empty: number }>((resolve, reject) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message));
      };
    });
    worker.postMessage({ path, size });
    assert.ok(pollIn([l], 5000) === 0, "worker did not connect");
    const a = unixAccept(l, true); // non-blocking: sendMsg sees partial writes and EAGAIN
    const data = new Uint8Array(size);
    let sum = 0;
    for (let i = 0; i < size; i++) {
      data[i] = (i * 7 + 3) & 0xff;
      sum = (sum + data[i] * (i + 1)) % 1000000007;
    }
    try {
      sendMsg(a, data, size, [efd]);
    } finally {
      close(a);
    }
    const r = await reply;
    assert.deepEqual(r, { sum, nfds: 1, empty: -1 });
    assert.equal(eventfdDrain(efd), 1);
  } finally {
    worker.terminate();
    close(efd);
    close(l);
    Deno.removeSync(dir, { recursive: true });
  }
});
