//! Workflow code instances: the pooling allocator's slots serve the first
//! `max_pooled_workflows` live at once; the ones past them start on demand
//! and run the same code to the same result.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sandstep::limits::{EngineSettings, WorkflowLimits};
use sandstep::sandbox::{
    HostAnswer, HostCall, HostStop, JournalClock, Level, Module, Sandbox, WorkflowEnd, WorkflowHost, WorkflowInfo,
    WorkflowStart,
};
use tokio::sync::oneshot;

use crate::support::guests;

/// Answers chain-flow's `step` calls with `{"n": 1}`. A gated host says
/// when its first call arrives and answers it only once the gate opens.
#[derive(Default)]
struct Host {
    made: u32,
    entered: Option<oneshot::Sender<()>>,
    gate: Option<oneshot::Receiver<()>>,
}

impl WorkflowHost for Host {
    fn call(&mut self, call: HostCall) -> Pin<Box<dyn Future<Output = Result<HostAnswer, HostStop>> + Send + '_>> {
        Box::pin(async move {
            match call {
                HostCall::Step { .. } => {
                    if let Some(entered) = self.entered.take() {
                        let _ = entered.send(());
                    }
                    if let Some(gate) = self.gate.take() {
                        let _ = gate.await;
                    }
                    self.made += 1;
                    Ok(HostAnswer::Submitted(self.made))
                }
                HostCall::AwaitAll(ids) => Ok(HostAnswer::All(
                    ids.iter().map(|_| Ok(r#"{"n": 1}"#.to_string())).collect(),
                )),
                other => Err(HostStop {
                    kind: "invalid_call".into(),
                    message: format!("chain-flow does not make {other:?}"),
                }),
            }
        })
    }

    fn log(&mut self, _level: Level, _message: String) -> Result<(), HostStop> {
        Ok(())
    }

    fn info(&self) -> WorkflowInfo {
        WorkflowInfo::default()
    }
}

async fn run(sandbox: Arc<Sandbox>, module: Arc<Module>, calls: u32, host: Host) -> WorkflowEnd {
    let input = format!(r#"{{"n": {calls}}}"#);
    let limits = WorkflowLimits::default();
    let start = WorkflowStart {
        input: &input,
        limits: &limits,
        fuel: limits.fuel,
        seed: 7,
        clock: JournalClock::new(0),
        started_ms: 0,
    };
    sandbox.run_workflow(&module, start, Box::new(host)).await
}

/// chain-flow's output: 0 without calls, else the last `n` plus one.
fn output(end: &WorkflowEnd) -> &str {
    match &end.ended {
        Ok(Ok(output)) => output,
        other => panic!("the code did not return: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_past_the_pools_slots_start_on_demand_and_return_the_same() {
    let settings = EngineSettings {
        max_pooled_workflows: 1,
        ..EngineSettings::default()
    };
    let sandbox = Arc::new(Sandbox::new(settings, None).unwrap());
    let bytes = std::fs::read(guests().example("chain-flow")).unwrap();
    let module = Arc::new(sandbox.load(&bytes).unwrap());

    // One instance takes the only slot and stays in its first call.
    let (entered, in_call) = oneshot::channel();
    let (open, gate) = oneshot::channel();
    let held = Host {
        entered: Some(entered),
        gate: Some(gate),
        ..Host::default()
    };
    let held = tokio::spawn(run(sandbox.clone(), module.clone(), 2, held));
    in_call.await.unwrap();

    // The next ones start on demand, one after the other and together.
    assert_eq!(
        output(&run(sandbox.clone(), module.clone(), 0, Host::default()).await),
        "0"
    );
    assert_eq!(
        output(&run(sandbox.clone(), module.clone(), 3, Host::default()).await),
        "2"
    );
    let together: Vec<_> = (0..4)
        .map(|_| tokio::spawn(run(sandbox.clone(), module.clone(), 5, Host::default())))
        .collect();
    for instance in together {
        let end = instance.await.unwrap();
        assert_eq!(output(&end), "2");
        assert!(end.fuel_consumed > 0, "{end:?}");
    }

    open.send(()).unwrap();
    assert_eq!(output(&held.await.unwrap()), "2");
    // Its slot is free again.
    assert_eq!(output(&run(sandbox.clone(), module, 1, Host::default()).await), "2");
}
