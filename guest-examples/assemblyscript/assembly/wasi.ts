// The few WASI preview-1 calls a Sandstep command needs, declared directly:
// AssemblyScript has no WASI runtime of its own.

@external("wasi_snapshot_preview1", "fd_read")
declare function fd_read(fd: u32, iovs: usize, iovs_len: usize, nread: usize): u16;

@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovs_len: usize, nwritten: usize): u16;

@external("wasi_snapshot_preview1", "proc_exit")
declare function proc_exit(code: u32): void;

/** All of stdin, decoded as UTF-8. */
export function readStdin(): string {
  const chunk = 64 * 1024;
  let data = new Uint8Array(0);
  const iov = memory.data(8);
  const nread = memory.data(4);
  while (true) {
    const grown = new Uint8Array(data.length + chunk);
    grown.set(data);
    store<u32>(iov, grown.dataStart + data.length);
    store<u32>(iov, chunk, 4);
    if (fd_read(0, iov, 1, nread) != 0) break;
    const n = load<u32>(nread);
    data = grown.subarray(0, data.length + n);
    if (n == 0) break;
  }
  return String.UTF8.decodeUnsafe(data.dataStart, data.length);
}

function writeAll(fd: u32, text: string): void {
  const bytes = String.UTF8.encode(text);
  const iov = memory.data(8);
  const written = memory.data(4);
  let offset: u32 = 0;
  const length = <u32>bytes.byteLength;
  while (offset < length) {
    store<u32>(iov, changetype<usize>(bytes) + offset);
    store<u32>(iov, length - offset, 4);
    if (fd_write(fd, iov, 1, written) != 0) return;
    offset += load<u32>(written);
  }
}

export function writeStdout(text: string): void {
  writeAll(1, text);
}

/** A line on stderr: Sandstep logs it. */
export function log(text: string): void {
  writeAll(2, text + "\n");
}

/** Fails the step the way Sandstep reads it from a command, and exits. */
export function fail(message: string, retryable: bool): void {
  const escaped = message.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
  writeStdout(`{"error":{"message":"${escaped}","retryable":${retryable ? "true" : "false"}}}`);
  proc_exit(1);
}

/** Replaces AssemblyScript's `env.abort` import (see `--use abort=` in package.json). */
export function abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const what = message !== null ? message : "abort";
  const where = fileName !== null ? fileName : "?";
  fail(`${what} (${where}:${line}:${column})`, false);
}
