/** The directory conformance suite on every backend of the registry (backends.ts). */
import { BACKENDS, warmUp } from "./backends.ts";
import { directoryServiceSuite } from "./directory.ts";

await warmUp(BACKENDS);
for (const backend of BACKENDS) directoryServiceSuite(backend);
