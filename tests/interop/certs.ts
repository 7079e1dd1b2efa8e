/**
 * A throw-away CA and a server certificate for tests of `grpc+https://` (needs openssl).
 *
 * @module
 */
import { run } from "../prereq.ts";

/** A throw-away CA and a server certificate for localhost signed by it. */
export async function makeCerts(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const ssl = async (args: string[]) => {
    const r = await run("openssl", args, { cwd: dir });
    if (r.code !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
  };
  await ssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=nixcas test CA",
  ]);
  await ssl([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "srv.key",
    "-out",
    "srv.csr",
    "-subj",
    "/CN=localhost",
  ]);
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  await ssl([
    "x509",
    "-req",
    "-in",
    "srv.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "srv.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ]);
  return { ca: `${dir}/ca.pem`, cert: `${dir}/srv.pem`, key: `${dir}/srv.key` };
}
