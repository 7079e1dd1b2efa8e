/**
 * Test helpers for the daemon: a small PathInfoService over memory (until the store layer's
 * lands), daemon subprocesses, and temp dirs.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { B3Digest } from "../../src/castore/digest.ts";
import {
  type AnyNode,
  directoryNodes,
  fromNodeMessage,
  validateNode,
} from "../../src/castore/directory.ts";
import { InvalidRequestError, NotFoundError } from "../../src/castore/errors.ts";
import type { BlobService } from "../../src/castore/blob/service.ts";
import type { DirectoryService } from "../../src/castore/directory/service.ts";
import type {
  NarCalculation,
  PathInfo,
  PathInfoService,
} from "../../src/store/path_info/service.ts";

const ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz";

/** Nix base32 of some bytes (20 bytes → 32 characters). */
export function nixbase32(h: Uint8Array): string {
  const len = Math.ceil(h.length * 8 / 5);
  let s = "";
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = b >> 3, j = b & 7;
    const c = (h[i] >> j) | (i + 1 < h.length ? h[i + 1] << (8 - j) : 0);
    s += ALPHABET[c & 31];
  }
  return s;
}

/**
 * A PathInfoService over a Map, validating what a server must reject (a root node that is not a
 * store path basename, references of the wrong length), with a real NAR calculation.
 */
export class TestPathInfoService implements PathInfoService {
  #infos = new Map<string, PathInfo>();
  constructor(private blobs: BlobService, private directories: DirectoryService) {}

  /** @inheritdoc */
  get(digest: Uint8Array): Promise<PathInfo | null> {
    return Promise.resolve(this.#infos.get(nixbase32(digest)) ?? null);
  }

  /** @inheritdoc */
  put(info: PathInfo): Promise<PathInfo> {
    const node = fromNodeMessage(info.node);
    validateNode(node);
    const name = new TextDecoder().decode(node.value.name);
    if (!/^[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+\-._?=]{1,211}$/.test(name)) {
      throw new InvalidRequestError(`root node name ${JSON.stringify(name)} is no store path`);
    }
    info.references.forEach((r, i) => {
      if (r.length !== 20) throw new InvalidRequestError(`reference ${i} has length ${r.length}`);
    });
    this.#infos.set(name.slice(0, 32), info);
    return Promise.resolve(info);
  }

  /** @inheritdoc */
  async calculateNar(node: AnyNode): Promise<NarCalculation> {
    const h = createHash("sha256");
    let size = 0;
    const enc = new TextEncoder();
    const str = (s: string | Uint8Array) => {
      const b = typeof s === "string" ? enc.encode(s) : s;
      const len = new Uint8Array(8);
      new DataView(len.buffer).setBigUint64(0, BigInt(b.length), true);
      h.update(len);
      h.update(b);
      const pad = (8 - (b.length % 8)) % 8;
      if (pad) h.update(new Uint8Array(pad));
      size += 8 + b.length + pad;
    };
    const walk = async (n: AnyNode): Promise<void> => {
      str("(");
      str("type");
      if (n.case === "symlink") {
        str("symlink");
        str("target");
        str(n.value.target);
      } else if (n.case === "file") {
        str("regular");
        if (n.value.executable) (str("executable"), str(""));
        str("contents");
        const r = await this.blobs.openRead(B3Digest.fromBytes(n.value.digest));
        if (!r) throw new NotFoundError(`blob ${B3Digest.fromBytes(n.value.digest)} not found`);
        const parts: Uint8Array[] = [];
        for await (const c of r.chunks()) parts.push(c.slice());
        await r.close();
        const total = parts.reduce((a, p) => a + p.length, 0);
        const len = new Uint8Array(8);
        new DataView(len.buffer).setBigUint64(0, BigInt(total), true);
        h.update(len);
        for (const p of parts) h.update(p);
        const pad = (8 - (total % 8)) % 8;
        if (pad) h.update(new Uint8Array(pad));
        size += 8 + total + pad;
      } else {
        str("directory");
        const d = B3Digest.fromBytes(n.value.digest);
        const dir = await this.directories.get(d);
        if (!dir) throw new NotFoundError(`directory ${d} not found`);
        for (const child of directoryNodes(dir)) {
          str("entry");
          str("(");
          str("name");
          str(child.value.name);
          str("node");
          await walk(child);
          str(")");
        }
      }
      str(")");
    };
    str("nix-archive-1");
    await walk(node);
    return { narSize: size, narSha256: new Uint8Array(h.digest()) };
  }

  /** @inheritdoc */
  async *list(): AsyncIterable<PathInfo> {
    for (const i of [...this.#infos.values()]) yield i;
  }

  /** @inheritdoc */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The PathInfoService tests serve (the store layer's memory one once it exists). */
export function testPathInfoService(
  blobs: BlobService,
  directories: DirectoryService,
): Promise<PathInfoService> {
  return Promise.resolve(new TestPathInfoService(blobs, directories));
}

/** A daemon running in its own process (tests/server/daemon_main.ts). */
export interface DaemonProcess {
  /** The address it printed. */
  address: string;
  /** The child process. */
  child: Deno.ChildProcess;
  /** Everything it wrote to stderr so far (for diagnosing a death). */
  stderr: () => string;
  /** True while it runs. */
  alive: () => boolean;
  /** Exit status once it exited. */
  status: Promise<Deno.CommandStatus>;
  /** Sends SIGTERM and waits for the exit. */
  stop: () => Promise<Deno.CommandStatus>;
}

const MAIN = new URL("./daemon_main.ts", import.meta.url).pathname;

/** Starts tests/server/daemon_main.ts listening on `listen`; resolves once it listens. */
export async function startDaemonProcess(
  listen: string,
  extraArgs: string[] = [],
): Promise<DaemonProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, listen, ...extraArgs],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let err = "";
  (async () => {
    const dec = new TextDecoder();
    for await (const c of child.stderr) err += dec.decode(c);
  })();
  let alive = true;
  const status = child.status.then((s) => {
    alive = false;
    return s;
  });
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  let address = "";
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 30_000);
  while (!address) {
    const { value, done } = await lines.read();
    if (done) break;
    out += value;
    const m = /listening (\S+)/.exec(out);
    if (m) address = m[1];
  }
  clearTimeout(timer);
  // Keep draining stdout so the child never blocks on a full pipe.
  (async () => {
    try {
      while (!(await lines.read()).done) { /* drain */ }
    } catch { /* closed */ }
  })();
  if (!address) {
    await status;
    throw new Error(`daemon did not start: ${out}\n${err}`);
  }
  return {
    address,
    child,
    stderr: () => err,
    alive: () => alive,
    status,
    stop: async () => {
      if (alive) {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
      }
      const t = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 15_000);
      const s = await status;
      clearTimeout(t);
      return s;
    },
  };
}
