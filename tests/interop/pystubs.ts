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
