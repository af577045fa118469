// A real `sandstep serve` (the release binary) with an API token and a
// secrets key, for the tests of one file, and the Rust example guests.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../../..");
export const GUESTS = process.env.SANDSTEP_TEST_GUESTS ?? join(ROOT, "target/guests/rust");
// The workflows both clients' tests apply.
const TESTDATA = join(ROOT, "clients/testdata");

/** `sandstep serve` on a data directory and address that outlive a restart. */
export class Serve {
  constructor() {
    this.data = mkdtempSync(join(tmpdir(), "sandstep-ts-"));
    this.listen = "127.0.0.1:0";
    this.token = `ts-${randomBytes(12).toString("hex")}`;
    this.key = randomBytes(32).toString("hex");
  }

  async start() {
    const binary = process.env.SANDSTEP_BIN ?? join(ROOT, "target/release/sandstep");
    const env = { ...process.env, SANDSTEP_API_TOKENS: `client-tests:${this.token}`, SANDSTEP_SECRETS_KEY: this.key };
    delete env.SANDSTEP_URL;
    delete env.SANDSTEP_DATABASE_URL;
    const args = ["serve", "--data-dir", this.data, "--listen", this.listen, "--allow-unsigned-webhooks"];
    this.child = spawn(binary, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    // The server says where it listens on stderr, first.
    const lines = createInterface({ input: this.child.stderr });
    const first = await new Promise((resolve, reject) => {
      lines.once("line", resolve);
      this.child.once("exit", (code) => reject(new Error(`sandstep serve exited with ${code}`)));
    });
    if (!first.startsWith("sandstep listening on ")) throw new Error(`unexpected first line: ${first}`);
    lines.on("line", () => {});
    this.url = first.slice("sandstep listening on ".length).trim();
    this.listen = this.url.replace("http://", "");
    return this;
  }

  async stop() {
    if (!this.child) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGTERM");
    await exited;
    this.child = undefined;
  }

  async remove() {
    await this.stop();
    rmSync(this.data, { recursive: true, force: true });
  }
}

export function startServer() {
  return new Serve().start();
}

export const GREET = readFileSync(join(TESTDATA, "greet.yaml"), "utf8");

export const APPROVAL = readFileSync(join(TESTDATA, "approval.yaml"), "utf8");

export const BROKEN = readFileSync(join(TESTDATA, "broken.yaml"), "utf8");
