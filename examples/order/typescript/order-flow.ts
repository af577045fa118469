// The order workflow as code, in TypeScript: validate the order, charge it,
// ask for an approval above 1,000, ship every item in parallel, notify the
// customer. The same workflow as examples/order/flow (Rust) and
// examples/order/python.
import { Failure, workflow } from './sandstep-workflow.js';

const STEPS = 'order-steps:v1';

interface Order {
  order_id: string;
  customer: string;
  amount: number;
  items: string[];
}

interface Charge {
  charge_id: string;
}

interface Shipment {
  item: string;
  tracking: string;
}

export const run = workflow(async (order: Order, ctx) => {
  await ctx.step('validate', STEPS, { op: 'validate', order });
  const charge = await ctx.step<Charge>('charge', STEPS, { op: 'charge', order }, { retry: { max_attempts: 3 } });
  let approvedBy: string | null = null;
  if (order.amount > 1000) {
    const approval = await ctx.waitForEvent<{ approved?: boolean }>('approval', `approval.${order.order_id}`, 24 * 3600 * 1000);
    if (!approval.data.approved) throw Failure.error(`order ${order.order_id} was not approved`);
    approvedBy = approval.id;
  }
  const shipped = await Promise.all(
    order.items.map((item, i) =>
      ctx.step<Shipment>(`ship-${i}`, STEPS, { op: 'ship', order_id: order.order_id, item }),
    ),
  );
  await ctx.step('notify', STEPS, { op: 'notify', customer: order.customer, shipped: shipped.length });
  return { order_id: order.order_id, charge: charge.charge_id, approval_event: approvedBy, shipped };
});
