/**
 * Token files of `--auth-token-file` (daemon, serve) and of gRPC addresses: apart from the gRPC
 * client so that the CLI reads them without loading the client at startup.
 *
 * @module
 */
import { InvalidRequestError } from "../../base/errors.ts";

/**
 * Reads a token file: each non-empty line is a token (surrounding white space dropped). Throws
 * an error naming the file when it cannot be read or holds no token.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readAuthTokens } from "./auth_tokens.ts";
 * const file = await Deno.makeTempFile();
 * await Deno.writeTextFile(file, "  first \n\nsecond\n");
 * assert.deepEqual(readAuthTokens(file), ["first", "second"]);
 * ```
 */
export function readAuthTokens(path: string): string[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    throw new InvalidRequestError(`cannot read the token file ${path}: ${(e as Error).message}`);
  }
  const tokens = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  if (tokens.length === 0) throw new InvalidRequestError(`token file ${path} holds no token`);
  for (const t of tokens) {
    if (/\s/.test(t)) throw new InvalidRequestError(`token file ${path}: a token has white space`);
  }
  return tokens;
}
