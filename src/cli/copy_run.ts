/**
 * What `copy`, `export` and `sign` do, loaded when one of them runs (their specs are in
 * `copy.ts`).
 *
 * @module
 */
import type { Invocation } from "./args.ts";
import { BinaryCache, isBinaryCacheAddr } from "../backends/nix/binary_cache.ts";
import { InvalidRequestError, NotFoundError } from "../base/errors.ts";
import {
  LocalNixStore,
  NixStoreImporter,
  parseLocalStoreAddr,
} from "../backends/nix/local_store.ts";
import {
  closureOf,
  type CopyDestination,
  copyPaths,
  type CopySource,
  NixcasStore,
  trustedSignatureCheck,
} from "../store/copy.ts";
import { renderExport } from "../store/export.ts";
import { parseTrustedPublicKeys, SigningKey, signPathInfo } from "../store/signature.ts";
import { StorePath } from "../store/store_path.ts";
import {
  CliError,
  loggerFor,
  openServices,
  type ServiceAddrOptions,
  type Services,
} from "./common.ts";
import type { CopyOptions } from "./copy.ts";
import { writeStdout } from "./io.ts";

/** Parses `/nix/store/<base>` or `<base>`. */
export function parseStorePathArg(arg: string): StorePath {
  return arg.startsWith("/")
    ? StorePath.parseAbsolute(arg.replace(/\/+$/, ""))
    : StorePath.parse(arg);
}

interface Endpoint {
  source: CopySource;
  destination: CopyDestination;
  close(): Promise<void>;
}

/** Opens SRC or DST of `copy`: `nixcas` (the services), `local[?root=…]`, or a binary cache. */
async function openEndpoint(
  addr: string | undefined,
  services: Services,
  opts: { secretKeyFile?: string },
): Promise<Endpoint> {
  if (addr === undefined || addr === "nixcas") {
    const store = new NixcasStore(services);
    return { source: store, destination: store, close: () => Promise.resolve() };
  }
  if (parseLocalStoreAddr(addr)) {
    let store: LocalNixStore | null = null;
    const source: CopySource = {
      name: addr,
      trusted: true,
      query: (p) => (store ??= LocalNixStore.open(addr)).query(p),
      ingest: (i, into) => (store ??= LocalNixStore.open(addr)).ingest(i, into),
    };
    const importer = new NixStoreImporter(addr);
    return {
      source,
      destination: importer,
      close: async () => {
        await store?.close();
        await importer.close();
      },
    };
  }
  if (isBinaryCacheAddr(addr)) {
    const keyFile = opts.secretKeyFile ?? new URL(addr).searchParams.get("secret-key");
    // A bad key is reported before any work.
    const signingKey = keyFile ? await SigningKey.readFile(keyFile) : undefined;
    const cache = BinaryCache.open(addr, { signingKey });
    return { source: cache, destination: cache, close: () => Promise.resolve() };
  }
  throw new InvalidRequestError(
    `${addr}: not a store address (nixcas, local, local?root=DIR, file:///DIR, http(s)://HOST/PATH)`,
  );
}

/** A size for progress lines, in B, KiB, MiB, GiB or TiB. */
function size(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

/** Runs `copy`. */
export async function runCopy(inv: Invocation<CopyOptions>): Promise<void> {
  const opts = inv.options;
  const log = loggerFor(inv);
  const paths = (inv.args.path as string[]).map(parseStorePathArg);
  if (opts.from !== undefined && opts.from === opts.to) {
    throw new CliError(`--from and --to are both ${opts.from}`);
  }
  const keys = parseTrustedPublicKeys(opts.trustedPublicKeys ?? "");
  const services = await openServices(opts);
  const endpoints: Endpoint[] = [];
  try {
    const src = await openEndpoint(opts.from, services, {});
    endpoints.push(src);
    const dst = await openEndpoint(opts.to, services, opts);
    endpoints.push(dst);
    const report = await copyPaths(src.source, dst.destination, paths, {
      castore: services,
      recursive: !opts.noRecursive,
      check: opts.noCheckSigs
        ? undefined
        : trustedSignatureCheck(keys, "pass --trusted-public-keys or --no-check-sigs"),
      onProgress: (e) => {
        if (!opts.quiet && e.action === "copied") {
          log.info(`copied ${e.path} (${e.done}/${e.total}, ${size(e.narSize)})`);
        }
      },
    });
    if (!opts.quiet) {
      log.info(
        `${report.copied} paths copied (${
          size(report.narBytes)
        }), ${report.skipped} already in ${dst.destination.name}`,
      );
    }
  } finally {
    for (const e of endpoints.reverse()) await e.close();
    await services.close();
  }
}

/** Runs `export`. */
export async function runExport(
  inv: Invocation<ServiceAddrOptions & { recursive?: boolean }>,
): Promise<void> {
  const paths = (inv.args.path as string[]).map(parseStorePathArg);
  const services = await openServices(inv.options, { readOnly: true });
  try {
    const store = new NixcasStore(services);
    const closure = await closureOf(store, paths, inv.options.recursive ?? false);
    const infos = async function* () {
      for (const p of closure) {
        const info = await services.pathInfos.get(p.storePath.digest);
        if (!info) throw new NotFoundError(`${p.storePath.absolute} is not in the store`);
        yield info;
      }
    };
    for await (const bytes of renderExport(infos(), services)) await writeStdout(bytes);
  } finally {
    await services.close();
  }
}

/** Runs `sign`. */
export async function runSign(
  inv: Invocation<ServiceAddrOptions & { keyFile: string; recursive?: boolean }>,
): Promise<void> {
  if (!inv.options.keyFile) throw new CliError("sign: --key-file is required");
  const key = await SigningKey.readFile(inv.options.keyFile);
  const paths = (inv.args.path as string[]).map(parseStorePathArg);
  const services = await openServices(inv.options);
  try {
    const closure = await closureOf(
      new NixcasStore(services),
      paths,
      inv.options.recursive ?? false,
    );
    for (const p of closure) {
      const info = (await services.pathInfos.get(p.storePath.digest))!;
      await services.pathInfos.put(await signPathInfo(info, key));
    }
  } finally {
    await services.close();
  }
}
