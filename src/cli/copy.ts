/**
 * Exchanging closures with Nix: `copy`, `export`, `sign`.
 *
 * @module
 */
import type { CommandSpec, OptionSpec } from "./args.ts";
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
  action,
  CliError,
  loggerFor,
  openServices,
  SERVICE_ADDR_OPTIONS,
  type ServiceAddrOptions,
  type Services,
} from "./common.ts";
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

const TRUSTED_KEYS_OPTION: OptionSpec = {
  flags: "--trusted-public-keys <keys>",
  description:
    "space-separated public keys (name:base64, as `nix-store --generate-binary-cache-key` writes them) whose signatures make a path from a binary cache acceptable",
  env: "NIXCAS_TRUSTED_PUBLIC_KEYS",
};

interface CopyOptions extends ServiceAddrOptions {
  from?: string;
  to?: string;
  noRecursive?: boolean;
  trustedPublicKeys?: string;
  noCheckSigs?: boolean;
  secretKeyFile?: string;
  quiet?: boolean;
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

/** `copy`. */
export const copyCommand: CommandSpec<CopyOptions> = {
  name: "copy",
  description:
    "Copy store paths with their closure (references first) between nixcas and Nix stores or binary caches, skipping what the target has. SRC and DST are spelled as Nix spells them: nixcas (this store, the default for the side not given), local (this machine's /nix), local?root=DIR (a chroot store), file:///DIR (a binary cache directory, read and write; when writing ?compression=xz (the default, as Nix), zstd, bzip2 or none, and ?secret-key=FILE) and http(s)://HOST/PATH (a binary cache server, read). Every NAR is checked against its hash and size; paths from binary caches need a signature by a trusted key or a valid content address.",
  arguments: [["<path...>", "store paths (/nix/store/<hash>-<name> or the basename)"]],
  options: [
    { flags: "--from <src>", description: "where the paths are (default nixcas)" },
    { flags: "--to <dst>", description: "where they go (default nixcas)" },
    { flags: "--no-recursive", description: "copy only the paths named, not their closure" },
    TRUSTED_KEYS_OPTION,
    {
      flags: "--no-check-sigs",
      description: "take paths from binary caches without checking signatures",
    },
    {
      flags: "--secret-key-file <file>",
      description: "sign each path written to a binary cache with this key (as `?secret-key=`)",
    },
    { flags: "-q, --quiet", description: "no progress lines on stderr" },
    ...SERVICE_ADDR_OPTIONS,
  ],
  run: action(async (inv) => {
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
  }),
};

/** `export`. */
export const exportCommand: CommandSpec<ServiceAddrOptions & { recursive?: boolean }> = {
  name: "export",
  description:
    "Write store paths to stdout in the `nix-store --export` format, so that `nixcas export -r P | nix-store --import` loads them into a Nix store. With -r, the closure, references first.",
  arguments: [["<path...>", "store paths"]],
  options: [
    { flags: "-r, --recursive", description: "export the closure of the paths" },
    ...SERVICE_ADDR_OPTIONS,
  ],
  run: action(async (inv) => {
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
  }),
};

/** `sign`. */
export const signCommand: CommandSpec<
  ServiceAddrOptions & { keyFile: string; recursive?: boolean }
> = {
  name: "sign",
  description:
    "Sign store paths with a Nix secret key (as `nix-store --generate-binary-cache-key` writes it); the signature is kept with the path and written to binary caches.",
  arguments: [["<path...>", "store paths"]],
  options: [
    { flags: "--key-file <file>", description: "the secret key file (required)" },
    { flags: "-r, --recursive", description: "sign the closure of the paths" },
    ...SERVICE_ADDR_OPTIONS,
  ],
  run: action(async (inv) => {
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
  }),
};
