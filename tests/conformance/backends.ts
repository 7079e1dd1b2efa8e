/**
 * The one registry of backends the conformance suites run on. Each suite file
 * (`*_test.ts` here) registers its cases for every entry of {@linkcode BACKENDS}.
 *
 * Every entry is opened through `openStore` (src/backends/open.ts), by the address a user would
 * type.
 *
 * @module
 */
import { openStore, type Store } from "../../src/backends/open.ts";
import type { OpenOptions } from "../../src/backends/sqlite/db.ts";
import { putBlob, putSmallBlob, readBlob } from "../../src/castore/blob_util.ts";
import { makeDirectory } from "../../src/castore/directory.ts";
import { create } from "@bufbuild/protobuf";
import { NARInfoSchema, PathInfoSchema } from "../../src/gen/tvix/store/protos/pathinfo_pb.ts";
import { largeBuffer } from "../../src/sys/libc.ts";

/** An opened store: the three services, and a cleanup that closes them and removes their files. */
export interface OpenedStore extends Omit<Store, "close"> {
  /** Closes the services (and the daemon behind them) and removes what they made. */
  cleanup(): Promise<void>;
}

/** Which of Deno's test sanitizers a backend's cases run with. */
export interface Sanitizers {
  /** Every resource (file, socket, SQLite statement's file) opened in a case is closed by it. */
  resources: boolean;
  /** Every async op (timer, read, accept) started in a case has finished by its end. */
  ops: boolean;
}

/** One backend of the registry. */
export interface Backend {
  /** The name cases are registered under, e.g. `sqlite(file)`, `grpc(unix) → memory`. */
  name: string;
  /** Opens a fresh, empty store. */
  open(): Promise<OpenedStore>;
  /** The sanitizers its cases run with. */
  sanitize: Sanitizers;
}

const ALL: Sanitizers = { resources: true, ops: true };

/** A store at `addr(dir)` in a fresh temp dir, removed on cleanup. */
async function local(
  addr: (dir: string) => string,
  options: OpenOptions = {},
): Promise<OpenedStore> {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-conf-" });
  try {
    const store = await openStore(addr(dir), {}, options);
    return {
      ...store,
      cleanup: async () => {
        try {
          await store.close();
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      },
    };
  } catch (e) {
    await Deno.remove(dir, { recursive: true });
    throw e;
  }
}

/** The daemon kinds behind the `grpc(…)` backends: what the child serves from. */
type Backing = "memory" | "sqlite-read-server";

/** A running daemon_child.ts. */
interface Child {
  url: string;
  reset(): Promise<void>;
}

const children = new Map<string, Promise<Child>>();

/** Reads `child`'s stdout up to and including a line starting with `want`; returns that line. */
async function readLine(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  state: { buffered: string },
  want: string,
): Promise<string> {
  const dec = new TextDecoder();
  for (;;) {
    const nl = state.buffered.indexOf("\n");
    if (nl >= 0) {
      const line = state.buffered.slice(0, nl);
      state.buffered = state.buffered.slice(nl + 1);
      if (line.startsWith(want)) return line;
      continue;
    }
    // Reads only until the line is there: a read left pending would be an op leaked into the
    // case that comes next.
    const { value, done } = await reader.read();
    if (done) throw new Error(`daemon_child exited before printing "${want}"`);
    state.buffered += dec.decode(value, { stream: true });
  }
}

/** Starts a daemon_child.ts (once per process and kind); stopped after all tests. */
async function startChild(kind: "unix" | "tcp", backing: Backing): Promise<Child> {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-conf-grpc-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      new URL("./daemon_child.ts", import.meta.url).pathname,
      kind === "unix" ? `unix:${dir}/d.sock` : "127.0.0.1:0",
      backing,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const writer = child.stdin.getWriter();
  const state = { buffered: "" };
  const address = (await readLine(reader, state, "listening ")).slice("listening ".length);
  Deno.test.afterAll(async () => {
    await writer.close();
    reader.releaseLock();
    await child.stdout.cancel();
    const status = await child.status;
    await Deno.remove(dir, { recursive: true });
    if (!status.success) throw new Error(`daemon_child ${kind} ${backing} exited ${status.code}`);
  });
  return {
    url: kind === "unix"
      ? `grpc+unix://${address.slice("unix:".length)}`
      : `grpc+http://${address}`,
    async reset() {
      await writer.write(new TextEncoder().encode("reset\n"));
      await readLine(reader, state, "ready");
    },
  };
}

/**
 * gRPC clients, opened by their `grpc+…` address, of a real daemon in another process
 * (daemon_child.ts) serving a fresh store of kind `backing`.
 */
async function remote(kind: "unix" | "tcp", backing: Backing): Promise<OpenedStore> {
  const key = `${kind} ${backing}`;
  let started = children.get(key);
  if (!started) children.set(key, started = startChild(kind, backing));
  const child = await started;
  await child.reset();
  const clients = await openStore(child.url);
  return { ...clients, cleanup: () => clients.close() };
}

/** The SQLite file address of a store in `dir`. */
const sqliteFile = (dir: string) => `sqlite://${dir}/store.db`;

/**
 * The backends every suite runs on, in the main test processes. Cases run in this order, so
 * backends without sanitizers come last: what their cases leave open closes during the next case
 * ({@linkcode checkOrder}).
 */
export const BACKENDS: readonly Backend[] = [
  { name: "memory", open: () => local(() => "memory://"), sanitize: ALL },
  // Each service gets a private in-memory database.
  { name: "sqlite(:memory:)", open: () => local(() => "sqlite://"), sanitize: ALL },
  // One file shared by the three services.
  { name: "sqlite(file)", open: () => local(sqliteFile), sanitize: ALL },
  // Memory-mapped, as `nixcas mount` and `nixcas daemon` open it.
  {
    name: "sqlite(file, read-server mode)",
    open: () => local(sqliteFile, { readServer: true }),
    sanitize: ALL,
  },
  {
    name: "grpc(unix) → memory",
    open: () => remote("unix", "memory"),
    sanitize: ALL,
  },
  {
    name: "grpc(tcp) → memory",
    open: () => remote("tcp", "memory"),
    sanitize: ALL,
  },
  // What `nixcas daemon` serves from an SQLite file, in read-server mode.
  {
    name: "grpc(unix) → sqlite(file, read-server mode)",
    open: () => remote("unix", "sqlite-read-server"),
    sanitize: ALL,
  },
];

/**
 * Runs every backend of `backends` through the code paths the suites take, before any case:
 * libc symbols, libcrypto and SQLite are loaded on first use and kept for the life of the
 * process, which the resource sanitizer would otherwise blame on whichever case came first.
 */
export async function warmUp(backends: readonly Backend[]): Promise<void> {
  checkOrder(backends);
  const te = new TextEncoder();
  // NAR rendering's recycled buffers (madvise), whichever case renders first.
  largeBuffer(4 << 20);
  // Only those that are checked: the others' leftovers would close during the first case.
  for (const backend of backends.filter((b) => b.sanitize.resources)) {
    const s = await backend.open();
    try {
      const big = new Uint8Array(3 << 20).fill(1);
      const digest = await putBlob(s.blobs, big);
      await putSmallBlob(s.blobs, te.encode("warm")).stored;
      // Small blobs over the inline size take the pack's batched writes and synchronous reads.
      for (const size of [64 << 10, 1 << 20]) {
        const put = putSmallBlob(s.blobs, new Uint8Array(size).fill(2));
        await put.stored;
        await readBlob(s.blobs, put.digest);
      }
      const w = await s.blobs.openWrite();
      await w.write(big);
      await w.abort();
      const r = (await s.blobs.openRead(digest))!;
      await r.readAt(1 << 20, 10);
      await r.close();
      await readBlob(s.blobs, digest);
      const p = s.directories.putMultipleStart();
      await p.put(makeDirectory({}));
      const root = await p.close();
      for await (const _ of s.directories.getRecursive(root)) { /* drain */ }
      const node = {
        case: "file" as const,
        value: {
          $typeName: "tvix.castore.v1.FileNode" as const,
          name: te.encode("00bgd045z0d4icpbc2yyz4gx48ak44la-warm"),
          digest: digest.bytes,
          size: big.length,
          executable: false,
        },
      };
      const nar = await s.pathInfos.calculateNar(node);
      await s.pathInfos.put(create(PathInfoSchema, {
        node: { $typeName: "tvix.castore.v1.Node", node },
        narinfo: create(NARInfoSchema, {
          narSize: BigInt(nar.narSize),
          narSha256: new Uint8Array(nar.narSha256),
        }),
      }));
      for await (const _ of s.pathInfos.list()) { /* drain */ }
    } finally {
      await s.cleanup();
    }
  }
}

/** Throws unless every backend with a sanitizer on comes before every backend with one off. */
export function checkOrder(backends: readonly Backend[]): void {
  const full = (b: Backend) => b.sanitize.resources && b.sanitize.ops;
  const i = backends.findIndex((b) => !full(b));
  const late = backends.slice(i < 0 ? backends.length : i).find(full);
  if (late) {
    throw new Error(`backend ${late.name}: sanitized backends must come before unsanitized ones`);
  }
}
