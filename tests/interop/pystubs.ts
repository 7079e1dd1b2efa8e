/**
 * Prerequisites and stub generation for the python grpcio interop peers (Debian's
 * python3-grpcio and python3-grpc-tools under /usr/bin/python3, and b3sum for BLAKE3).
 *
 * @module
 */
import { have, ROOT } from "../prereq.ts";

/** The python that has grpcio (Debian's, not a pyenv one earlier on PATH). */
export const PYTHON = "/usr/bin/python3";

/** True when python grpcio, grpc_tools and b3sum are there; otherwise says why tests skip. */
export function havePythonGrpc(): boolean {
  if (!have("python grpcio interop", ["b3sum"], [PYTHON])) return false;
  const out = new Deno.Command(PYTHON, {
    args: ["-c", "import grpc, grpc_tools.protoc"],
    stdout: "null",
    stderr: "null",
  }).outputSync();
  return have("python grpcio interop", out.success ? [] : ["python3-grpcio/python3-grpc-tools"]);
}

/**
 * Generates the python stubs into a new temp dir: the tvix protos as they are, and the
 * reflection proto as module `refl` (a `grpc/` directory would shadow the grpcio package).
 */
export async function generateStubs(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "nixcas-pygen-" });
  await Deno.mkdir(`${dir}/src/refl`, { recursive: true });
  await Deno.copyFile(
    `${ROOT}/protos/grpc/reflection/v1/reflection.proto`,
    `${dir}/src/refl/reflection.proto`,
  );
  const gen = async (include: string, files: string[]) => {
    const out = await new Deno.Command(PYTHON, {
      args: [
        "-m",
        "grpc_tools.protoc",
        `-I${include}`,
        `--python_out=${dir}`,
        `--grpc_python_out=${dir}`,
        ...files,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(`protoc: ${new TextDecoder().decode(out.stderr)}`);
  };
  await gen(`${ROOT}/protos`, [
    "tvix/castore/protos/castore.proto",
    "tvix/castore/protos/rpc_blobstore.proto",
    "tvix/castore/protos/rpc_directory.proto",
    "tvix/store/protos/pathinfo.proto",
    "tvix/store/protos/rpc_pathinfo.proto",
  ]);
  await gen(`${dir}/src`, ["refl/reflection.proto"]);
  return dir;
}

/** Directory of the python scripts. */
export const INTEROP_DIR = new URL(".", import.meta.url).pathname;

/** Starts pyserver.py; returns its grpc+ URL and a stopper. */
export async function startPyServer(
  stubs: string,
  listen: string,
  extra: string[] = [],
): Promise<{ url: string; address: string; stop: () => Promise<void> }> {
  const child = new Deno.Command(PYTHON, {
    args: [`${INTEROP_DIR}/pyserver.py`, listen, ...extra],
    env: { PYGEN: stubs, PYTHONPATH: INTEROP_DIR },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  let m: RegExpExecArray | null = null;
  while (!m) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
    m = /listening (\S+)/.exec(out);
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
  };
  if (!m) {
    await stop();
    throw new Error(`pyserver did not start: ${out}`);
  }
  const address = m[1];
  const url = address.startsWith("unix:")
    ? `grpc+unix://${address.replace(/^unix:(\/\/)?/, "")}`
    : `grpc+http://${address}`;
  return { url, address, stop };
}
