// A real `sandstep serve` (the release binary) with an API token and a
// secrets key, for the tests of one file, and the Rust example guests.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../../..");
export const GUESTS = process.env.SANDSTEP_TEST_GUESTS ?? join(ROOT, "target/guests/rust");

export async function startServer() {
  const binary = process.env.SANDSTEP_BIN ?? join(ROOT, "target/release/sandstep");
  const token = `ts-${randomBytes(12).toString("hex")}`;
  const data = mkdtempSync(join(tmpdir(), "sandstep-ts-"));
  const env = {
    ...process.env,
    SANDSTEP_API_TOKENS: `client-tests:${token}`,
    SANDSTEP_SECRETS_KEY: randomBytes(32).toString("hex"),
  };
  delete env.SANDSTEP_URL;
  delete env.SANDSTEP_DATABASE_URL;
  const child = spawn(binary, ["serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--allow-unsigned-webhooks"], {
    env,
    stdio: ["ignore", "inherit", "pipe"],
  });
  // The server says where it listens on stderr, first.
  const lines = createInterface({ input: child.stderr });
  const first = await new Promise((resolve, reject) => {
    lines.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`sandstep serve exited with ${code}`)));
  });
  if (!first.startsWith("sandstep listening on ")) throw new Error(`unexpected first line: ${first}`);
  lines.on("line", () => {});
  return {
    url: first.slice("sandstep listening on ".length).trim(),
    token,
    async stop() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
      rmSync(data, { recursive: true, force: true });
    },
  };
}

export const GREET = `
# Echoes a name back.
name: greet
inputs:
  name: { type: string, required: true }
steps:
  - id: say
    module: echo:v1
    input: { greeting: "hello {{ inputs.name }}" }
output:
  greeting: "{{ steps.say.output.greeting }}"
`;

export const APPROVAL = `
name: approval
inputs:
  ticket: { type: string, required: true }
steps:
  - id: approve
    wait:
      event: "approval.{{ inputs.ticket }}"
      timeout: 1h
  - id: thank
    needs: [approve]
    module: echo:v1
    input: { by: "{{ steps.approve.output.by }}" }
output:
  approved_by: "{{ steps.thank.output.by }}"
`;

export const BROKEN = `
name: broken
steps:
  - id: no
    module: transform
    input: { items: "not a list" }
`;
