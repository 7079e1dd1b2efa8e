/**
 * `nixcas serve`: the store as a Nix binary cache over HTTP until SIGINT/SIGTERM.
 *
 * @module
 */
import type { CommandSpec } from "./args.ts";
import { readAuthTokens } from "../backends/grpc/auth_tokens.ts";
import { nixcasDir } from "../backends/open.ts";
import {
  action,
  CliError,
  loggerFor,
  openServices,
  parseIntAtLeast,
  SERVICE_ADDR_OPTIONS,
  type ServiceAddrOptions,
} from "./common.ts";
import { enableNativeBlake3 } from "../hash/blake3_native.ts";

/** The address `serve` listens on unless told otherwise. */
export const DEFAULT_SERVE_ADDRESS = "127.0.0.1:8080";

/** Options of `serve`. */
export interface ServeOptions extends ServiceAddrOptions {
  /** `--listen <addr>`. */
  listen: string;
  /** `--priority <n>`. */
  priority: number;
  /** `--secret-key-file <file>`. */
  secretKeyFile?: string;
  /** `--read-only`. */
  readOnly?: boolean;
  /** `--auth-token-file <file>`. */
  authTokenFile?: string;
  /** `--auth-reads`. */
  authReads?: boolean;
  /** `--log-dir <dir>`. */
  logDir?: string;
}

/** `host:port`, `[v6]:port` or `unix:/path`. */
function parseListen(addr: string): Deno.ServeTcpOptions | Deno.ServeUnixOptions {
  if (addr.startsWith("unix:")) {
    const path = addr.slice(5);
    if (!path.startsWith("/")) {
      throw new CliError(`--listen ${addr}: the socket path must be absolute`, 2);
    }
    return { transport: "unix", path };
  }
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(addr);
  if (!m || Number(m[3]) > 65535) {
    throw new CliError(`--listen ${addr}: want host:port, [v6]:port or unix:/path`, 2);
  }
  return { hostname: m[1] ?? m[2], port: Number(m[3]) };
}

/** `serve`. */
export const serveCommand: CommandSpec<ServeOptions> = {
  name: "serve",
  description: "Serve the store as a Nix binary cache over HTTP/1.1 until SIGINT or SIGTERM: " +
    "`nix copy --to` pushes to it (NARs compressed with xz, zstd, bzip2 or none, checked " +
    "against their narinfo and stored file by file), `nix copy --from` and substituters read " +
    "from it (NARs rendered from verified data; Range requests, .ls listings, build logs).",
  options: [
    {
      flags: "-l, --listen <addr>",
      description: "host:port, [v6]:port or unix:/abs/path (listening beyond loopback is your " +
        "choice)",
      default: DEFAULT_SERVE_ADDRESS,
    },
    {
      flags: "--priority <n>",
      description: "Priority in nix-cache-info (lower is tried first; cache.nixos.org is 40)",
      parse: parseIntAtLeast(0),
      default: 30,
    },
    {
      flags: "--secret-key-file <file>",
      description: "sign every narinfo served with this key (as `nix-store " +
        "--generate-binary-cache-key` writes it), beside the signatures stored",
    },
    { flags: "--read-only", description: "refuse every upload (403)" },
    {
      flags: "--auth-token-file <file>",
      description: "uploads need one of the tokens in this file (one per line), sent as " +
        "`Authorization: Bearer <token>` or as the password of Basic auth (what Nix sends " +
        "from a netrc file); 401 otherwise",
    },
    { flags: "--auth-reads", description: "reads need a token too (all but /health)" },
    {
      flags: "--log-dir <dir>",
      description: "where build logs (log/<drv>) are kept (default: $NIXCAS_DIR/logs)",
    },
    ...SERVICE_ADDR_OPTIONS,
  ],
  run: action(async (inv) => {
    const opts = inv.options;
    const log = loggerFor(inv);
    const listen = parseListen(opts.listen);
    if (opts.authReads && !opts.authTokenFile) {
      throw new CliError("--auth-reads needs --auth-token-file", 2);
    }
    let authTokens: string[] | undefined;
    if (opts.authTokenFile) {
      try {
        authTokens = readAuthTokens(opts.authTokenFile);
      } catch (e) {
        throw new CliError(`--auth-token-file: ${(e as Error).message}`, 2);
      }
    }
    const signingKey = opts.secretKeyFile
      ? await (await import("../store/signature.ts")).SigningKey.readFile(opts.secretKeyFile)
      : undefined;
    const { binaryCacheHandler } = await import("../http/binary_cache.ts");
    const services = await openServices(opts, { readServer: true });
    Deno.mkdirSync(nixcasDir(), { recursive: true });
    try {
      // A server checks every chunk it hands out: native BLAKE3 hashes ≈2.5x faster. Loaded
      // (≈20–70 ms) before the first request, so that the first reads get it too.
      await enableNativeBlake3();
      const handler = binaryCacheHandler({
        ...services,
        priority: opts.priority,
        signingKey,
        readOnly: opts.readOnly,
        authTokens,
        authenticateReads: opts.authReads,
        logDir: opts.logDir ?? `${nixcasDir()}/logs`,
        uploadUrlsFile: `${nixcasDir()}/serve-upload-urls.db`,
        onError: (m) => log.warn(m),
      });
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      Deno.addSignalListener("SIGINT", onSignal);
      Deno.addSignalListener("SIGTERM", onSignal);
      let server: Deno.HttpServer<Deno.NetAddr> | Deno.HttpServer<Deno.UnixAddr>;
      try {
        const common = {
          signal: stop.signal,
          onError: (e: unknown) => {
            log.warn(`serve: ${(e as Error).message}`);
            return new Response("internal error\n", { status: 500 });
          },
        };
        const say = (text: string) => log.info(`listening ${text}`, { address: text });
        server = "path" in listen
          ? Deno.serve({ ...common, ...listen, onListen: (a) => say(`unix:${a.path}`) }, handler)
          : Deno.serve({
            ...common,
            ...listen,
            onListen: (a) =>
              say(`http://${a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname}:${a.port}`),
          }, handler);
      } catch (e) {
        throw new CliError(`--listen ${opts.listen}: ${(e as Error).message}`);
      }
      await server.finished;
      Deno.removeSignalListener("SIGINT", onSignal);
      Deno.removeSignalListener("SIGTERM", onSignal);
      log.info("stopped");
    } finally {
      await services.close();
    }
  }),
};
