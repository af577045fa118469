"""The order workflow as code, in Python: validate the order, charge it,
ask for an approval above 1,000, ship every item in parallel, notify the
customer. The same workflow as examples/order/flow (Rust) and
examples/order/typescript."""

from sandstep_workflow import Ctx, Failure, WitWorld, workflow  # noqa: F401 (WitWorld is the export)

STEPS = "order-steps:v1"


@workflow
def run(ctx: Ctx, order: dict) -> dict:
    ctx.step("validate", STEPS, {"op": "validate", "order": order})
    charge = ctx.step("charge", STEPS, {"op": "charge", "order": order}, retry={"max_attempts": 3})
    approved_by = None
    if order["amount"] > 1000:
        approval = ctx.wait_for_event("approval", f"approval.{order['order_id']}", timeout=24 * 3600)
        if not approval.data.get("approved"):
            raise Failure.error(f"order {order['order_id']} was not approved")
        approved_by = approval.id
    shipments = [
        ctx.submit_step(f"ship-{i}", STEPS, {"op": "ship", "order_id": order["order_id"], "item": item})
        for i, item in enumerate(order["items"])
    ]
    shipped = ctx.gather(*shipments)
    ctx.step("notify", STEPS, {"op": "notify", "customer": order["customer"], "shipped": len(shipped)})
    return {
        "order_id": order["order_id"],
        "charge": charge["charge_id"],
        "approval_event": approved_by,
        "shipped": shipped,
    }
