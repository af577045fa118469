//! Wake-ups between nodes on PostgreSQL: statements that make work for
//! another node send a notification on the channel [`CHANNEL`] in their own
//! transaction (delivered when it commits); every node listens
//! (`service::signals`) and polls as the fallback. SQLite has one node,
//! which wakes itself in process, so nothing is sent there.

use super::backend::Connection;
use super::sql::Sql;
use super::Kind;

/// The PostgreSQL channel every node listens on.
pub const CHANNEL: &str = "sandstep";

/// What a notification tells the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A run has new events (its watchers on other nodes read them).
    Events(String),
    /// A run has a new inbox message (its owner reads it).
    Inbox(String),
    /// Runs are free to claim (started beyond a node's capacity, released).
    Runs,
    /// `throttle:` slots were given back.
    Throttle,
    /// A workflow version was stored (MCP clients are told their tools changed).
    Workflows,
}

impl Signal {
    pub fn payload(&self) -> String {
        match self {
            Signal::Events(run) => format!("e {run}"),
            Signal::Inbox(run) => format!("i {run}"),
            Signal::Runs => "r".into(),
            Signal::Throttle => "t".into(),
            Signal::Workflows => "w".into(),
        }
    }

    pub fn parse(payload: &str) -> Option<Signal> {
        match payload.split_once(' ') {
            Some(("e", run)) => Some(Signal::Events(run.to_string())),
            Some(("i", run)) => Some(Signal::Inbox(run.to_string())),
            None if payload == "r" => Some(Signal::Runs),
            None if payload == "t" => Some(Signal::Throttle),
            None if payload == "w" => Some(Signal::Workflows),
            _ => None,
        }
    }
}

/// Sends `signals` when the transaction on `connection` commits (one
/// statement; PostgreSQL folds duplicates within a transaction). The
/// `COUNT` gives the `Any` driver a value it can decode (not `void`).
pub(crate) async fn send(connection: &mut Connection, kind: Kind, signals: &[Signal]) -> Result<(), sqlx::Error> {
    if kind != Kind::Postgres || signals.is_empty() {
        return Ok(());
    }
    for chunk in signals.chunks(500) {
        let mut query = Sql::new(kind, format!("SELECT COUNT(pg_notify('{CHANNEL}', v.column1)) FROM ("));
        query.values(chunk, |row, signal| {
            row.bind(signal.payload());
        });
        query.push(") AS v");
        query.build().execute(&mut *connection).await?;
    }
    Ok(())
}

/// A PostgreSQL connection listening on [`CHANNEL`].
pub struct Listener(sqlx::postgres::PgListener);

impl Listener {
    /// Connects to `url` and listens on [`CHANNEL`].
    pub async fn connect(url: &str) -> Result<Listener, super::StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        Ok(Listener(listener))
    }

    /// The next notification's signal (`Ok(None)` for one no signal
    /// parses from); `Err(Dropped)` when the connection dropped (the next
    /// call connects again; what was sent meanwhile is lost), any other
    /// error when the channel is gone.
    pub async fn next(&mut self) -> Result<Option<Signal>, Received> {
        match self.0.try_recv().await {
            Ok(Some(notification)) => Ok(Signal::parse(notification.payload())),
            Ok(None) => Err(Received::Dropped),
            Err(error) => Err(Received::Failed(error.into())),
        }
    }
}

/// Why [`Listener::next`] has no signal.
#[derive(Debug)]
pub enum Received {
    /// The connection dropped; the next call connects again.
    Dropped,
    /// The channel failed.
    Failed(super::StoreError),
}
