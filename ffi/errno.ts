/**
 * Linux errno names (x86-64, `asm-generic/errno-base.h` and `asm-generic/errno.h`), so errors can
 * say `ENOMEM` instead of `12`.
 *
 * @module
 */

/** Names indexed by errno value; 41 and 58 are unused on Linux (aliases of 11 and 35). */
const NAMES: readonly string[] = [
  "",
  "EPERM",
  "ENOENT",
  "ESRCH",
  "EINTR",
  "EIO",
  "ENXIO",
  "E2BIG",
  "ENOEXEC",
  "EBADF",
  "ECHILD", // 10
  "EAGAIN",
  "ENOMEM",
  "EACCES",
  "EFAULT",
  "ENOTBLK",
  "EBUSY",
  "EEXIST",
  "EXDEV",
  "ENODEV",
  "ENOTDIR", // 20
  "EISDIR",
  "EINVAL",
  "ENFILE",
  "EMFILE",
  "ENOTTY",
  "ETXTBSY",
  "EFBIG",
  "ENOSPC",
  "ESPIPE",
  "EROFS", // 30
  "EMLINK",
  "EPIPE",
  "EDOM",
  "ERANGE",
  "EDEADLK",
  "ENAMETOOLONG",
  "ENOLCK",
  "ENOSYS",
  "ENOTEMPTY",
  "ELOOP", // 40
  "",
  "ENOMSG",
  "EIDRM",
  "ECHRNG",
  "EL2NSYNC",
  "EL3HLT",
  "EL3RST",
  "ELNRNG",
  "EUNATCH",
  "ENOCSI", // 50
  "EL2HLT",
  "EBADE",
  "EBADR",
  "EXFULL",
  "ENOANO",
  "EBADRQC",
  "EBADSLT",
  "",
  "EBFONT",
  "ENOSTR", // 60
  "ENODATA",
  "ETIME",
  "ENOSR",
  "ENONET",
  "ENOPKG",
  "EREMOTE",
  "ENOLINK",
  "EADV",
  "ESRMNT",
  "ECOMM", // 70
  "EPROTO",
  "EMULTIHOP",
  "EDOTDOT",
  "EBADMSG",
  "EOVERFLOW",
  "ENOTUNIQ",
  "EBADFD",
  "EREMCHG",
  "ELIBACC",
  "ELIBBAD", // 80
  "ELIBSCN",
  "ELIBMAX",
  "ELIBEXEC",
  "EILSEQ",
  "ERESTART",
  "ESTRPIPE",
  "EUSERS",
  "ENOTSOCK",
  "EDESTADDRREQ",
  "EMSGSIZE", // 90
  "EPROTOTYPE",
  "ENOPROTOOPT",
  "EPROTONOSUPPORT",
  "ESOCKTNOSUPPORT",
  "EOPNOTSUPP",
  "EPFNOSUPPORT",
  "EAFNOSUPPORT",
  "EADDRINUSE",
  "EADDRNOTAVAIL",
  "ENETDOWN", // 100
  "ENETUNREACH",
  "ENETRESET",
  "ECONNABORTED",
  "ECONNRESET",
  "ENOBUFS",
  "EISCONN",
  "ENOTCONN",
  "ESHUTDOWN",
  "ETOOMANYREFS",
  "ETIMEDOUT", // 110
  "ECONNREFUSED",
  "EHOSTDOWN",
  "EHOSTUNREACH",
  "EALREADY",
  "EINPROGRESS",
  "ESTALE",
  "EUCLEAN",
  "ENOTNAM",
  "ENAVAIL",
  "EISNAM", // 120
  "EREMOTEIO",
  "EDQUOT",
  "ENOMEDIUM",
  "EMEDIUMTYPE",
  "ECANCELED",
  "ENOKEY",
  "EKEYEXPIRED",
  "EKEYREVOKED",
  "EKEYREJECTED",
  "EOWNERDEAD", // 130
  "ENOTRECOVERABLE",
  "ERFKILL",
  "EHWPOISON",
];

/**
 * Symbolic name of a Linux errno value, or `errno <n>` for a value without one.
 *
 * @example
 * ```ts
 * import { errnoName } from "./errno.ts";
 * console.log(errnoName(12)); // "ENOMEM"
 * ```
 */
export function errnoName(n: number): string {
  const name = Number.isInteger(n) && n > 0 && n < NAMES.length ? NAMES[n] : "";
  return name === "" ? `errno ${n}` : name;
}

/** Operation not permitted. */
export const EPERM = 1;
/** No such file or directory. */
export const ENOENT = 2;
/** Interrupted system call: retry. */
export const EINTR = 4;
/** Argument list too long (vhost: more memory regions than max_mem_regions). */
export const E2BIG = 7;
/** Bad file descriptor.
export const EBADF = 9;
/** Resource temporarily unavailable (also EWOULDBLOCK): nothing to read or no room to write. */
export const EAGAIN = 11;
/** Cannot allocate memory. */
export const ENOMEM = 12;
/** Permission denied. */
export const EACCES = 13;
/** Device or resource busy. */
export const EBUSY = 16;
/** No such device (a module that is not loaded, an interface that does not exist). */
export const ENODEV = 19;
/** Invalid argument. */
export const EINVAL = 22;
/** Inappropriate ioctl for device. */
export const ENOTTY = 25;
/** Broken pipe: the peer closed its end. */
export const EPIPE = 32;
/** Connection aborted before it was accepted. */
export const ECONNABORTED = 103;
/** Connection reset by peer. */
export const ECONNRESET = 104;
/** Connection refused: nobody listens on the socket. */
export const ECONNREFUSED = 111;
