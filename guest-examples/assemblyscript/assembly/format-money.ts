// format-money: a Sandstep command written in AssemblyScript (WASI preview 1).
//
// Input on stdin:  {"amounts": [1234.5, 3.2], "currency": "EUR"}
// Output on stdout: {"formatted": ["EUR 1,234.50", "EUR 3.20"], "total": "EUR 1,237.70"}
//
// Rounds to cents and groups thousands. Bad input exits 1 after printing
// {"error": {"message", "retryable": false}} on stdout.
import { JSON } from "json-as";
import { fail, log, readStdin, writeStdout } from "./wasi";

@json
class Failure {
  message: string = "";
  retryable: bool = false;
}

@json
class Request {
  amounts: f64[] = [];
  currency: string = "";
  simulate_failure: Failure | null = null;
}

@json
class Response {
  formatted: string[] = [];
  total: string = "";
}

function format(currency: string, cents: i64): string {
  const negative = cents < 0;
  const abs = negative ? -cents : cents;
  const whole = (abs / 100).toString();
  const fraction = (abs % 100).toString().padStart(2, "0");
  let grouped = "";
  for (let i = 0; i < whole.length; i++) {
    if (i > 0 && (whole.length - i) % 3 == 0) grouped += ",";
    grouped += whole.charAt(i);
  }
  return `${currency} ${negative ? "-" : ""}${grouped}.${fraction}`;
}

export function _start(): void {
  const input = readStdin();
  const request = JSON.parse<Request>(input);
  const simulate = request.simulate_failure;
  if (simulate !== null) fail(simulate.message, simulate.retryable);
  const currency = request.currency;
  if (currency.length != 3) fail("currency must be a three-letter code such as EUR", false);

  const response = new Response();
  let total: i64 = 0;
  for (let i = 0; i < request.amounts.length; i++) {
    const amount = request.amounts[i];
    if (!isFinite(amount)) fail(`amounts[${i}] is not a finite number`, false);
    const cents = <i64>Math.round(amount * 100);
    total += cents;
    response.formatted.push(format(currency, cents));
  }
  response.total = format(currency, total);
  log(`formatted ${request.amounts.length} amounts in ${currency}`);
  writeStdout(JSON.stringify(response));
}
