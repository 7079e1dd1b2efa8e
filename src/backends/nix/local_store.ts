/**
 * A local Nix store as a copy source and destination: `local` (the machine's `/nix`) or `local?root=/dir` (a
 * chroot store, as `NIX_REMOTE` takes it). Path infos and references come from its
 * `db.sqlite`, opened read-only; contents are imported byte-exact from the store directory and
 * their NAR hash checked against the database's.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { InvalidRequestError, StorageError } from "../../base/errors.ts";
import { importPath } from "../../castore/import/mod.ts";
import { NarImportObserver } from "../../nar/hash.ts";
import { parseContentAddress } from "../../store/content_address.ts";
import type {
  CastoreServices,
  CopyDestination,
  CopySource,
  IngestedPath,
  NixPathInfo,
} from "../../store/copy.ts";
import { renderExport } from "../../store/export.ts";
import type { PathInfo } from "../../store/path_info_service.ts";
import { parsePrefixedHash } from "../../store/nix_hash.ts";
import { STORE_DIR, StorePath } from "../../store/store_path.ts";
import { fromBase64 } from "../../base/bytes.ts";

/**
 * Where a local Nix store lives, parsed from `local` or `local?root=/dir` (also a bare
 * absolute path, which Nix reads as `local?root=`). Null when `address` names no local store.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseLocalStoreAddr } from "@nixcas/nixcas/backends";
 * assert.deepEqual(parseLocalStoreAddr("local?root=/tmp/n1"), { root: "/tmp/n1" });
 * assert.deepEqual(parseLocalStoreAddr("local"), { root: "" });
 * assert.equal(parseLocalStoreAddr("file:///tmp/cache"), null);
 * ```
 */
export function parseLocalStoreAddr(address: string): { root: string } | null {
  if (address.startsWith("/")) return { root: address.replace(/\/+$/, "") };
  const m = /^local(?:\?(.*))?$/.exec(address);
  if (!m) return null;
  const params = new URLSearchParams(m[1] ?? "");
  for (const key of params.keys()) {
    if (key !== "root") {
      throw new InvalidRequestError(`${address}: unknown local store parameter ${key}`);
    }
  }
  const root = params.get("root") ?? "";
  if (root && !root.startsWith("/")) {
    throw new InvalidRequestError(`${address}: root must be an absolute path`);
  }
  return { root: root.replace(/\/+$/, "") };
}

/**
 * A local Nix store, read through its database and store directory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LocalNixStore } from "@nixcas/nixcas/backends";
 * // A store that does not exist is reported by its database path.
 * assert.throws(() => LocalNixStore.open("local?root=/nonexistent"), /db\.sqlite/);
 * ```
 */
export class LocalNixStore implements CopySource {
  /** The address it was opened by. */
  readonly name: string;
  /** The machine's own store: its paths need no signature. */
  readonly trusted = true;
  /** Where the store directory is on this machine (`<root>/nix/store`). */
  readonly realStoreDir: string;
  readonly #db: DatabaseSync;
  readonly #byPath: StatementSync;
  readonly #refs: StatementSync;

  private constructor(name: string, root: string, db: DatabaseSync) {
    this.name = name;
    this.realStoreDir = `${root}${STORE_DIR}`;
    this.#db = db;
    this.#byPath = db.prepare(
      "SELECT id, hash, deriver, narSize, sigs, ca FROM ValidPaths WHERE path = ?",
    );
    this.#refs = db.prepare(
      "SELECT v.path AS path FROM Refs r JOIN ValidPaths v ON r.reference = v.id " +
        "WHERE r.referrer = ?",
    );
  }

  /** Opens the store at `address` (see {@linkcode parseLocalStoreAddr}) read-only. */
  static open(address: string): LocalNixStore {
    const parsed = parseLocalStoreAddr(address);
    if (!parsed) throw new InvalidRequestError(`${address} is not a local Nix store address`);
    const file = `${parsed.root}/nix/var/nix/db/db.sqlite`;
    try {
      Deno.statSync(file);
    } catch (e) {
      throw new StorageError(
        `${address}: no Nix database at ${file} (${(e as Error).message})`,
        { cause: e },
      );
    }
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(file, { readOnly: true });
      db.exec("PRAGMA busy_timeout = 10000");
    } catch (e) {
      throw new StorageError(`${address}: cannot open ${file}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    return new LocalNixStore(address, parsed.root, db);
  }

  /** See {@linkcode CopySource.query}. */
  query(path: StorePath): Promise<NixPathInfo | null> {
    const row = this.#byPath.get(path.absolute) as
      | {
        id: number;
        hash: string;
        deriver: string | null;
        narSize: number | null;
        sigs: string | null;
        ca: string | null;
      }
      | undefined;
    if (!row) return Promise.resolve(null);
    const where = `${this.name}: ${path.absolute}`;
    const refs = (this.#refs.all(row.id) as { path: string }[])
      .map((r) => StorePath.parseAbsolute(r.path))
      .sort((a, b) => a.toString() < b.toString() ? -1 : 1);
    const hash = parsePrefixedHash(row.hash);
    if (hash.algo !== "sha256") {
      throw new StorageError(`${where}: NAR hash ${row.hash} is not SHA-256`);
    }
    return Promise.resolve({
      storePath: path,
      narHash: hash.digest,
      narSize: row.narSize ?? 0,
      references: refs,
      deriver: row.deriver ? StorePath.parseAbsolute(row.deriver) : undefined,
      ca: row.ca ? parseContentAddress(row.ca) : undefined,
      signatures: (row.sigs ?? "").split(" ").filter((s) => s).map((s) => {
        const colon = s.indexOf(":");
        if (colon <= 0) throw new StorageError(`${where}: malformed signature ${s}`);
        return { name: s.slice(0, colon), data: fromBase64(s.slice(colon + 1)) };
      }),
    });
  }

  /** Imports the path's files byte-exact, hashing its NAR in the same pass. */
  async ingest(info: NixPathInfo, into: CastoreServices): Promise<IngestedPath> {
    const nar = new NarImportObserver();
    const node = await importPath(
      `${this.realStoreDir}/${info.storePath}`,
      into.blobs,
      into.directories,
      { observer: nar },
    );
    return { node, ...(await nar.result()) };
  }

  /** Closes the database. */
  close(): Promise<void> {
    this.#db.close();
    return Promise.resolve();
  }
}

/**
 * A local Nix store as a copy destination, through `nix-store --import` (Nix must be
 * installed): paths are gathered as they are added and imported in one run, references first,
 * when the copy finishes. Nix registers them without a signature check, as `nix-store
 * --import` does for root.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NixStoreImporter } from "@nixcas/nixcas/backends";
 * const importer = new NixStoreImporter("local?root=/tmp/nonexistent-nixcas-example");
 * assert.equal(importer.name, "local?root=/tmp/nonexistent-nixcas-example");
 * ```
 */
export class NixStoreImporter implements CopyDestination {
  /** The address. */
  readonly name: string;
  readonly #pending: PathInfo[] = [];
  #from: CastoreServices | null = null;
  #store: LocalNixStore | null | undefined;

  /** A destination for the local store at `address` (see {@linkcode parseLocalStoreAddr}). */
  constructor(address: string) {
    if (!parseLocalStoreAddr(address)) {
      throw new InvalidRequestError(`${address} is not a local Nix store address`);
    }
    this.name = address;
  }

  /** Whether the store's database lists the path (a store not yet created has nothing). */
  async has(path: StorePath): Promise<boolean> {
    if (this.#store === undefined) {
      try {
        this.#store = LocalNixStore.open(this.name);
      } catch {
        this.#store = null;
      }
    }
    return this.#store ? (await this.#store.query(path)) !== null : false;
  }

  /** Queues the path for the import that {@linkcode NixStoreImporter.finish} runs. */
  add(info: PathInfo, from: CastoreServices): Promise<void> {
    this.#pending.push(info);
    this.#from = from;
    return Promise.resolve();
  }

  /** Runs `nix-store --import` on the queued paths. */
  async finish(): Promise<void> {
    await this.#store?.close();
    this.#store = undefined;
    if (this.#pending.length === 0 || !this.#from) return;
    const parsed = parseLocalStoreAddr(this.name)!;
    const env: Record<string, string> = {};
    if (parsed.root) env.NIX_REMOTE = `local?root=${parsed.root}`;
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("nix-store", {
        args: ["--import"],
        env,
        stdin: "piped",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      throw new InvalidRequestError(
        `${this.name}: writing into a Nix store needs nix-store (${(e as Error).message})`,
        { cause: e },
      );
    }
    const stderr = new Response(child.stderr).text();
    let fed: unknown = null;
    try {
      await ReadableStream.from(renderExport(this.#pending, this.#from)).pipeTo(child.stdin);
    } catch (e) {
      fed = e;
    }
    const status = await child.status;
    const err = (await stderr).trim();
    if (!status.success) {
      throw new StorageError(
        `${this.name}: nix-store --import failed: ${err || `exit ${status.code}`}`,
      );
    }
    if (fed) throw fed;
    this.#pending.length = 0;
  }

  /** Closes the database handle, if one was opened. */
  async close(): Promise<void> {
    await this.#store?.close();
    this.#store = undefined;
  }
}
