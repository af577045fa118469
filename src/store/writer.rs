//! Group commit: every run's journal hands its events to one writer task,
//! which commits whatever has queued up in a single transaction (one fsync)
//! and then answers each caller. Durability costs one commit per batch, not
//! one per event.

use tokio::sync::{mpsc, oneshot};

use super::Db;
use crate::run::Event;

/// Events per transaction at most.
const MAX_BATCH: usize = 4096;

struct Request {
    events: Vec<Event>,
    done: oneshot::Sender<Result<(), String>>,
}

#[derive(Clone)]
pub struct EventWriter {
    requests: mpsc::UnboundedSender<Request>,
}

impl EventWriter {
    /// Starts the writer task on `db`.
    pub fn start(db: Db) -> EventWriter {
        let (requests, mut incoming) = mpsc::unbounded_channel::<Request>();
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                let mut count = batch[0].events.len();
                while count < MAX_BATCH {
                    match incoming.try_recv() {
                        Ok(more) => {
                            count += more.events.len();
                            batch.push(more);
                        }
                        Err(_) => break,
                    }
                }
                let result = write(&db, &batch).await.map_err(|e| e.to_string());
                if let Err(error) = &result {
                    tracing::error!(%error, events = count, "event batch not committed");
                }
                for request in batch {
                    let _ = request.done.send(result.clone());
                }
            }
        });
        EventWriter { requests }
    }

    /// Commits `events`; resolves once they are durable.
    pub async fn write(&self, events: Vec<Event>) -> Result<(), String> {
        let (done, committed) = oneshot::channel();
        self.requests
            .send(Request { events, done })
            .map_err(|_| "the event writer stopped".to_string())?;
        committed.await.map_err(|_| "the event writer stopped".to_string())?
    }
}

async fn write(db: &Db, batch: &[Request]) -> Result<(), sqlx::Error> {
    let mut tx = db.write().await?;
    let events: Vec<&Event> = batch.iter().flat_map(|r| r.events.iter()).collect();
    super::runs::insert_events(&mut tx, &events).await?;
    tx.commit().await
}
