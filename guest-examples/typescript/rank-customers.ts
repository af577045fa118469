// rank-customers: a Sandstep step component written in TypeScript.
//
// Input:  {"orders": [{"customer": "Ada", "total": 7.5}, ...], "top": 3}
// Output: {"customers": [{"customer", "orders", "total", "share"}], "grand_total"}
//
// Groups orders by customer, ranks customers by total spent (ties by name),
// keeps the first `top` (default: all) and gives each one's share of the
// grand total in percent. Bad input fails with a non-retryable error.
// `simulate_failure: {"message", "retryable"}` fails on purpose.
import { log } from 'sandstep:step/host@0.1.0';
import type { Context, StepError } from 'sandstep:step/types@0.1.0';

interface Order {
  customer: string;
  total: number;
}

interface Ranked {
  customer: string;
  orders: number;
  total: number;
  share: number;
}

function fail(message: string, retryable = false): StepError {
  return { message, retryable };
}

function parseOrders(value: unknown): Order[] {
  if (!Array.isArray(value)) throw fail('orders must be a list');
  return value.map((order: Record<string, unknown>, i: number): Order => {
    if (typeof order?.customer !== 'string') throw fail(`orders[${i}].customer must be a string`);
    if (typeof order.total !== 'number') throw fail(`orders[${i}].total must be a number`);
    return { customer: order.customer, total: order.total };
  });
}

const cents = (amount: number): number => Math.round(amount * 100) / 100;

export function run(ctx: Context, input: string): string {
  let request: Record<string, unknown>;
  try {
    request = JSON.parse(input);
  } catch (e) {
    throw fail(`input is not JSON: ${(e as Error).message}`);
  }
  const simulate = request.simulate_failure as StepError | undefined;
  if (simulate) throw fail(String(simulate.message), simulate.retryable === true);

  const orders = parseOrders(request.orders);
  const top = request.top ?? orders.length;
  if (typeof top !== 'number' || !Number.isInteger(top) || top < 0) throw fail('top must be a whole number >= 0');

  const byCustomer = new Map<string, Ranked>();
  let grand = 0;
  for (const { customer, total } of orders) {
    const entry = byCustomer.get(customer) ?? { customer, orders: 0, total: 0, share: 0 };
    entry.orders += 1;
    entry.total = cents(entry.total + total);
    byCustomer.set(customer, entry);
    grand = cents(grand + total);
  }
  const ranked = [...byCustomer.values()]
    .sort((a, b) => b.total - a.total || a.customer.localeCompare(b.customer))
    .slice(0, top)
    .map((entry) => ({ ...entry, share: grand === 0 ? 0 : Math.round((entry.total / grand) * 1000) / 10 }));
  log('info', `attempt ${ctx.attempt}: ranked ${byCustomer.size} customers, kept ${ranked.length}`);
  return JSON.stringify({ customers: ranked, grand_total: grand });
}
