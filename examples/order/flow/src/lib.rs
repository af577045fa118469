//! The order workflow as code: validate the order, charge it, ask for an
//! approval above 1,000, ship every item in parallel, notify the customer.

use std::time::Duration;

use sandstep_workflow::{workflow, Ctx, Failure, Options};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Deserialize, Serialize)]
struct Order {
    order_id: String,
    customer: String,
    amount: u64,
    items: Vec<String>,
}

#[derive(Deserialize)]
struct Approval {
    approved: bool,
}

fn run(ctx: &Ctx, order: Order) -> Result<Value, Failure> {
    ctx.step::<_, Value>("validate", "order-steps:v1", &json!({ "op": "validate", "order": &order }), Options::new())?;
    let charge: Value = ctx.step(
        "charge",
        "order-steps:v1",
        &json!({ "op": "charge", "order": &order }),
        Options::new().retry(3),
    )?;
    let mut approved_by = Value::Null;
    if order.amount > 1000 {
        let topic = format!("approval.{}", order.order_id);
        let approval = ctx.wait_for_event::<Approval>("approval", &topic, Some(Duration::from_secs(24 * 3600)))?;
        if !approval.data.approved {
            return Err(Failure::error(format!("order {} was not approved", order.order_id)));
        }
        approved_by = Value::String(approval.id);
    }
    let shipments: Vec<_> = order
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let input = json!({ "op": "ship", "order_id": &order.order_id, "item": item });
            ctx.submit_step(&format!("ship-{i}"), "order-steps:v1", &input, Options::new())
        })
        .collect();
    let shipped = ctx
        .join::<Value>(&shipments)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    ctx.step::<_, Value>(
        "notify",
        "order-steps:v1",
        &json!({ "op": "notify", "customer": &order.customer, "shipped": shipped.len() }),
        Options::new(),
    )?;
    Ok(json!({
        "order_id": order.order_id,
        "charge": charge["charge_id"],
        "approval_event": approved_by,
        "shipped": shipped,
    }))
}

workflow!(run);
