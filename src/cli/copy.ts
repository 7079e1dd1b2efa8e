/**
 * Exchanging closures with Nix: `copy`, `export`, `sign`.
 *
 * @module
 */
import type { CommandSpec, OptionSpec } from "./args.ts";
import { action, SERVICE_ADDR_OPTIONS, type ServiceAddrOptions } from "./common.ts";

const TRUSTED_KEYS_OPTION: OptionSpec = {
  flags: "--trusted-public-keys <keys>",
  description:
    "space-separated public keys (name:base64, as `nix-store --generate-binary-cache-key` writes them) whose signatures make a path from a binary cache acceptable",
  env: "NIXCAS_TRUSTED_PUBLIC_KEYS",
};

export interface CopyOptions extends ServiceAddrOptions {
  from?: string;
  to?: string;
  noRecursive?: boolean;
  trustedPublicKeys?: string;
  noCheckSigs?: boolean;
  secretKeyFile?: string;
  quiet?: boolean;
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
  // The work loads when the command runs: the modules it needs are no start-up cost to others.
  run: action(async (inv) => (await import("./copy_run.ts")).runCopy(inv)),
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
  // The work loads when the command runs: the modules it needs are no start-up cost to others.
  run: action(async (inv) => (await import("./copy_run.ts")).runExport(inv)),
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
  // The work loads when the command runs: the modules it needs are no start-up cost to others.
  run: action(async (inv) => (await import("./copy_run.ts")).runSign(inv)),
};
