// Copying a test's image files the way the tests need it: the same bytes, but sparse. Node's
// fs.copyFileSync (copy_file_range) fills every hole of the source, so each copy of a 64 MiB
// volume that holds 2 MiB of data wrote 64 MiB, and the crash enumerations copy an image at every
// crash point: gigabytes of zeros per suite run, written back to the disk while other tests
// fdatasync. This copy writes only the 4 KiB blocks that are not all zero.

import fs from 'node:fs';

/** Zero detection granularity: the file system's block (ext4's 4 KiB), the unit a hole is made of. */
const BLOCK_BYTES = 4096;
/** Read size: large enough that the syscalls cost nothing next to the zero checks. */
const CHUNK_BYTES = 1 << 20;
const ZERO = Buffer.alloc(BLOCK_BYTES);

/**
 * Copies `src` to `dst` (created or truncated, like fs.copyFileSync, with src's mode): afterwards
 * `dst` reads byte for byte as `src`, and only its non-zero blocks are allocated.
 */
export function copyImage(src: string, dst: string): void {
  const st = fs.statSync(src);
  const inFd = fs.openSync(src, 'r');
  try {
    const outFd = fs.openSync(dst, 'w', st.mode & 0o7777);
    try {
      fs.fchmodSync(outFd, st.mode & 0o7777);
      fs.ftruncateSync(outFd, st.size);
      const buf = Buffer.allocUnsafe(CHUNK_BYTES);
      let offsetBytes = 0;
      while (offsetBytes < st.size) {
        const n = fs.readSync(inFd, buf, 0, Math.min(CHUNK_BYTES, st.size - offsetBytes), offsetBytes);
        if (n === 0) throw new Error(`copyImage: ${src} ended at ${offsetBytes} of ${st.size} bytes (changed while copied?)`);
        writeNonZero(outFd, buf.subarray(0, n), offsetBytes);
        offsetBytes += n;
      }
    } finally {
      fs.closeSync(outFd);
    }
  } finally {
    fs.closeSync(inFd);
  }
}

/** Writes the runs of not-all-zero blocks of `chunk` (read at `offsetBytes`) to `fd`, each run in one write. */
function writeNonZero(fd: number, chunk: Buffer, offsetBytes: number): void {
  let runStart = -1;
  for (let b = 0; b < chunk.length; b += BLOCK_BYTES) {
    const end = Math.min(b + BLOCK_BYTES, chunk.length);
    const zero = chunk.subarray(b, end).equals(ZERO.subarray(0, end - b));
    if (!zero && runStart < 0) runStart = b;
    if (zero && runStart >= 0) {
      writeAll(fd, chunk.subarray(runStart, b), offsetBytes + runStart);
      runStart = -1;
    }
  }
  if (runStart >= 0) writeAll(fd, chunk.subarray(runStart), offsetBytes + runStart);
}

function writeAll(fd: number, data: Buffer, offsetBytes: number): void {
  for (let done = 0; done < data.length; ) done += fs.writeSync(fd, data, done, data.length - done, offsetBytes + done);
}
