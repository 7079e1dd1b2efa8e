/** The path info conformance suite on every backend of the registry (backends.ts). */
import { BACKENDS, warmUp } from "./backends.ts";
import { pathInfoServiceSuite } from "./path_info.ts";

await warmUp(BACKENDS);
for (const backend of BACKENDS) pathInfoServiceSuite(backend);
