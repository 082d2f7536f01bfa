// Runs the HeyGen Video Agent component from Node.js through jco: transpiles the given
// `.wasm`, creates one run and polls it once, and prints one JSON line:
//   {"created": <run>, "polled": <run>}  on success (exit 0)
//   {"error": <payload or message>}      on failure (exit 1)
//
// Usage: RUNFLOW_API_KEY=... RUNFLOW_BASE_URL=http://127.0.0.1:PORT node run.mjs <component.wasm>

import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

import { transpile } from "@bytecodealliance/jco";
import { WASIShim } from "@bytecodealliance/preview2-shim/instantiation";

const NAME = "heygen_video_agent";

// The guest sees only these variables. preview2-shim otherwise hands the guest the whole
// environment of the Node process.
function guestEnv() {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => name.startsWith("RUNFLOW_")),
  );
  // Without a base URL the component would call the real Runflow; a test harness must not.
  if (!env.RUNFLOW_BASE_URL) {
    throw new Error("RUNFLOW_BASE_URL is not set; point it at the emulator");
  }
  return env;
}

// Runs carry `durationMs` as a BigInt (WIT u64), which JSON.stringify refuses.
function toJson(value) {
  return JSON.stringify(value, (_, v) =>
    typeof v === "bigint" ? (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : String(v)) : v,
  );
}

// jco throws a `ComponentError` for a WIT `result` error; its `payload` is the `run-error`
// variant. Anything else is a trap or a bug in this script.
function describe(error) {
  if (error && Object.prototype.hasOwnProperty.call(error, "payload")) {
    return error.payload;
  }
  return { message: String(error?.stack ?? error) };
}

async function transpileTo(wasmPath, outDir) {
  const { files } = await transpile(await readFile(wasmPath), {
    name: NAME,
    // Instantiation output takes its WASI imports as an argument, so the environment can
    // be set per instance instead of through the shim's process-wide state, and the
    // generated code imports nothing that must resolve from the output directory.
    instantiation: "async",
    quiet: true,
  });
  for (const [file, contents] of Object.entries(files)) {
    const path = join(outDir, file);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, contents);
  }
}

async function main(wasmPath) {
  const env = guestEnv();
  const outDir = await mkdtemp(join(tmpdir(), "heygen-jco-"));
  try {
    await transpileTo(wasmPath, outDir);
    const { instantiate } = await import(pathToFileURL(join(outDir, `${NAME}.js`)).href);
    const shim = new WASIShim({ sandbox: { env, preopens: {} } });
    const component = await instantiate(
      async (file) => WebAssembly.compile(await readFile(join(outDir, file))),
      shim.getImportObject(),
    );
    const { runs } = component;

    const created = runs.createRun(
      {
        prompt: "A 30-second explainer about rooftop solar",
        orientation: undefined,
        avatar: undefined,
        voice: undefined,
        styleId: undefined,
        fileUrls: [],
        incognitoMode: undefined,
      },
      { callbackUrl: undefined, metadata: undefined, clientRef: undefined },
    );
    const polled = runs.pollRun(created.id);
    return { created, polled };
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}

// Exit once stdout is flushed, so that no I/O left pending in the shim can hold the process.
function finish(line, code) {
  process.stdout.write(`${line}\n`, () => process.exit(code));
}

const wasmPath = process.argv[2];
if (!wasmPath) {
  finish(toJson({ error: { message: "usage: node run.mjs <component.wasm>" } }), 2);
} else {
  main(wasmPath).then(
    (result) => finish(toJson(result), 0),
    (error) => finish(toJson({ error: describe(error) }), 1),
  );
}
