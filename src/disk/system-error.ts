// The environment's usual failures as one line saying what failed and where (issue 15 item 8),
// instead of a raw errno marked "unexpected": a typed DiskError carrying the errno's name.

import type fs from 'node:fs';
import { DiskError, type ErrorCode } from '../errors.js';

/** What each errno means for a disk image, in the user's words. */
const EXPLAIN: Record<string, string> = {
  EFBIG: 'file too large for the file system',
  EROFS: 'read-only file system',
  EPERM: 'operation not permitted',
  EACCES: 'permission denied',
  ENAMETOOLONG: 'file name too long',
  ELOOP: 'too many levels of symbolic links',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  ENOTDIR: 'a component of the path is not a directory',
  EISDIR: 'is a directory',
  ENOENT: 'no such file or directory',
  EEXIST: 'already exists',
  EBUSY: 'device or resource busy',
  ENXIO: 'no such device (a FIFO without a reader, or a detached device)',
  EIO: 'I/O error',
  EMFILE: 'too many open files',
  EINVAL: 'invalid argument',
};

/** Maps errnos to sanbox's codes where one fits; the rest are I/O failures. */
const CODES: Record<string, ErrorCode> = { ENOENT: 'ENOENT', EEXIST: 'EEXIST', EBUSY: 'EBUSY', ENOSPC: 'ENOSPC', EINVAL: 'EINVAL' };

/** "PATH: cannot ACTION: file too large for the file system (EFBIG)". */
export function systemError(path: string, action: string, err: unknown): DiskError {
  if (err instanceof DiskError) return err;
  const errno = (err as NodeJS.ErrnoException).code ?? 'EIO';
  const why = EXPLAIN[errno] ?? (err as Error).message.split('\n')[0];
  return new DiskError(CODES[errno] ?? 'EIO', `${path}: cannot ${action}: ${why} (${errno})`, { device: path, cause: err });
}

/** "a directory", "a FIFO", … for messages that refuse a path that is no disk. */
export function fileKind(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

/** The explanation of an errno name, if sanbox has one. */
export function explainErrno(errno: string): string | undefined {
  return EXPLAIN[errno];
}
