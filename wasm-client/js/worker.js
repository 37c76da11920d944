// The Web Worker the package's HiClient runs its model in by default (see host.js).
import { host } from "./host.js";

const handle = host((msg) => self.postMessage(msg));
self.onmessage = (event) => handle(event.data);
