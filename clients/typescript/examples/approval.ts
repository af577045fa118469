// Start the approval example, watch it wait, approve it, and print its output.
//
//   SANDSTEP_URL=http://127.0.0.1:8080 node approval.js T-1   (compiled; from the repository root)
//
// Needs a server with the Rust example guests pushed as `wordcount` and
// `hello` and examples/approval.yaml applied (see the README's tour).
import { ProblemError, Sandstep } from "sandstep";

const ticket = process.argv[2] ?? "T-1";
const sandstep = new Sandstep();
try {
  await sandstep.workflows.apply("examples/approval.yaml");
  const run = await sandstep.runs.start("approval", { ticket, text: "the cat and the dog" });
  for await (const event of sandstep.runs.follow(run.id)) {
    console.log(event.seq, event.type, event.step ?? "");
    if (event.type === "step.waiting") {
      await sandstep.events.send(`approval.${ticket}`, { approved: true, by: "Ada" });
    }
  }
  console.log((await sandstep.runs.get(run.id)).output);
} catch (error) {
  if (error instanceof ProblemError) console.error(error.status, error.kind, error.detail, error.errors);
  throw error;
}
