import type { RunEvent } from "./types.js";

/** Server-Sent Events from a response body: a run event per `data:` block. */
export async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<RunEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data: string[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        let line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length > 0) yield JSON.parse(data.join("\n")) as RunEvent;
          data = [];
        } else if (line.startsWith("data:")) {
          const value = line.slice(5);
          data.push(value.startsWith(" ") ? value.slice(1) : value);
        }
        // id:, event: and comments (keep-alives) carry nothing the data does not.
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}
