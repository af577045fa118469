// filter-orders: a Sandstep step component written in JavaScript.
//
// Input:  {"orders": [{"id", "customer", "items": [{"sku", "qty", "price"}]}],
//          "min_total": 0}
// Output: {"orders": [{"id", "customer", "total", "items"}], "dropped": [ids]}
//
// Orders whose total (sum of qty * price, in cents-exact arithmetic) is below
// min_total are dropped. Bad input fails with a non-retryable error naming
// what is wrong. `simulate_failure: {"message", "retryable"}` fails on
// purpose, to try a workflow's retry policy.
import { log } from 'sandstep:step/host@0.1.0';

class StepError {
  constructor(message, retryable) {
    this.message = message;
    this.retryable = retryable;
  }
}

function invalid(message) {
  return new StepError(message, false);
}

function orderTotal(order, at) {
  if (!Array.isArray(order.items)) throw invalid(`${at}.items must be a list`);
  let cents = 0;
  order.items.forEach((item, i) => {
    const { qty, price } = item;
    if (!Number.isInteger(qty) || qty < 0) throw invalid(`${at}.items[${i}].qty must be a whole number >= 0`);
    if (typeof price !== 'number' || price < 0) throw invalid(`${at}.items[${i}].price must be a number >= 0`);
    cents += qty * Math.round(price * 100);
  });
  return cents / 100;
}

export function run(ctx, input) {
  let request;
  try {
    request = JSON.parse(input);
  } catch (e) {
    throw invalid(`input is not JSON: ${e.message}`);
  }
  if (request.simulate_failure) {
    const { message, retryable } = request.simulate_failure;
    throw new StepError(String(message), retryable === true);
  }
  if (!Array.isArray(request.orders)) throw invalid('orders must be a list');
  const minTotal = request.min_total ?? 0;
  if (typeof minTotal !== 'number') throw invalid('min_total must be a number');

  const kept = [];
  const dropped = [];
  request.orders.forEach((order, i) => {
    const at = `orders[${i}]`;
    if (typeof order.id !== 'string') throw invalid(`${at}.id must be a string`);
    if (typeof order.customer !== 'string') throw invalid(`${at}.customer must be a string`);
    const total = orderTotal(order, at);
    if (total < minTotal) {
      dropped.push(order.id);
    } else {
      kept.push({ id: order.id, customer: order.customer.trim(), total, items: order.items.length });
    }
  });
  log('info', `attempt ${ctx.attempt}: kept ${kept.length} of ${request.orders.length} orders (min_total ${minTotal})`);
  return JSON.stringify({ orders: kept, dropped });
}
