/**
 * Read-only subcommands: `path-info`, `nar`, `ls`, `cat`, `list`.
 *
 * @module
 */
import type { CommandSpec, Invocation } from "./args.ts";
import { concat } from "../base/bytes.ts";
import type { BlobReader } from "../castore/blob_service.ts";
import { B3Digest } from "../castore/digest.ts";
import { type BatchChecker, openVerifiedRead } from "../castore/verify.ts";
import { toBase64 } from "../base/bytes.ts";
import { type AnyNode, directoryNodes, fromNodeMessage } from "../castore/directory.ts";
import { NotFoundError } from "../base/errors.ts";
import { descendTo } from "../castore/traverse.ts";
import { streamNar } from "../nar/render.ts";
import { enableNativeBlake3, nativeBlake3 } from "../hash/blake3_native.ts";
import { type LlvmBlake3Worker, startLlvmBlake3Worker } from "../sys/llvm_blake3.ts";
import { encode as nixbase32 } from "../store/nixbase32.ts";
import type { PathInfo } from "../store/path_info_service.ts";
import type { NixcasStore, NixPathInfo } from "../store/copy.ts";
import { renderContentAddress } from "../store/content_address.ts";
import { parseStorePathWithSubpath, STORE_DIR_WITH_SLASH, StorePath } from "../store/store_path.ts";
import {
  action,
  CliError,
  openServices,
  SERVICE_ADDR_OPTIONS,
  type ServiceAddrOptions,
  type Services,
} from "./common.ts";
import { printLine, writeStdout, writeStdoutParts } from "./io.ts";

// NAR sizes from which `nar` loads native BLAKE3, and starts a worker thread for small files.
const NATIVE_HASH_FROM = 16 << 20;
const WORKER_FROM = 256 << 20;

/** Parses `/nix/store/<base>[/sub]` or `<base>[/sub]`. */
function parseTarget(arg: string): { storePath: StorePath; subpath: string[] } {
  return parseStorePathWithSubpath(arg.startsWith("/") ? arg : STORE_DIR_WITH_SLASH + arg);
}

async function lookup(services: Services, storePath: StorePath): Promise<PathInfo> {
  const info = await services.pathInfos.get(storePath.digest);
  if (!info) throw new NotFoundError(`${storePath.absolute} is not in the store`);
  return info;
}

async function resolve(services: Services, arg: string): Promise<{ node: AnyNode; shown: string }> {
  const { storePath, subpath } = parseTarget(arg);
  const info = await lookup(services, storePath);
  const root = fromNodeMessage(info.node);
  const node = await descendTo(services.directories, root, subpath.join("/"));
  const shown = [storePath.absolute, ...subpath].join("/");
  if (!node) throw new NotFoundError(`${shown}: no such file or directory`);
  return { node, shown };
}

/**
 * The JSON form of a PathInfo printed by `path-info --json`: the fields of `nix path-info
 * --json` (`path`, `narHash` as `sha256:<nix32>`, `narSize`, `references`, `deriver`, `ca`,
 * `signatures`), then the castore root `node`.
 */
export function pathInfoJson(storePath: StorePath, info: PathInfo): Record<string, unknown> {
  const node = fromNodeMessage(info.node);
  const n: Record<string, unknown> = { type: node.case };
  if (node.case !== "symlink") {
    n.digest = B3Digest.fromBytes(node.value.digest).toString();
    n.size = node.value.size;
  }
  if (node.case === "file") n.executable = node.value.executable;
  if (node.case === "symlink") n.target = new TextDecoder().decode(node.value.target);
  const narinfo = info.narinfo;
  const j: Record<string, unknown> = {
    path: storePath.absolute,
    narHash: `sha256:${nixbase32(narinfo?.narSha256 ?? new Uint8Array())}`,
    narSize: Number(narinfo?.narSize ?? 0),
    references: narinfo?.referenceNames.map((r) => STORE_DIR_WITH_SLASH + r) ?? [],
  };
  const d = narinfo?.deriver;
  if (d) j.deriver = new StorePath(d.digest, `${d.name}.drv`).absolute;
  if (narinfo?.ca) j.ca = renderContentAddress(narinfo.ca);
  if (narinfo?.signatures.length) {
    j.signatures = narinfo.signatures.map((s) => `${s.name}:${toBase64(s.data)}`);
  }
  j.node = n;
  return j;
}

const enc = new TextEncoder();

/** Options of `path-info`. */
interface PathInfoOptions extends ServiceAddrOptions {
  json?: boolean;
  recursive?: boolean;
  closureSize?: boolean;
}

/** The closure size of each path of `paths`: its NAR size plus that of everything it reaches. */
async function closureSizes(
  store: NixcasStore,
  paths: NixPathInfo[],
): Promise<Map<string, number>> {
  const { closureOf } = await import("../store/copy.ts");
  const out = new Map<string, number>();
  for (const p of paths) {
    const closure = await closureOf(store, [p.storePath]);
    out.set(p.storePath.toString(), closure.reduce((n, i) => n + i.narSize, 0));
  }
  return out;
}

/** An action run with the services named by the address flags, closed afterwards. */
function withServices<O extends ServiceAddrOptions>(
  fn: (services: Services, inv: Invocation<O>) => Promise<void>,
) {
  return action<O>(async (inv) => {
    // A malformed store path is reported before any store is opened.
    const target = inv.args.storePath ?? inv.args.path;
    for (const t of Array.isArray(target) ? target : [target]) {
      if (typeof t === "string") parseTarget(t);
    }
    const services = await openServices(inv.options, { readOnly: true });
    try {
      await fn(services, inv);
    } finally {
      await services.close();
    }
  });
}

const STORE_PATH_ARG = ["<store-path>", "/nix/store/<hash>-<name> or its basename"] as const;

/** The read-only subcommands, in help order. */
export const inspectCommands: readonly CommandSpec[] = [
  {
    name: "path-info",
    description: "Show what the store knows about store paths: NAR size and hash, references, " +
      "deriver, content address, signatures, root node. --json prints an array of objects " +
      "with the fields of `nix path-info --json`.",
    arguments: [["<path...>", "store paths: /nix/store/<hash>-<name> or the basename"]],
    options: [
      { flags: "--json", description: "print a JSON array" },
      { flags: "-r, --recursive", description: "show the closure of the paths" },
      {
        flags: "-S, --closure-size",
        description: "also show the closure size: the NAR sizes of the path and everything " +
          "it refers to, directly or not",
      },
      ...SERVICE_ADDR_OPTIONS,
    ],
    run: withServices<PathInfoOptions>(async (services, inv) => {
      const roots = (inv.args.path as string[]).map((arg) => {
        const { storePath, subpath } = parseTarget(arg);
        if (subpath.length) {
          throw new CliError(`${arg}: path-info takes a store path, not a path inside one`);
        }
        return storePath;
      });
      // Loaded here: the closure walk is no start-up cost of the other commands.
      const { closureOf, NixcasStore } = await import("../store/copy.ts");
      const store = new NixcasStore(services);
      const closure = await closureOf(store, roots, inv.options.recursive ?? false);
      const sizes = inv.options.closureSize ? await closureSizes(store, closure) : null;
      const rows: Record<string, unknown>[] = [];
      for (
        const p of [...closure].sort((a, b) => a.storePath.absolute < b.storePath.absolute ? -1 : 1)
      ) {
        const info = await lookup(services, p.storePath);
        const j = pathInfoJson(p.storePath, info);
        if (sizes) j.closureSize = sizes.get(p.storePath.toString());
        rows.push(j);
      }
      if (inv.options.json) return await printLine(JSON.stringify(rows));
      const lines: string[] = [];
      for (const j of rows) {
        const node = j.node as Record<string, unknown>;
        if (lines.length) lines.push("");
        lines.push(
          `store path:   ${j.path}`,
          `nar size:     ${j.narSize}`,
          ...(sizes ? [`closure size: ${j.closureSize}`] : []),
          `nar hash:     ${j.narHash}`,
          `references:   ${(j.references as string[]).join(" ") || "(none)"}`,
          ...(j.deriver ? [`deriver:      ${j.deriver}`] : []),
          ...(j.ca ? [`ca:           ${j.ca}`] : []),
          ...((j.signatures as string[] | undefined) ?? []).map((s) => `signature:    ${s}`),
          `node:         ${node.type}${node.digest ? ` ${node.digest}` : ""}${
            node.size !== undefined ? ` size=${node.size}` : ""
          }${node.executable ? " executable" : ""}${
            node.target !== undefined ? ` -> ${node.target}` : ""
          }`,
        );
      }
      await printLine(lines.join("\n"));
    }),
  },
  {
    name: "nar",
    description: "Write the NAR serialisation of a store path to stdout (as `nix-store --dump`).",
    arguments: [STORE_PATH_ARG],
    options: SERVICE_ADDR_OPTIONS,
    run: withServices(async (services, inv) => {
      const arg = inv.args.storePath as string;
      const { storePath, subpath } = parseTarget(arg);
      if (subpath.length) {
        throw new CliError(`${arg}: nar takes a store path, not a path inside one`);
      }
      const info = await lookup(services, storePath);
      // Native BLAKE3 pays for its loading (≈14 ms, on the thread pool, not waited for: files
      // are hashed in WebAssembly until it is there) on big NARs, and a worker thread checking
      // small files (≈15–50 ms of this thread to start) on bigger ones.
      const narSize = Number(info.narinfo?.narSize ?? 0);
      let worker: LlvmBlake3Worker | null = null;
      let done = false;
      let checker: BatchChecker | undefined;
      if (narSize >= NATIVE_HASH_FROM) {
        enableNativeBlake3();
        if (narSize >= WORKER_FROM) {
          // Started with the first batch of small files once native BLAKE3 is there (a NAR of
          // one big file needs none); until then batches are checked on this thread.
          const notYet = Promise.reject(new Error("no BLAKE3 worker yet"));
          notYet.catch(() => {});
          const started = () => {
            if (!worker && !done && nativeBlake3()) worker = startLlvmBlake3Worker();
            return worker;
          };
          checker = {
            check: (...a) => started()?.check(...a) ?? notYet,
            readAndCheck: (...a) => started()?.readAndCheck(...a) ?? notYet,
          };
        }
      }
      try {
        await streamNar(
          fromNodeMessage(info.node),
          services.blobs,
          services.directories,
          writeStdoutParts,
          { recycle: true, checker },
        );
      } finally {
        done = true;
        (worker as LlvmBlake3Worker | null)?.close();
      }
    }),
  },
  {
    name: "ls",
    description:
      "List a directory of a store path (or show one file or symlink), like `nix store ls -l`.",
    arguments: [["<path>", "/nix/store/<hash>-<name>[/sub/path]"]],
    options: SERVICE_ADDR_OPTIONS,
    run: withServices(async (services, inv) => {
      const { node } = await resolve(services, inv.args.path as string);
      if (node.case !== "directory") return await writeStdout(lsLine(node));
      const dir = await services.directories.get(B3Digest.fromBytes(node.value.digest));
      if (!dir) {
        throw new NotFoundError(`directory ${B3Digest.fromBytes(node.value.digest)} is missing`);
      }
      for (const child of directoryNodes(dir)) await writeStdout(lsLine(child));
    }),
  },
  {
    name: "cat",
    description: "Write the contents of a file in a store path to stdout.",
    arguments: [["<path>", "/nix/store/<hash>-<name>[/sub/path] naming a file"]],
    options: SERVICE_ADDR_OPTIONS,
    run: withServices(async (services, inv) => {
      const { node, shown } = await resolve(services, inv.args.path as string);
      if (node.case !== "file") throw new CliError(`${shown} is a ${node.case}, not a file`);
      const digest = B3Digest.fromBytes(node.value.digest);
      // As for `nar`: native BLAKE3 checks a big file's chunks faster, once it has loaded.
      if (node.value.size >= NATIVE_HASH_FROM) enableNativeBlake3();
      const r = await openVerifiedRead(services.blobs, digest);
      if (!r) throw new NotFoundError(`blob ${digest} of ${shown} is missing`);
      try {
        if (r.readInto && node.value.size > CAT_PIECE) await catInto(r, node.value.size, shown);
        else for await (const chunk of r.chunks()) await writeStdout(chunk);
      } finally {
        await r.close();
      }
    }),
  },
  {
    name: "list",
    description: "Print every store path in the store, one per line.",
    options: SERVICE_ADDR_OPTIONS,
    run: withServices(async (services) => {
      for await (const info of services.pathInfos.list()) {
        const root = fromNodeMessage(info.node);
        await writeStdout(enc.encode(STORE_DIR_WITH_SLASH));
        await writeStdout(root.value.name);
        await writeStdout(enc.encode("\n"));
      }
    }),
  },
];

// `cat` of a big file: reads of this size into two buffers in turn, one read while the other is
// written (fresh arrays for each piece cost more than the read: the kernel zeroes their pages).
const CAT_PIECE = 4 << 20;

/** Writes a big file's `size` bytes to stdout, checked as they are read into its buffers. */
async function catInto(r: BlobReader, size: number, shown: string): Promise<void> {
  const bufs = [new Uint8Array(CAT_PIECE), new Uint8Array(CAT_PIECE)];
  const read = (at: number, k: number) =>
    r.readInto!(at, bufs[k % 2].subarray(0, Math.min(CAT_PIECE, size - at)));
  let reading = read(0, 0);
  for (let at = 0, k = 0; at < size; k++) {
    const n = await reading;
    if (n === 0) throw new CliError(`${shown} ends after ${at} of its ${size} bytes`);
    const next = at + n;
    if (next < size) {
      reading = read(next, k + 1);
      reading.catch(() => {}); // awaited next time round
    }
    await writeStdout(bufs[k % 2].subarray(0, n));
    at = next;
  }
}

function lsLine(node: AnyNode): Uint8Array {
  const [mode, size] = node.case === "directory"
    ? ["dr-xr-xr-x", 0]
    : node.case === "file"
    ? [node.value.executable ? "-r-xr-xr-x" : "-r--r--r--", node.value.size]
    : ["lrwxrwxrwx", 0];
  const parts = [enc.encode(`${mode} ${String(size).padStart(12)} `), node.value.name];
  if (node.case === "symlink") parts.push(enc.encode(" -> "), node.value.target);
  parts.push(enc.encode("\n"));
  return concat(parts);
}
