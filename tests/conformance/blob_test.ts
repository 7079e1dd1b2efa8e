/** The blob conformance suite on every backend of the registry (backends.ts). */
import { BACKENDS, warmUp } from "./backends.ts";
import { blobServiceSuite } from "./blob.ts";

await warmUp(BACKENDS);
for (const backend of BACKENDS) blobServiceSuite(backend);
