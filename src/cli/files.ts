/**
 * The files a command reads and writes, checked before anything runs. Two outputs that are one file,
 * or an output that is the input, are a usage error: one would overwrite the other, and the results of
 * the run would be lost. An input that cannot be read or an output that cannot be written is said at
 * once, not after a long run whose results then have nowhere to go.
 */
import { constants, fstatSync, lstatSync, readlinkSync, realpathSync, statSync } from "node:fs";
import { access, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";

/** A file a command reads or writes, by path or by file descriptor (standard input and output). */
export interface NamedFile {
  /** How the user knows it: `--report`, `-o (--output)`, `standard output`. */
  readonly what: string;
  readonly path?: string;
  readonly fd?: number;
  /** Read, not written: writing to it would destroy what is still to be read. */
  readonly input?: boolean;
}

/**
 * The first pair of `files` that are one file, as a message for the user; `undefined` when all differ.
 * Files are compared by device and inode where they exist (so `./x`, a symlink and a hard link are all
 * seen), by their resolved path where they do not exist yet. Only regular files count: `/dev/null`, a
 * pipe or a terminal loses nothing when two outputs share it.
 */
export function sameFileConflict(files: readonly NamedFile[]): string | undefined {
  const seen: { file: NamedFile; identity: string }[] = [];
  for (const file of files) {
    const identity = identityOf(file);
    if (identity === undefined) continue;
    const earlier = seen.find((entry) => entry.identity === identity);
    if (earlier !== undefined) return conflictMessage(earlier.file, file);
    seen.push({ file, identity });
  }
  return undefined;
}

function conflictMessage(first: NamedFile, second: NamedFile): string {
  const path = first.path ?? second.path;
  const where = path === undefined ? "" : ` (${path})`;
  const what =
    first.input || second.input
      ? "writing it would destroy the input before it is read"
      : "one would overwrite the other, and the results would be lost";
  return `${first.what} and ${second.what} are one file${where}: ${what}; give each its own file`;
}

function identityOf(file: NamedFile): string | undefined {
  try {
    const info = file.fd === undefined ? statSync(file.path as string) : fstatSync(file.fd);
    return info.isFile() ? `inode:${info.dev}:${info.ino}` : undefined;
  } catch {
    // Not there yet (or no such descriptor): the same path however written.
    return file.path === undefined ? undefined : `path:${resolvedPath(file.path)}`;
  }
}

/** `path` made absolute, through symlinked directories and a dangling symlink at its end. */
function resolvedPath(path: string): string {
  let absolute = resolve(path);
  try {
    if (lstatSync(absolute).isSymbolicLink()) absolute = resolve(dirname(absolute), readlinkSync(absolute));
  } catch {
    // Nothing at that path: it is what it says.
  }
  try {
    return join(realpathSync(dirname(absolute)), basename(absolute));
  } catch {
    return absolute;
  }
}

/** @throws Error saying why `path` cannot be read as the input. */
export async function checkReadable(path: string): Promise<void> {
  try {
    await access(path, constants.R_OK);
    if ((await stat(path)).isDirectory()) throw new Error("it is a directory");
  } catch (error) {
    throw new Error(`cannot read the input ${path}: ${describeError(error)}`);
  }
}

/**
 * @param what - `report`, `output`: the message says `cannot write the report FILE: ...`.
 * @throws Error saying why `path` cannot be written: a directory, no permission, no such directory.
 */
export async function checkWritable(what: string, path: string): Promise<void> {
  try {
    const info = await stat(path).catch(() => undefined);
    if (info?.isDirectory()) throw new Error("it is a directory");
    if (info !== undefined) {
      await access(path, constants.W_OK);
      return;
    }
    // A new file needs a directory it can be created in.
    const directory = dirname(resolve(path));
    const parent = await stat(directory).catch(() => undefined);
    if (parent === undefined) throw new Error(`the directory ${directory} does not exist`);
    if (!parent.isDirectory()) throw new Error(`${directory} is not a directory`);
    await access(directory, constants.W_OK);
  } catch (error) {
    throw new Error(`cannot write the ${what} ${path}: ${describeError(error)}`);
  }
}

/**
 * A file read and then appended to (`--resume`): missing (it is created) or a readable regular file,
 * and writable either way. Not a device or a pipe: `/dev/zero` would be read for ever.
 * @throws Error saying why `path` cannot be used: a directory, no permission, no such directory.
 */
export async function checkReadWritable(what: string, path: string): Promise<void> {
  await checkWritable(what, path);
  const info = await stat(path).catch(() => undefined);
  if (info === undefined) return;
  try {
    if (!info.isFile()) throw new Error("it is not a regular file");
    await access(path, constants.R_OK);
  } catch (error) {
    throw new Error(`cannot read the ${what} ${path}: ${describeError(error)}`);
  }
}

/** An error as one short phrase: `no such file`, `permission denied`, or its message. */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return error.message;
}
